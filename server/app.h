/*
 * app: the state one running server owns, passed to every handler. Built by
 * main.c, read by the modules; nothing in it changes after start except
 * through the engine and store, which have their own locks.
 */
#ifndef AUTHMOCK_APP_H
#define AUTHMOCK_APP_H

#include "config.h"
#include "fixtures.h"
#include "scenario.h"
#include "state.h"
#include "store.h"

struct journal;

struct app {
    struct config cfg;
    struct store *store;
    struct state *state; /* what traffic taught the server: sessions, tokens, codes */
    struct fixtures fixtures;
    struct scenario_engine *engine;
    struct journal *journal;         /* the request journal (journal.c); NULL when off */
    const struct scenario_api *apis; /* the emulated APIs, for validating scenarios */
    size_t napis;
    double started; /* monotonic seconds at start */
    int port;       /* the port actually bound */
    int tls;        /* serving HTTPS */
    /* Called once, on the serving thread, right after the listening line:
     * main starts there what nothing needs before serving. May be NULL. */
    void (*on_listening)(struct app *app);
};

#endif

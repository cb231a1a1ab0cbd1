/*
 * fixtures: the test data authmock serves, loaded from the fixtures directory
 * at start: mesh API clients, mesh integrations, mesh test users with their
 * broker accounts, and onlyoffice users. Every record is also written into
 * the store's fixtures table. After loading the data is read-only, so the
 * request path reads it without locks.
 *
 * Layout: a .json file in <dir>/<api>/, each file an object whose keys name the kind of
 * records it holds: mesh files hold "clients", "integrations" and "users";
 * onlyoffice files hold "users".
 */
#ifndef AUTHMOCK_FIXTURES_H
#define AUTHMOCK_FIXTURES_H

#include <cjson/cJSON.h>

#include "jsonutil.h"
#include "store.h"

struct fixtures {
    cJSON *mesh_clients;      /* array of {clientId, clientSecret, name} */
    cJSON *mesh_integrations; /* array of integration objects */
    cJSON *mesh_users;        /* array of {username, accounts: [...]} */
    cJSON *onlyoffice_users;  /* array of onlyoffice user objects */
};

/* Loads every fixture file under `dir`. Returns the number of problems added. */
int fixtures_load(struct fixtures *f, const char *dir, struct problems *p);
/* Loads one fixture file into `f` (for `authmock check`); the API is the name
 * of the directory holding it. Returns the number of problems added. */
int fixtures_load_file(struct fixtures *f, const char *path, struct problems *p);
/* "mesh" or "onlyoffice" when the directory holding `path` is named so, else NULL. */
const char *fixtures_dir_api(const char *path);
/* The same for `len` bytes of `text` said to be the file at `path` (whose
 * directory names the API), without reading it. */
int fixtures_load_text(struct fixtures *f, const char *path, const char *text, size_t len,
                       struct problems *p);
int fixtures_persist(const struct fixtures *f, struct store *s);
size_t fixtures_count(const struct fixtures *f);
void fixtures_free(struct fixtures *f);

/* Finds the element of `array` whose string member `key` equals `value`
 * (ignoring ASCII case when `nocase`). */
const cJSON *fixtures_find(const cJSON *array, const char *key, const char *value, int nocase);

#endif

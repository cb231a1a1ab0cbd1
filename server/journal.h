/*
 * journal: the record of every request to the emulated APIs, kept in memory
 * as a ring bounded in entries (--journal-max) and bytes (--journal-max-bytes),
 * for tests to verify what their client sent. Secrets never enter it: the
 * path and query arrive masked, and request bodies are stored with every
 * secret-looking member replaced by "***", then cut to JOURNAL_BODY_MAX bytes.
 */
#ifndef AUTHMOCK_JOURNAL_H
#define AUTHMOCK_JOURNAL_H

#include <stddef.h>
#include <cjson/cJSON.h>

struct app;

/* The longest stored body: longer ones are kept cut, and say so. */
#define JOURNAL_BODY_MAX 4096

struct journal_entry {
    double at; /* mock clock */
    const char *ns, *api, *method, *path, *query;
    int status;
    double latency_ms;
    const char *scenario, *state_from, *state_to, *user;
    const char *body; /* raw request body, not NUL-terminated */
    size_t body_len;
    const char *body_secret; /* a top-level body member to mask besides the usual, or NULL */
};

struct journal_filter {
    const char *ns, *api, *path, *user, *method;
    double since; /* < 0: none */
    long before;  /* id cursor for paging, 0: none */
    long after;   /* only entries with a greater id (the event stream's cursor), 0: none */
    int status;   /* 0: any */
    long limit;
};

/* Allocates the ring from app->cfg into app->journal (none when either bound is 0).
 * Returns 0 or -1 when out of memory. */
int journal_init(struct app *app);
void journal_free(struct app *app);
void journal_record(struct app *app, const struct journal_entry *e);
/* Replaces the value of every secret-looking member (recursively) with "***". */
void journal_redact(cJSON *doc);
/* Entries matching the filter, newest first, as a JSON array (owned by the caller). */
cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before);
long journal_count(struct app *app, const struct journal_filter *f);
/* Calls fn(cls, id) after each entry is recorded, on the recording thread and
 * outside the journal's lock: fn must be quick and never block (the event
 * stream only notes the id). One listener; NULL removes it. */
void journal_listen(struct app *app, void (*fn)(void *cls, long id), void *cls);
/* Forgets the entries of one namespace, or all when ns is NULL. Returns 0. */
int journal_clear(struct app *app, const char *ns);
/* The journal's part of POST /__admin/reset: as journal_clear. */
void journal_reset(struct app *app, const char *ns);

#endif

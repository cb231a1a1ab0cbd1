/*
 * journal: the record of every request to the emulated APIs, kept in memory
 * as a ring bounded in entries (--journal-max) and bytes (--journal-max-bytes),
 * for tests to verify what their client sent and to explain each answer: the
 * request's headers and body, the response's status, headers and body, the
 * outcome and the scenario engine's `match` explanation. Secrets never enter
 * it: the path and query arrive masked, secret headers are stored as "***",
 * and bodies are stored with every secret-looking member replaced by "***",
 * then cut to JOURNAL_BODY_MAX bytes.
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
    int body_is_json;        /* the API module parsed the body: it is valid JSON */
    const char *outcome;     /* what the answer meant, or NULL */
    /* The request's headers as received; masked here. */
    const char *const *req_header_names, *const *req_header_values;
    size_t nreq_headers;
    /* The response's headers, body (not NUL-terminated) and transport fault. */
    const char *const *resp_header_names, *const *resp_header_values;
    size_t nresp_headers;
    const char *resp_body;
    size_t resp_body_len;
    /* Or its stored form, from journal_body_form, for an answer sent unchanged many times. */
    const char *resp_body_form;
    size_t resp_body_form_len;
    const char *fault; /* "drop", "truncate", "malformed" or NULL */
    /* The path as requested when `path` is its masked form (it held a code):
     * where a response body echoes it, the journal shows `path`. */
    const char *secret_path;
    long delay_ms;
    const char *match; /* the scenario engine's explanation, JSON text, or NULL */
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
/* The journal's stored form of a response body (masked and cut as the journal
 * keeps it), for an answer sent unchanged many times (the mesh
 * authenticationSchemes): its module keeps the form beside the answer and
 * hands it over in journal_entry.resp_body_form, so the journal does not mask
 * the same text again on every request. Returns malloc'd text, its length in
 * *form_len, or NULL. */
char *journal_body_form(const char *body, size_t len, size_t *form_len);
/* Replaces the value of every secret-looking member (recursively) with "***". */
void journal_redact(cJSON *doc);
/* Entries matching the filter, newest first, as a JSON array (owned by the caller). */
cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before);
long journal_count(struct app *app, const struct journal_filter *f);
/* Calls fn(cls, id) after each entry is recorded, on the recording thread and
 * outside the journal's lock: fn must be quick and never block (the event
 * stream only notes the id). One listener; NULL removes it. */
void journal_listen(struct app *app, void (*fn)(void *cls, long id), void *cls);

/* The whole entry `id` (owned by the caller), or NULL when the ring holds none. */
cJSON *journal_get(struct app *app, long id);
/* Forgets the entries of one namespace, or all when ns is NULL. Returns 0. */
int journal_clear(struct app *app, const char *ns);
/* The journal's part of POST /__admin/reset: as journal_clear. */
void journal_reset(struct app *app, const char *ns);

#endif

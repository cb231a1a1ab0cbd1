/*
 * journal: the record of every request to the emulated APIs, kept in the
 * store as a bounded ring (--journal-max entries), for tests to verify what
 * their client sent. Secrets never enter it: the path and query arrive
 * masked, and request bodies are stored with every secret-looking member
 * replaced by "***".
 */
#ifndef AUTHMOCK_JOURNAL_H
#define AUTHMOCK_JOURNAL_H

#include <stddef.h>
#include <cjson/cJSON.h>

struct app;

struct journal_entry {
    double at; /* mock clock */
    const char *ns, *api, *method, *path, *query;
    int status;
    double latency_ms;
    const char *scenario, *state_from, *state_to, *user;
    const char *body; /* raw request body, not NUL-terminated */
    size_t body_len;
};

struct journal_filter {
    const char *ns, *api, *path, *user, *method;
    double since; /* < 0: none */
    long before;  /* id cursor for paging, 0: none */
    int status;   /* 0: any */
    long limit;
};

void journal_record(struct app *app, const struct journal_entry *e);
/* Replaces the value of every secret-looking member (recursively) with "***". */
void journal_redact(cJSON *doc);
/* Entries matching the filter, newest first, as a JSON array (owned by the caller). */
cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before);
long journal_count(struct app *app, const struct journal_filter *f);
int journal_clear(struct app *app, const char *ns);

#endif

/*
 * log: one line per event on stderr, as text or JSON. Request lines carry
 * method, path, masked query, status and latency; nothing secret is logged
 * (query parameters with secret-looking names are masked, bodies never logged).
 */
#ifndef AUTHMOCK_LOG_H
#define AUTHMOCK_LOG_H

#include <stddef.h>

enum log_format { LOG_TEXT, LOG_JSON };

struct log_request {
    const char *method;
    const char *path;
    const char *query; /* raw query string, without '?', may be NULL */
    int status;
    double latency_ms;
    const char *api;      /* "mesh", "onlyoffice", "admin" or NULL */
    const char *ns;       /* namespace or NULL */
    const char *scenario; /* scenario name or NULL */
    const char *state_from;
    const char *state_to;
    const char *outcome; /* what the answer meant (succeeded, mfaRequired, limited...) or NULL */
};

void log_init(enum log_format format, int quiet);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_request(const struct log_request *r);
/* Copies the raw `query` into out (size cap) with the values of secret-looking
 * parameters masked (names compared decoded) and bytes that do not belong in a
 * URL %XX-encoded; a parameter that does not fit is left out whole. */
void log_mask_query(const char *query, char *out, size_t cap);
/* Whether a field or parameter name names a secret (password, code, token, secret, key...). */
int log_is_secret_name(const char *name, size_t len);
/* Whether a header's value is a secret: Authorization, Cookie, X-Client-Secret,
 * X-Api-Key, Proxy-Authorization... (a secret-looking name once '-' and '_'
 * are dropped). */
int log_is_secret_header(const char *name);

#endif

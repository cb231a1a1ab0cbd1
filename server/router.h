/*
 * router: maps method + path to a handler. Patterns are segment lists where
 * "{name}" matches one segment; when several patterns match, the one with
 * more literal segments wins (so /authentication/logout beats
 * /authentication/{code}). A path that matches with another method gets 405
 * and an Allow header; no match gets 404. Both answer JSON.
 */
#ifndef AUTHMOCK_ROUTER_H
#define AUTHMOCK_ROUTER_H

#include <stddef.h>

struct app;
struct http_request;
struct http_response;

typedef void (*route_handler)(struct app *app, const struct http_request *req,
                              struct http_response *resp);

struct route {
    const char *method;
    const char *pattern;
    route_handler handler;
    const char *api; /* for logs and the journal */
};

void router_dispatch(struct app *app, struct http_request *req, struct http_response *resp);
/* When `path` is for a route that carries a secret in the path (an onlyoffice
 * {code}), whatever the method, writes the route's pattern into out, for the
 * log and the journal to show instead; else leaves out as it is. */
void router_log_path(const char *path, char *out, size_t cap);

#endif

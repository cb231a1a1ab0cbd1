/*
 * router: one table of every module's routes, matched segment by segment.
 */
#include "router.h"
#include "arena.h"
#include "admin.h"
#include "dashboard.h"
#include "http.h"
#include "mesh.h"
#include "onlyoffice.h"

#include <stdio.h>
#include <string.h>

struct table {
    const struct route *routes;
    const size_t *count;
};

static const struct table tables[] = {
    {mesh_routes, &mesh_route_count},
    {onlyoffice_routes, &onlyoffice_route_count},
    {admin_routes, &admin_route_count},
    {dashboard_routes, &dashboard_route_count},
};

/* Matches `path` against `pattern`; returns the number of literal segments
 * matched, or -1. Captures {name} segments into req->params. */
static int match(const char *pattern, const char *path, struct http_request *req)
{
    int literal = 0;
    size_t nparams = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return -1;
        p++;
        s++;
        const char *pe = strchr(p, '/');
        const char *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t sl = se ? (size_t)(se - s) : strlen(s);
        if (pl > 2 && p[0] == '{' && p[pl - 2] == '*' && p[pl - 1] == '}') {
            /* {name*} takes the rest of the path, slashes included. */
            if (sl == 0 || nparams >= HTTP_MAX_PARAMS)
                return -1;
            req->params[nparams++] = s;
            req->nparams = nparams;
            return literal;
        }
        if (pl > 1 && p[0] == '{' && p[pl - 1] == '}') {
            if (sl == 0 || nparams >= HTTP_MAX_PARAMS)
                return -1;
            req->params[nparams++] = s; /* terminated below by the caller's copy */
        } else {
            if (pl != sl || strncmp(p, s, pl) != 0)
                return -1;
            literal++;
        }
        p += pl;
        s += sl;
    }
    if (*p || *s)
        return -1;
    req->nparams = nparams;
    return literal;
}

void router_log_path(const char *path, char *out, size_t cap)
{
    char copy[2048];
    size_t len = strlen(path);
    if (len >= sizeof copy)
        return;
    memcpy(copy, path, len + 1);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    const struct route *best = NULL;
    int best_score = -1;
    struct http_request probe = {0};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (size_t i = 0; i < *tables[t].count; i++) {
            int score = match(tables[t].routes[i].pattern, copy, &probe);
            if (score > best_score) {
                best = &tables[t].routes[i];
                best_score = score;
            }
        }
    if (best && strstr(best->pattern, "{code}"))
        snprintf(out, cap, "%s", best->pattern);
}

void router_dispatch(struct app *app, struct http_request *req, struct http_response *resp)
{
    const struct route *best = NULL;
    int best_score = -1;
    char allow[128] = "";
    /* Trailing slashes are not significant, as in ASP.NET routing. */
    char path[2048];
    size_t len = strlen(req->path);
    if (len >= sizeof path) {
        http_reply_error(resp, 414, "path is longer than %zu bytes", sizeof path - 1);
        return;
    }
    memcpy(path, req->path, len + 1);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';

    struct http_request probe = *req;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (size_t i = 0; i < *tables[t].count; i++) {
            const struct route *r = &tables[t].routes[i];
            int score = match(r->pattern, path, &probe);
            if (score < 0)
                continue;
            if (strcmp(r->method, req->method) != 0) {
                if (!strstr(allow, r->method) &&
                    strlen(allow) + strlen(r->method) + 3 < sizeof allow)
                    snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                             allow[0] ? ", " : "", r->method);
                continue;
            }
            if (score > best_score) {
                best = r;
                best_score = score;
            }
        }
    }
    if (best) {
        /* Capture the parameters of the winning route into NUL-terminated copies. */
        static _Thread_local char params[HTTP_MAX_PARAMS][512];
        match(best->pattern, path, req);
        const char *star = strstr(best->pattern, "*}");
        for (size_t i = 0; i < req->nparams; i++) {
            int rest = star && i + 1 == req->nparams;
            const char *end = rest ? NULL : strchr(req->params[i], '/');
            size_t n = end ? (size_t)(end - req->params[i]) : strlen(req->params[i]);
            if (n >= sizeof params[i])
                n = sizeof params[i] - 1;
            memcpy(params[i], req->params[i], n);
            params[i][n] = '\0';
            req->params[i] = params[i];
        }
        resp->api = best->api;
        /* The emulated APIs keep no cJSON tree past their answer: theirs come
         * from the request's arena. Admin handlers keep uploaded scenarios. */
        int arena = strcmp(best->api, "admin") != 0;
        if (arena)
            json_arena_begin();
        best->handler(app, req, resp);
        if (arena)
            json_arena_end();
        return;
    }
    if (allow[0]) {
        http_reply_error(resp, 405, "%s is not allowed on %s (allowed: %s)", req->method, req->path,
                         allow);
        http_add_header(resp, "Allow", allow);
        return;
    }
    http_reply_error(resp, 404, "no route for %s %s", req->method, req->path);
}

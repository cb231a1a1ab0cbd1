/*
 * dashboard: the page's routes. The assets are static arrays sent without a
 * copy; the page asks for the admin token itself (it holds no data), so it
 * is served without one, and every call it makes carries the token.
 */
#include "dashboard.h"
#include "admin.h"
#include "app.h"
#include "events.h"
#include "http.h"
#include "watch.h"

#include <string.h>

static void h_ui(struct app *app, const struct http_request *req, struct http_response *resp)
{
    (void)app;
    const char *name = req->nparams ? req->params[0] : "index.html";
    for (size_t i = 0; i < dashboard_asset_count; i++) {
        const struct dashboard_asset *a = &dashboard_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        http_reply_shared(resp, 200, a->content_type, (const char *)a->data, a->len, NULL, NULL);
        /* Served by the binary that serves the API: a new build, new files. */
        http_add_header(resp, "Cache-Control", "no-cache");
        http_add_header(resp, "X-Content-Type-Options", "nosniff");
        if (strcmp(name, "index.html") == 0)
            http_add_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
        return;
    }
    http_reply_error(resp, 404, "the dashboard has no file '%s'", name);
}

/* The event stream takes the token from ?token= too: an EventSource cannot
 * set headers. The log line masks it (a secret-looking name) and admin calls
 * are not journaled. */
static void h_events(struct app *app, const struct http_request *req, struct http_response *resp)
{
    const char *token = http_query_arg(req, "token");
    int by_query = app->cfg.admin_token && token && strcmp(token, app->cfg.admin_token) == 0;
    if (!by_query && admin_authorize(app, req, resp))
        return;
    events_open(app, req, resp);
}

/* A copy of `array` keeping only the named members of each element. */
static cJSON *pick(const cJSON *array, const char *const *keys, size_t nkeys)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *item;
    cJSON_ArrayForEach(item, array)
    {
        cJSON *o = cJSON_CreateObject();
        for (size_t k = 0; k < nkeys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, keys[k]);
            if (v)
                cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

/* The test data the accounts view lists: mesh clients and users (with the
 * number of broker accounts each has), each integration's type, name and
 * scheme, and the onlyoffice users whole. */
static void h_fixtures(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (admin_authorize(app, req, resp))
        return;
    const struct fixtures *fx = &app->fixtures;
    cJSON *o = cJSON_CreateObject();
    cJSON *mesh = cJSON_AddObjectToObject(o, "mesh");
    cJSON_AddItemToObject(mesh, "clients", cJSON_Duplicate(fx->mesh_clients, 1));
    cJSON *users = cJSON_AddArrayToObject(mesh, "users");
    const cJSON *u;
    cJSON_ArrayForEach(u, fx->mesh_users)
    {
        cJSON *one = cJSON_CreateObject();
        json_add_str_or_null(one, "username", json_str(u, "username"));
        cJSON_AddNumberToObject(
            one, "accounts", cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(u, "accounts")));
        cJSON_AddItemToArray(users, one);
    }
    static const char *const integration_keys[] = {"type", "name", "schemeType"};
    cJSON_AddItemToObject(mesh, "integrations", pick(fx->mesh_integrations, integration_keys, 3));
    cJSON *oo = cJSON_AddObjectToObject(o, "onlyoffice");
    cJSON_AddItemToObject(oo, "users", cJSON_Duplicate(fx->onlyoffice_users, 1));
    cJSON_AddStringToObject(o, "profile",
                            app->cfg.profile == PROFILE_SERVER ? "server" : "documented");
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void h_reload(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (admin_authorize(app, req, resp))
        return;
    cJSON *o = watch_last_reload(app);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

const struct route dashboard_routes[] = {
    {"GET", "/__admin/ui", h_ui, "admin"},
    {"GET", "/__admin/ui/{file*}", h_ui, "admin"},
    {"GET", "/__admin/events", h_events, "admin"},
    {"GET", "/__admin/fixtures", h_fixtures, "admin"},
    {"GET", "/__admin/reload", h_reload, "admin"},
};
const size_t dashboard_route_count = sizeof dashboard_routes / sizeof dashboard_routes[0];

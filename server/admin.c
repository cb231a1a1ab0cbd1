/*
 * admin: handlers of /__admin. Errors are JSON {"error": "..."} with a 4xx
 * status, as SPEC §7 says.
 */
#include "admin.h"
#include "app.h"
#include "clock.h"
#include "http.h"
#include "onlyoffice.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Answers 401 and returns -1 unless the admin token (when set) was presented. */
static int authorize(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (!app->cfg.admin_token)
        return 0;
    const char *h = http_header(req, "Authorization");
    if (h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, app->cfg.admin_token) == 0)
        return 0;
    http_reply_error(resp, 401, "the admin API needs 'Authorization: Bearer <admin token>'");
    http_add_header(resp, "WWW-Authenticate", "Bearer realm=\"authmock admin\"");
    return -1;
}

static void h_health(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", AUTHMOCK_VERSION);
    cJSON_AddNumberToObject(o, "uptimeSeconds", floor(clock_monotonic() - app->started));
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void h_reset(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    const char *ns = http_query_arg(req, "namespace");
    if (store_reset(app->store, ns)) {
        http_reply_error(resp, 500, "reset failed: %s", store_errmsg(app->store));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "reset");
    json_add_str_or_null(o, "namespace", ns);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void clock_body(struct http_response *resp)
{
    /* Both fields come from one reading rounded to the millisecond, so a clock
     * just set to a whole second never reads as the second before it. */
    double now = round(clock_now() * 1000.0) / 1000.0;
    char iso[32];
    clock_format(now, iso);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "now", iso);
    cJSON_AddNumberToObject(o, "epochSeconds", floor(now));
    cJSON_AddNumberToObject(o, "offsetSeconds", round(clock_offset() * 1000.0) / 1000.0);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void h_clock_get(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    clock_body(resp);
}

static void h_clock_post(struct app *app, const struct http_request *req,
                         struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    size_t off;
    cJSON *body = req->body_len ? json_parse(req->body, req->body_len, &off) : NULL;
    const cJSON *adv = cJSON_GetObjectItemCaseSensitive(body, "advanceSeconds");
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(body, "set");
    if (!cJSON_IsObject(body) || (!adv == !set)) {
        http_reply_error(resp, 400,
                         "the body must be a JSON object with either advanceSeconds (a number) "
                         "or set (an ISO-8601 time)");
    } else if (adv && (!cJSON_IsNumber(adv) || !isfinite(adv->valuedouble) ||
                       fabs(adv->valuedouble) > 3.2e9)) {
        http_reply_error(resp, 400, "advanceSeconds must be a number of seconds");
    } else if (adv) {
        clock_set_offset(clock_offset() + adv->valuedouble);
        clock_body(resp);
    } else {
        double t;
        if (!cJSON_IsString(set) || clock_parse(set->valuestring, &t)) {
            http_reply_error(resp, 400,
                             "set must be an ISO-8601 time such as 2030-01-01T00:00:00Z");
        } else {
            clock_set_offset(clock_offset() + (t - clock_now()));
            clock_body(resp);
        }
    }
    cJSON_Delete(body);
}

static void h_sms(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    const char *q = http_query_arg(req, "namespace");
    if (!q && http_namespace(req, ns, sizeof ns) == 0 && ns[0])
        q = ns;
    onlyoffice_sms_outbox(app, q, resp);
}

const struct route admin_routes[] = {
    {"GET", "/__admin/health", h_health, "admin"},
    {"POST", "/__admin/reset", h_reset, "admin"},
    {"GET", "/__admin/clock", h_clock_get, "admin"},
    {"POST", "/__admin/clock", h_clock_post, "admin"},
    {"GET", "/__admin/onlyoffice/sms", h_sms, "admin"},
};
const size_t admin_route_count = sizeof admin_routes / sizeof admin_routes[0];

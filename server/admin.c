/*
 * admin: handlers of /__admin. Errors are JSON {"error": "..."} with a 4xx
 * status, as SPEC §7 says. Scenario changes build a new set and swap it in
 * whole, so a request in flight finishes with the set it started with.
 */
#include "admin.h"
#include "app.h"
#include "clock.h"
#include "http.h"
#include "journal.h"
#include "log.h"
#include "onlyoffice.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The namespace an admin call is about: ?namespace=, else the namespace
 * header, else none (all namespaces, or the shared clock). */
static const char *admin_namespace(const struct http_request *req, char buf[64])
{
    const char *q = http_query_arg(req, "namespace");
    if (q)
        return q;
    if (http_namespace(req, buf, 64) == 0 && buf[0])
        return buf;
    return NULL;
}

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

int admin_authorize(struct app *app, const struct http_request *req, struct http_response *resp)
{
    return authorize(app, req, resp);
}

static void h_health(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    /* Degraded while state writes to the --db file fail: answers are then refused. */
    const char *why = state_degraded(app->state);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", why ? "degraded" : "ok");
    if (why)
        cJSON_AddStringToObject(o, "reason", why);
    cJSON_AddStringToObject(o, "version", AUTHMOCK_VERSION);
    cJSON_AddNumberToObject(o, "uptimeSeconds", floor(clock_monotonic() - app->started));
    http_reply_json(resp, why ? 503 : 200, NULL, o);
    cJSON_Delete(o);
}

/* With a file database the clock is kept in it, to survive a restart. It is
 * written behind, by the state's writer: written here, the request's worker
 * thread waited for the writer's transaction to end, and every other
 * connection of that thread with it. */
static void save_clock(struct app *app)
{
    if (!store_is_file(app->store))
        return;
    char *text = clock_save();
    if (!text || state_put_meta(app->state, "clock", text))
        log_error("cannot store the mock clock: out of memory");
    free(text);
}

static void h_reset(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char nsbuf[64];
    const char *ns = admin_namespace(req, nsbuf);
    clock_reset_ns(ns);
    save_clock(app);
    state_reset(app->state, ns);
    journal_reset(app, ns);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "reset");
    json_add_str_or_null(o, "namespace", ns);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void clock_body(struct http_response *resp, const char *ns)
{
    /* Both fields come from one reading rounded to the millisecond, so a clock
     * just set to a whole second never reads as the second before it. */
    double now = round(clock_now_ns(ns) * 1000.0) / 1000.0;
    char iso[32];
    clock_format(now, iso);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "now", iso);
    cJSON_AddNumberToObject(o, "epochSeconds", floor(now));
    double off = clock_offset() + clock_ns_offset(ns);
    cJSON_AddNumberToObject(o, "offsetSeconds", round(off * 1000.0) / 1000.0 + 0.0);
    /* The shared clock is the default namespace's: "" as everywhere else. */
    cJSON_AddStringToObject(o, "namespace", ns ? ns : "");
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void h_clock_get(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    clock_body(resp, admin_namespace(req, ns));
}

/* Moves the shared clock, or with a namespace only that namespace's. */
static void h_clock_post(struct app *app, const struct http_request *req,
                         struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char nsbuf[64];
    const char *ns = admin_namespace(req, nsbuf);
    size_t off;
    cJSON *body = req->body_len ? json_parse(req->body, req->body_len, &off) : NULL;
    const cJSON *adv = cJSON_GetObjectItemCaseSensitive(body, "advanceSeconds");
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(body, "set");
    double t = 0, delta = 0;
    if (!cJSON_IsObject(body) || (!adv == !set)) {
        http_reply_error(resp, 400,
                         "the body must be a JSON object with either advanceSeconds (a number) "
                         "or set (an ISO-8601 time)");
        goto out;
    }
    if (adv &&
        (!cJSON_IsNumber(adv) || !isfinite(adv->valuedouble) || fabs(adv->valuedouble) > 3.2e9)) {
        http_reply_error(resp, 400, "advanceSeconds must be a number of seconds");
        goto out;
    }
    int to_now = cJSON_IsString(set) && strcmp(set->valuestring, "now") == 0;
    if (set && !to_now && (!cJSON_IsString(set) || clock_parse(set->valuestring, &t))) {
        http_reply_error(resp, 400,
                         "set must be an ISO-8601 (RFC 3339) time from 1970 to 9999 such as "
                         "2030-01-01T00:00:00Z, or \"now\"");
        goto out;
    }
    /* "now" takes the clock back to real time (a namespace: to the shared clock). */
    delta = adv      ? adv->valuedouble
            : to_now ? -(ns ? clock_ns_offset(ns) : clock_offset())
                     : t - clock_now_ns(ns);
    /* The clock stays where dates can be written: repeated advances once
     * wrapped it to the year -290251. */
    double then = clock_now_ns(ns) + delta;
    if (then < 0 || then > 253402300799.0) {
        http_reply_error(resp, 400,
                         "the mock clock must stay between 1970-01-01T00:00:00Z and "
                         "9999-12-31T23:59:59Z");
        goto out;
    }
    if (!ns)
        clock_set_offset(clock_offset() + delta);
    else if (clock_set_ns_offset(ns, clock_ns_offset(ns) + delta)) {
        http_reply_error(resp, 400, "too many namespaces have their own clock; reset some");
        goto out;
    }
    save_clock(app);
    clock_body(resp, ns);
out:
    cJSON_Delete(body);
}

static void h_sms(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    onlyoffice_sms_outbox(app, admin_namespace(req, ns), resp);
}

static void h_totp(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    onlyoffice_totp(app, admin_namespace(req, ns), http_query_arg(req, "user"), resp);
}

/* ---- scenarios -------------------------------------------------------- */

static void h_scenarios_list(struct app *app, const struct http_request *req,
                             struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    struct scenario_set *set = scenario_engine_acquire(app->engine);
    cJSON *list = cJSON_CreateArray();
    const struct scenario *s;
    for (size_t i = 0; (s = scenario_set_at(set, i)); i++) {
        const cJSON *doc = scenario_doc(s);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", scenario_name(s));
        cJSON_AddStringToObject(o, "api", scenario_api_name(s));
        json_add_str_or_null(o, "description", json_str(doc, "description"));
        cJSON_AddStringToObject(o, "origin", scenario_origin(s));
        const cJSON *bind = cJSON_GetObjectItemCaseSensitive(doc, "bind");
        cJSON_AddItemToObject(o, "bind", bind ? cJSON_Duplicate(bind, 1) : cJSON_CreateObject());
        cJSON_AddItemToArray(list, o);
    }
    scenario_set_release(set);
    http_reply_json(resp, 200, NULL, list);
    cJSON_Delete(list);
}

static void add_problem(const char *line, void *list)
{
    cJSON_AddItemToArray(list, cJSON_CreateString(line));
}

static void h_scenarios_add(struct app *app, const struct http_request *req,
                            struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    struct problems p = {0};
    struct scenario *s =
        scenario_parse("admin", req->body, req->body_len, app->apis, app->napis, &p);
    if (!s) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "the scenario is not valid");
        cJSON *list = cJSON_AddArrayToObject(o, "problems");
        /* One "file: json-path: message" string per problem. */
        problems_each(&p, add_problem, list);
        http_reply_json(resp, 400, NULL, o);
        cJSON_Delete(o);
        problems_free(&p);
        return;
    }
    problems_free(&p);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", scenario_name(s));
    int replaced = 0;
    /* Concurrent uploads apply one after another: the last one's scenario stands. */
    if (scenario_engine_put(app->engine, s, &replaced)) {
        http_reply_error(resp, 500, "the scenario could not be stored");
    } else {
        cJSON_AddBoolToObject(o, "replaced", replaced);
        http_reply_json(resp, replaced ? 200 : 201, NULL, o);
    }
    cJSON_Delete(o);
}

static void h_scenario_show(struct app *app, const struct http_request *req,
                            struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    struct scenario_set *set = scenario_engine_acquire(app->engine);
    const struct scenario *s = scenario_set_find(set, req->params[0]);
    if (s) {
        http_reply_json(resp, 200, NULL, scenario_doc(s));
        http_add_header(resp, "X-Authmock-Origin", scenario_origin(s));
    } else {
        http_reply_error(resp, 404, "there is no scenario named '%s'", req->params[0]);
    }
    scenario_set_release(set);
}

static void h_scenario_delete(struct app *app, const struct http_request *req,
                              struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    int rc = scenario_engine_delete(app->engine, req->params[0]);
    if (rc > 0) {
        http_reply_error(resp, 404, "there is no scenario named '%s'", req->params[0]);
        return;
    }
    if (rc < 0) {
        http_reply_error(resp, 500, "the scenario could not be deleted");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "deleted", req->params[0]);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

/* Reads ?name= as a whole number from min to max into *out (left as it is
 * when absent); answers 400 naming the range and returns -1 otherwise. */
static int query_number(const struct http_request *req, const char *name, long min, long max,
                        long *out, struct http_response *resp)
{
    const char *v = http_query_arg(req, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        http_reply_error(resp, 400, "%s must be a whole number from %ld to %ld", name, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

/* ---- sessions --------------------------------------------------------- */

static void h_sessions(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    /* Paged like the journal: ?limit= (1 to 1000, default 1000) and ?before=
     * the cursor of the last session seen, also sent as X-Authmock-Next-Before. */
    long limit = 1000, before = 0;
    if (query_number(req, "limit", 1, 1000, &limit, resp) ||
        query_number(req, "before", 1, LONG_MAX, &before, resp))
        return;
    uint64_t next = 0;
    cJSON *list = scenario_sessions(app->engine, admin_namespace(req, ns),
                                    http_query_arg(req, "api"), limit, (uint64_t)before, &next);
    http_reply_json(resp, 200, NULL, list);
    if (next) {
        char n[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)next);
        http_add_header(resp, "X-Authmock-Next-Before", n);
    }
    cJSON_Delete(list);
}

static void h_session_force(struct app *app, const struct http_request *req,
                            struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    /* The id is "<api>:<identity>", as GET /__admin/sessions lists it. */
    const char *id = req->params[0];
    const char *colon = strchr(id, ':');
    size_t off;
    cJSON *body = req->body_len ? json_parse(req->body, req->body_len, &off) : NULL;
    const char *state = json_str(body, "state");
    const char *scenario = json_str(body, "scenario");
    char api[32], ns[64];
    const char *nsv = admin_namespace(req, ns);
    if (!nsv)
        nsv = json_str(body, "namespace");
    if (!colon || (size_t)(colon - id) >= sizeof api || !colon[1]) {
        http_reply_error(resp, 400,
                         "a session id is <api>:<identity>, as GET /__admin/sessions lists");
    } else if (!cJSON_IsObject(body) || !state) {
        http_reply_error(resp, 400,
                         "the body must be {\"state\": NAME} (and optionally \"scenario\")");
    } else {
        memcpy(api, id, (size_t)(colon - id));
        api[colon - id] = '\0';
        int rc = scenario_force(app->engine, nsv ? nsv : "", api, colon + 1, scenario, state);
        if (rc == SCENARIO_UNBOUND)
            http_reply_error(resp, 404,
                             "no session '%s' in namespace '%s'; name a scenario to create one", id,
                             nsv ? nsv : "");
        else if (rc == SCENARIO_UNKNOWN_FORCED)
            http_reply_error(resp, 400, "there is no %s scenario named '%s'", api, scenario);
        else if (rc == SCENARIO_NO_STEP)
            http_reply_error(resp, 400, "'%s' is not a state of the session's scenario", state);
        else if (rc)
            http_reply_error(resp, 500, "storage error");
        else {
            cJSON *found = scenario_session(app->engine, nsv ? nsv : "", api, colon + 1);
            if (found)
                http_reply_json(resp, 200, NULL, found);
            else
                http_reply_error(resp, 500, "the session was not saved");
            cJSON_Delete(found);
        }
    }
    cJSON_Delete(body);
}

/* ---- the journal ------------------------------------------------------ */

static int journal_filter_from(const struct http_request *req, struct journal_filter *f,
                               char ns[64], struct http_response *resp)
{
    memset(f, 0, sizeof *f);
    f->ns = admin_namespace(req, ns);
    f->api = http_query_arg(req, "api");
    f->path = http_query_arg(req, "path");
    f->user = http_query_arg(req, "user");
    f->method = http_query_arg(req, "method");
    f->since = -1;
    f->limit = 100;
    const char *v;
    char *end;
    if ((v = http_query_arg(req, "since"))) {
        errno = 0;
        double t = strtod(v, &end);
        if (errno || end == v || *end) {
            if (clock_parse(v, &t)) {
                http_reply_error(resp, 400, "since must be an ISO-8601 time or epoch seconds");
                return -1;
            }
        }
        f->since = t;
    }
    if (query_number(req, "limit", 1, 1000, &f->limit, resp) ||
        query_number(req, "before", 1, 9007199254740991L, &f->before, resp))
        return -1;
    if ((v = http_query_arg(req, "status"))) {
        long n = strtol(v, &end, 10);
        if (*end || n < 100 || n > 599) {
            http_reply_error(resp, 400, "status must be an HTTP status code");
            return -1;
        }
        f->status = (int)n;
    }
    return 0;
}

static void h_requests(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    struct journal_filter f;
    char ns[64];
    if (journal_filter_from(req, &f, ns, resp))
        return;
    long next = 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "requests", journal_list(app, &f, &next));
    if (next)
        cJSON_AddNumberToObject(o, "nextBefore", (double)next);
    else
        cJSON_AddNullToObject(o, "nextBefore");
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

static void h_requests_count(struct app *app, const struct http_request *req,
                             struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    struct journal_filter f;
    char ns[64];
    if (journal_filter_from(req, &f, ns, resp))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)journal_count(app, &f));
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

/* One whole entry: request, response and the explanation of the answer. */
static void h_request_show(struct app *app, const struct http_request *req,
                           struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char *end;
    errno = 0;
    long id = strtol(req->params[0], &end, 10);
    if (errno || end == req->params[0] || *end || id < 1) {
        http_reply_error(resp, 400, "a journal entry id is a whole number from 1 (got '%s')",
                         req->params[0]);
        return;
    }
    cJSON *e = journal_get(app, id);
    if (!e) {
        http_reply_error(resp, 404,
                         "there is no journal entry %ld (never recorded, cleared, or left the "
                         "ring)",
                         id);
        return;
    }
    http_reply_json(resp, 200, NULL, e);
    cJSON_Delete(e);
}

static void h_requests_clear(struct app *app, const struct http_request *req,
                             struct http_response *resp)
{
    if (authorize(app, req, resp))
        return;
    char ns[64];
    const char *nsv = admin_namespace(req, ns);
    if (journal_clear(app, nsv)) {
        http_reply_error(resp, 500, "storage error");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "cleared", 1);
    json_add_str_or_null(o, "namespace", nsv);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

const struct route admin_routes[] = {
    {"GET", "/__admin/health", h_health, "admin"},
    {"POST", "/__admin/reset", h_reset, "admin"},
    {"GET", "/__admin/clock", h_clock_get, "admin"},
    {"POST", "/__admin/clock", h_clock_post, "admin"},
    {"GET", "/__admin/onlyoffice/sms", h_sms, "admin"},
    {"GET", "/__admin/onlyoffice/totp", h_totp, "admin"},
    {"GET", "/__admin/scenarios", h_scenarios_list, "admin"},
    {"POST", "/__admin/scenarios", h_scenarios_add, "admin"},
    {"GET", "/__admin/scenarios/{name}", h_scenario_show, "admin"},
    {"DELETE", "/__admin/scenarios/{name}", h_scenario_delete, "admin"},
    {"GET", "/__admin/sessions", h_sessions, "admin"},
    {"PUT", "/__admin/sessions/{id*}", h_session_force, "admin"},
    {"GET", "/__admin/requests", h_requests, "admin"},
    {"DELETE", "/__admin/requests", h_requests_clear, "admin"},
    {"GET", "/__admin/requests/count", h_requests_count, "admin"},
    {"GET", "/__admin/requests/{id}", h_request_show, "admin"},
};
const size_t admin_route_count = sizeof admin_routes / sizeof admin_routes[0];

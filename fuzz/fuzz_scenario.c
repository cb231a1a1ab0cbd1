/*
 * fuzz_scenario: scenario files, as `authmock check`, the start-up and
 * POST /__admin/scenarios read them. An input is a scenario document,
 * optionally followed by FUZZ_SEPARATOR and requests (see fuzz_app.h).
 *
 * The document is parsed and validated; every problem must name the file and
 * a json-path. A scenario that validates is then the only one the app serves,
 * and the requests (or, without any, a few of its API that force it with
 * X-Authmock-Scenario) walk it: what validation lets through, the engine and
 * the API modules must answer without fault.
 */
#include "fuzz_app.h"

#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_NAME "fuzz-scenario.json"

static void check_line(const char *line, void *cls)
{
    (void)cls;
    if (strncmp(line, FILE_NAME ": $", sizeof FILE_NAME + 2) != 0) {
        fprintf(stderr, "fuzz_scenario: a problem that names no file and json-path: %s\n", line);
        abort();
    }
}

/* Requests that force scenario `name` of `api` through a few steps. */
static void default_requests(struct buf *b, const char *api, const char *name)
{
    if (strcmp(api, "mesh") == 0) {
        const char *hdr = "X-Client-Id: test-client-id\nX-Client-Secret: test-client-secret\n"
                          "Content-Type: application/json\n";
        buf_printf(b,
                   "POST /api/v1/authenticate?userId=u1\n%sX-Authmock-Scenario: %s\n\n"
                   "{\"type\":\"robinhood\",\"username\":\"ok@example.com\","
                   "\"password\":\"pass123\"}" FUZZ_SEPARATOR,
                   hdr, name);
        buf_printf(b,
                   "POST /api/v1/authenticate?userId=u1\n%sX-Authmock-Scenario: %s\n\n"
                   "{\"type\":\"robinhood\",\"username\":\"ok@example.com\","
                   "\"password\":\"pass123\",\"mfaCode\":\"123456\","
                   "\"challengeId\":\"${challengeId}\"}" FUZZ_SEPARATOR,
                   hdr, name);
        buf_printf(b, "GET /api/v1/authenticationSchemes\n%s\n" FUZZ_SEPARATOR, hdr);
        buf_printf(b,
                   "POST /api/v1/token/refresh\n%s\n"
                   "{\"type\":\"robinhood\",\"refreshToken\":\"${refreshToken}\"}" FUZZ_SEPARATOR,
                   hdr);
        buf_printf(b, "GET /__admin/sessions\n\n");
    } else {
        const char *hdr = "Content-Type: application/json\n";
        buf_printf(b,
                   "POST /api/2.0/authentication\n%sX-Authmock-Scenario: %s\n\n"
                   "{\"userName\":\"jane@example.com\",\"password\":\"pass123\"}" FUZZ_SEPARATOR,
                   hdr, name);
        buf_printf(b,
                   "POST /api/2.0/authentication/123456\n%sX-Authmock-Scenario: %s\n\n"
                   "{\"userName\":\"jane@example.com\",\"password\":\"pass123\"}" FUZZ_SEPARATOR,
                   hdr, name);
        buf_printf(b,
                   "POST /api/2.0/authentication/sendsms\n%sX-Authmock-Scenario: %s\n\n"
                   "{\"userName\":\"jane@example.com\",\"password\":\"pass123\"}" FUZZ_SEPARATOR,
                   hdr, name);
        buf_printf(b, "GET /api/2.0/authentication\n\n" FUZZ_SEPARATOR);
        buf_printf(b, "GET /__admin/sessions\n\n");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_app();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct app *app = fuzz_app();
    const char *text = (const char *)data, *rest;
    size_t rest_len, len = fuzz_split(text, size, &rest, &rest_len);
    struct problems p = {0};
    struct scenario *s = scenario_parse(FILE_NAME, text, len, app->apis, app->napis, &p);
    problems_each(&p, check_line, NULL);
    if ((s == NULL) != (p.count > 0)) {
        fprintf(stderr, "fuzz_scenario: %s with %d problems\n", s ? "accepted" : "refused",
                p.count);
        abort();
    }
    problems_free(&p);
    if (!s)
        return 0;
    struct buf names = {0};
    scenario_state_names(s, &names);
    buf_free(&names);
    struct buf requests = {0};
    if (!rest)
        default_requests(&requests, scenario_api_name(s), scenario_name(s));
    struct scenario_set *set = scenario_set_new();
    scenario_set_add(set, s);
    fuzz_app_use_scenarios(app, set);
    fuzz_app_reset(app);
    if (rest)
        fuzz_app_send(app, rest, rest_len);
    else
        fuzz_app_send(app, requests.data, requests.len);
    buf_free(&requests);
    return 0;
}

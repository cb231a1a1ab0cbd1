/*
 * fuzz_fixtures: fixture files, as the start-up and `authmock check` read
 * them. An input is one fixture file, optionally followed by FUZZ_SEPARATOR
 * and requests (see fuzz_app.h); it is read once as a file of mesh/ and once
 * as one of onlyoffice/.
 *
 * Every problem loading reports must name the file and a json-path. A file
 * that loads takes the place of the bundled fixtures of its kinds; when the
 * APIs' own checks pass too, as at start-up, the app serves the requests (or,
 * without any, logins of the file's first users and the calls that follow
 * them) from those fixtures: what the checks let through, the API modules
 * must answer without fault.
 */
#include "fuzz_app.h"

#include "app.h"
#include "mesh.h"
#include "onlyoffice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const files[] = {"fuzz/mesh/fixture.json", "fuzz/onlyoffice/fixture.json"};

static void check_line(const char *line, void *cls)
{
    const char *file = cls;
    size_t n = strlen(file);
    if (strncmp(line, file, n) != 0 || strncmp(line + n, ": $", 3) != 0) {
        fprintf(stderr, "fuzz_fixtures: a problem that names no file and json-path: %s\n", line);
        abort();
    }
}

/* A request with a JSON body built from `body` (taken over). */
static void json_request(struct buf *b, const char *line, const char *headers, cJSON *body)
{
    char *text = json_render(body, NULL);
    buf_printf(b, "%s\n%sContent-Type: application/json\n\n%s" FUZZ_SEPARATOR, line, headers,
               text ? text : "");
    free(text);
    cJSON_Delete(body);
}

static void mesh_requests(struct buf *b, const struct fixtures *f)
{
    const cJSON *client = cJSON_GetArrayItem(f->mesh_clients, 0);
    const char *type = json_str(cJSON_GetArrayItem(f->mesh_integrations, 0), "type");
    struct buf hdr = {0};
    buf_printf(&hdr, "X-Client-Id: %s\nX-Client-Secret: %s\n", json_str(client, "clientId"),
               json_str(client, "clientSecret"));
    for (int i = 0; i < 2; i++) {
        const cJSON *user = cJSON_GetArrayItem(f->mesh_users, i);
        if (!user)
            break;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "type", type ? type : "robinhood");
        cJSON_AddStringToObject(body, "username", json_str(user, "username"));
        cJSON_AddStringToObject(body, "password", "pass123");
        json_request(b, "POST /api/v1/authenticate?userId=u1", hdr.data, body);
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "type", type ? type : "robinhood");
    cJSON_AddStringToObject(body, "refreshToken", "${refreshToken}");
    json_request(b, "POST /api/v1/token/refresh", hdr.data, body);
    buf_printf(b, "GET /api/v1/integrations\n%s\n" FUZZ_SEPARATOR, hdr.data);
    buf_printf(b, "GET /api/v1/authenticationSchemes\n%s\n" FUZZ_SEPARATOR, hdr.data);
    buf_printf(b, "GET /api/v1/authenticate/%s?userId=u1\n%s\n", type ? type : "robinhood",
               hdr.data);
    buf_free(&hdr);
}

static void onlyoffice_requests(struct buf *b, const struct fixtures *f)
{
    for (int i = 0; i < 2; i++) {
        const cJSON *user = cJSON_GetArrayItem(f->onlyoffice_users, i);
        if (!user)
            break;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "userName", json_str(user, "email"));
        cJSON_AddStringToObject(body, "password", json_str(user, "password"));
        cJSON *again = cJSON_Duplicate(body, 1);
        json_request(b, "POST /api/2.0/authentication", "", body);
        const char *secret = json_str(user, "totpSecret");
        if (secret && strlen(secret) < 40 && !strpbrk(secret, "}:\n"))
            buf_printf(b,
                       "POST /api/2.0/authentication/${totp:%s}\nContent-Type: "
                       "application/json\n\n",
                       secret);
        else
            buf_printf(b, "POST /api/2.0/authentication/123456\nContent-Type: "
                          "application/json\n\n");
        char *text = json_render(again, NULL);
        buf_printf(b, "%s" FUZZ_SEPARATOR, text ? text : "");
        free(text);
        cJSON_Delete(again);
    }
    buf_printf(b, "GET /api/2.0/authentication\n\n" FUZZ_SEPARATOR);
    buf_printf(b, "POST /api/2.0/authentication/logout\n\n");
}

/* Serves requests from the fixtures of `f` (the bundled ones for the kinds it lacks). */
static void serve(struct app *app, const struct fixtures *f, int mesh, const char *rest,
                  size_t rest_len)
{
    const struct fixtures *b = &app->fixtures;
    struct fixtures merged = {
        f->mesh_clients ? f->mesh_clients : b->mesh_clients,
        f->mesh_integrations ? f->mesh_integrations : b->mesh_integrations,
        f->mesh_users ? f->mesh_users : b->mesh_users,
        f->onlyoffice_users ? f->onlyoffice_users : b->onlyoffice_users,
    };
    struct problems p = {0};
    mesh_check_fixtures(&merged, &p);
    onlyoffice_check_fixtures(&merged, &p);
    int ok = p.count == 0 && cJSON_GetArraySize(merged.mesh_clients) > 0;
    problems_free(&p);
    if (!ok)
        return;
    struct buf requests = {0};
    if (!rest) {
        if (mesh)
            mesh_requests(&requests, &merged);
        else
            onlyoffice_requests(&requests, &merged);
    }
    struct fixtures bundled = app->fixtures;
    app->fixtures = merged;
    /* What a scenario set derived from the integrations (the mesh
     * authentication schemes) is derived again from a new set. Only then:
     * publishing a set writes every scenario into the store. */
    int renew = f->mesh_integrations != NULL;
    if (renew)
        fuzz_app_use_scenarios(app, fuzz_app_base_scenarios());
    fuzz_app_reset(app);
    if (rest)
        fuzz_app_send(app, rest, rest_len);
    else
        fuzz_app_send(app, requests.data, requests.len);
    app->fixtures = bundled;
    if (renew)
        fuzz_app_use_scenarios(app, fuzz_app_base_scenarios());
    fuzz_app_reset(app);
    buf_free(&requests);
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
    for (int i = 0; i < 2; i++) {
        struct fixtures f = {0};
        struct problems p = {0};
        fixtures_load_text(&f, files[i], text, len, &p);
        problems_each(&p, check_line, (void *)files[i]);
        if (!p.count && fixtures_count(&f) > 0)
            serve(app, &f, i == 0, rest, rest_len);
        problems_free(&p);
        fixtures_free(&f);
    }
    return 0;
}

/*
 * fixtures: reads a .json file in <dir>/<api>/, checks each record's shape, and keeps
 * the records as cJSON arrays per kind. Shape checks are plain tables of
 * required members and their JSON types; API modules check the meaning
 * (enum values and so on) after loading.
 */
#include "fixtures.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum jtype { J_STRING, J_NUMBER, J_BOOL, J_ARRAY, J_OBJECT, J_STRING_OR_NULL };

struct member {
    const char *name;
    enum jtype type;
    int required;
};

struct kind {
    const char *api;
    const char *key;
    const char *id_member;
    const struct member *members;
    size_t nmembers;
};

static const struct member mesh_client_members[] = {
    {"clientId", J_STRING, 1},
    {"clientSecret", J_STRING, 1},
    {"name", J_STRING, 0},
};

static const struct member mesh_integration_members[] = {
    {"type", J_STRING, 1},
    {"name", J_STRING, 1},
    {"id", J_STRING, 1},
    {"schemeType", J_STRING, 1},
    {"initialFields", J_ARRAY, 1},
    {"instructionsUrl", J_STRING_OR_NULL, 0},
    {"oauthUrl", J_STRING_OR_NULL, 0},
    {"health", J_OBJECT, 1},
    {"supportedProducts", J_ARRAY, 1},
    {"categories", J_ARRAY, 0},
    {"cryptoTransfersSupported", J_BOOL, 0},
    {"forgotPasswordLink", J_STRING_OR_NULL, 0},
    {"deFiWalletProviderId", J_STRING_OR_NULL, 0},
};

static const struct member mesh_user_members[] = {
    {"username", J_STRING, 1},
    {"accounts", J_ARRAY, 1},
};

static const struct member onlyoffice_user_members[] = {
    {"id", J_STRING, 1},
    {"email", J_STRING, 1},
    {"password", J_STRING, 1},
    {"status", J_STRING, 1},
    {"tfa", J_STRING, 1},
    {"totpSecret", J_STRING_OR_NULL, 0},
    {"phone", J_STRING_OR_NULL, 0},
};

#define KIND(api, key, id, m)                                                                      \
    {                                                                                              \
        api, key, id, m, sizeof m / sizeof m[0]                                                    \
    }
static const struct kind kinds[] = {
    KIND("mesh", "clients", "clientId", mesh_client_members),
    KIND("mesh", "integrations", "type", mesh_integration_members),
    KIND("mesh", "users", "username", mesh_user_members),
    KIND("onlyoffice", "users", "email", onlyoffice_user_members),
};

static const char *type_name(enum jtype t)
{
    static const char *const names[] = {"a string", "a number",  "true or false",
                                        "an array", "an object", "a string or null"};
    return names[t];
}

static int type_ok(const cJSON *v, enum jtype t)
{
    switch (t) {
    case J_STRING:
        return cJSON_IsString(v);
    case J_NUMBER:
        return cJSON_IsNumber(v);
    case J_BOOL:
        return cJSON_IsBool(v);
    case J_ARRAY:
        return cJSON_IsArray(v);
    case J_OBJECT:
        return cJSON_IsObject(v);
    case J_STRING_OR_NULL:
        return cJSON_IsString(v) || cJSON_IsNull(v);
    }
    return 0;
}

const cJSON *fixtures_find(const cJSON *array, const char *key, const char *value, int nocase)
{
    const cJSON *el;
    cJSON_ArrayForEach(el, array)
    {
        const char *v = json_str(el, key);
        if (v && (nocase ? strcasecmp(v, value) : strcmp(v, value)) == 0)
            return el;
    }
    return NULL;
}

static cJSON **target(struct fixtures *f, const struct kind *k)
{
    if (strcmp(k->api, "mesh") == 0) {
        if (strcmp(k->key, "clients") == 0)
            return &f->mesh_clients;
        if (strcmp(k->key, "integrations") == 0)
            return &f->mesh_integrations;
        return &f->mesh_users;
    }
    return &f->onlyoffice_users;
}

/* Checks and (when `f` is not NULL) keeps the records of one parsed file. */
static void take_file(struct fixtures *f, const char *path, const char *api, cJSON *doc,
                      struct problems *p)
{
    if (!cJSON_IsObject(doc)) {
        problems_add(p, path, "$", "a fixture file must be a JSON object");
        return;
    }
    cJSON *arr;
    cJSON_ArrayForEach(arr, doc)
    {
        const struct kind *k = NULL;
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(kinds[i].api, api) == 0 && strcmp(kinds[i].key, arr->string) == 0)
                k = &kinds[i];
        char path_key[300];
        snprintf(path_key, sizeof path_key, "$.%s", arr->string);
        if (!k) {
            problems_add(p, path, path_key, "unknown kind of %s fixture (%s)", api,
                         strcmp(api, "mesh") == 0 ? "clients, integrations or users" : "users");
            continue;
        }
        if (!cJSON_IsArray(arr)) {
            problems_add(p, path, path_key, "must be an array");
            continue;
        }
        int i = 0, bad_before = p->count;
        cJSON *el;
        cJSON_ArrayForEach(el, arr)
        {
            char at[340];
            snprintf(at, sizeof at, "%s[%d]", path_key, i++);
            if (!cJSON_IsObject(el)) {
                problems_add(p, path, at, "must be an object");
                continue;
            }
            for (size_t m = 0; m < k->nmembers; m++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(el, k->members[m].name);
                char mp[400];
                json_path_join(mp, sizeof mp, at, SIZE_MAX, k->members[m].name, SIZE_MAX);
                if (!v) {
                    if (k->members[m].required)
                        problems_add(p, path, mp, "is required (%s)",
                                     type_name(k->members[m].type));
                } else if (!type_ok(v, k->members[m].type)) {
                    problems_add(p, path, mp, "must be %s", type_name(k->members[m].type));
                }
            }
            const char *id = json_str(el, k->id_member);
            if (id && f && fixtures_find(*target(f, k), k->id_member, id, 1))
                problems_add(p, path, at, "%s '%s' is defined twice", k->id_member, id);
        }
        if (f && p->count == bad_before) {
            /* The records move from the parsed file into the fixtures: a deep
             * copy and the file's deletion cost a start-up nearly as much as
             * parsing them. */
            cJSON **dst = target(f, k);
            if (!*dst)
                *dst = cJSON_CreateArray();
            while (arr->child)
                cJSON_AddItemToArray(*dst, cJSON_DetachItemViaPointer(arr, arr->child));
        }
    }
}

static void load_text(struct fixtures *f, const char *path, const char *api, const char *text,
                      size_t len, struct problems *p)
{
    size_t off;
    enum json_error why;
    cJSON *doc = json_parse_why(text, len, &off, &why);
    if (!doc) {
        char where[64], what[128];
        snprintf(where, sizeof where, "$ (byte %zu)", off);
        problems_add(p, path, where, "%s", json_file_error(why, what, sizeof what));
        return;
    }
    take_file(f, path, api, doc, p);
    cJSON_Delete(doc);
}

static void load_path(struct fixtures *f, const char *path, const char *api, struct problems *p)
{
    size_t len;
    char *text = file_read(path, &len);
    if (!text) {
        problems_add(p, path, "$", "cannot be read: %s", strerror(errno));
        return;
    }
    load_text(f, path, api, text, len, p);
    free(text);
}

struct walk_ctx {
    struct fixtures *f;
    struct problems *p;
};

static void load_one(const char *path, const char *problem, void *cls)
{
    struct walk_ctx *wc = cls;
    if (problem)
        problems_add(wc->p, path, "$", "%s", problem);
    else
        fixtures_load_file(wc->f, path, wc->p);
}

int fixtures_load(struct fixtures *f, const char *dir, struct problems *p)
{
    int before = p->count;
    struct stat st;
    struct walk_ctx wc = {f, p};
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || dir_walk_json(dir, load_one, &wc))
        problems_add(p, dir, "$", "the fixtures directory cannot be read: %s",
                     errno ? strerror(errno) : "not a directory");
    return p->count - before;
}

const char *fixtures_dir_api(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return NULL;
    const char *parent = slash;
    while (parent > path && parent[-1] != '/')
        parent--;
    size_t n = (size_t)(slash - parent);
    if (n == 4 && strncmp(parent, "mesh", 4) == 0)
        return "mesh";
    if (n == 10 && strncmp(parent, "onlyoffice", 10) == 0)
        return "onlyoffice";
    return NULL;
}

/* The API of a fixture file: the name of the directory holding it (mesh
 * for a bare file name). NULL, with a problem added, when that is neither. */
static const char *file_api(const char *path, struct problems *p)
{
    const char *api = strchr(path, '/') ? fixtures_dir_api(path) : "mesh";
    if (!api)
        problems_add(p, path, "$", "a fixture file belongs in a mesh/ or onlyoffice/ directory");
    return api;
}

int fixtures_load_file(struct fixtures *f, const char *path, struct problems *p)
{
    int before = p->count;
    const char *api = file_api(path, p);
    if (api)
        load_path(f, path, api, p);
    return p->count - before;
}

int fixtures_load_text(struct fixtures *f, const char *path, const char *text, size_t len,
                       struct problems *p)
{
    int before = p->count;
    const char *api = file_api(path, p);
    if (api)
        load_text(f, path, api, text, len, p);
    return p->count - before;
}

int fixtures_persist(const struct fixtures *f, struct store *s)
{
    struct {
        const char *kind;
        const cJSON *arr;
        const char *id;
    } all[] = {
        {"mesh.clients", f->mesh_clients, "clientId"},
        {"mesh.integrations", f->mesh_integrations, "type"},
        {"mesh.users", f->mesh_users, "username"},
        {"onlyoffice.users", f->onlyoffice_users, "email"},
    };
    int err = 0;
    store_lock(s);
    store_exec(s, store_stmt(s, ST_BEGIN));
    err |= store_exec(s, store_stmt(s, ST_FIXTURES_CLEAR));
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const cJSON *el;
        cJSON_ArrayForEach(el, all[i].arr)
        {
            char *json = cJSON_PrintUnformatted(el);
            sqlite3_stmt *st = store_stmt(s, ST_FIXTURE_PUT);
            store_bind_text(st, 1, all[i].kind);
            store_bind_text(st, 2, json_str(el, all[i].id));
            store_bind_text(st, 3, "fixtures");
            store_bind_text(st, 4, json);
            err |= store_exec(s, st);
            free(json);
        }
    }
    store_exec(s, store_stmt(s, err ? ST_ROLLBACK : ST_COMMIT));
    store_unlock(s);
    return err ? -1 : 0;
}

size_t fixtures_count(const struct fixtures *f)
{
    return (size_t)(cJSON_GetArraySize(f->mesh_clients) + cJSON_GetArraySize(f->mesh_integrations) +
                    cJSON_GetArraySize(f->mesh_users) + cJSON_GetArraySize(f->onlyoffice_users));
}

void fixtures_free(struct fixtures *f)
{
    cJSON_Delete(f->mesh_clients);
    cJSON_Delete(f->mesh_integrations);
    cJSON_Delete(f->mesh_users);
    cJSON_Delete(f->onlyoffice_users);
    memset(f, 0, sizeof *f);
}

/*
 * onlyoffice: every behaviour of the emulated ONLYOFFICE DocSpace API.
 *
 * POST /authentication, /authentication/{code} and /authentication/sendsms
 * share the server's GetUserAsync: model binding (400), then the credential
 * check and brute force, which run through the scenario engine so a scenario
 * can script them (identity: lower-cased user name + client IP). The chosen
 * reply's outcome "authenticate" then follows AuthenticateMe (§6), the code
 * login (§8) or SendSmsCode, from the fixture user and its per-namespace
 * overlay (app connected, phone, phone activated, used backup codes).
 * Tokens, SMS codes and confirm keys are state records; all times are on the
 * mock clock.
 */
#include "onlyoffice.h"
#include "app.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "rng.h"
#include "totp.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nettle/pbkdf2.h>

#define COUNT(a)         (sizeof(a) / sizeof((a)[0]))
#define SMS_TTL          600.0
#define SMS_MAX_LIVE     5
#define SMS_MAX_CHECKS   5
#define TFA_MAX_ATTEMPTS 5
#define CONFIRM_TTL      3600.0
#define TOKEN_TTL        (365.0 * 86400.0)
#define TOTP_DRIFT       10
#define UNSET_TIME       "0001-01-01T00:00:00"
/* The portal's password-hash settings (reference §10.6): clients that send
 * passwordHash compute PBKDF2-HMAC-SHA256(password, salt, iterations, 256 bits). */
#define HASH_SALT       "8f2c9b1e4d7a6c3b5e0f1a2d3c4b5a69"
#define HASH_ITERATIONS 100000

enum endpoint { EP_LOGIN, EP_CODE, EP_SENDSMS };
static const char *const endpoint_names[] = {"login", "code", "sendsms"};

/* ---- the fixture user and its overlay --------------------------------- */

struct oo_user {
    const cJSON *fx;
    const char *id, *email, *password, *status, *tfa, *secret;
    int app_connected;
    char phone[72]; /* digits only, "" when none */
    int phone_activated;
    char used_codes[1024]; /* backup codes already used, ",a,b," */
};

static void digits_only(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; in && *in && n + 1 < cap; in++)
        if (*in >= '0' && *in <= '9')
            out[n++] = *in;
    out[n] = '\0';
}

static const cJSON *user_by(const struct app *app, const char *key, const char *value)
{
    return value ? fixtures_find(app->fixtures.onlyoffice_users, key, value, 1) : NULL;
}

/* Serialises the changes of one user (its overlay, codes and attempts) in a
 * namespace; other users go on in parallel. Striped by a hash of the user. */
static pthread_mutex_t user_locks[64];
static pthread_once_t user_locks_once = PTHREAD_ONCE_INIT;

static void user_locks_init(void)
{
    for (size_t i = 0; i < COUNT(user_locks); i++)
        pthread_mutex_init(&user_locks[i], NULL);
}

static pthread_mutex_t *user_lock(const char *ns, const char *id)
{
    pthread_once(&user_locks_once, user_locks_init);
    size_t h = 5381;
    for (const char *p = ns; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (const char *p = id ? id : ""; *p; p++)
        h = h * 33 + (unsigned char)*p;
    pthread_mutex_t *m = &user_locks[h % COUNT(user_locks)];
    pthread_mutex_lock(m);
    return m;
}

/* Fills `u` from the fixture and the namespace's overlay. */
static void user_load(struct app *app, const char *ns, const cJSON *fx, struct oo_user *u)
{
    memset(u, 0, sizeof *u);
    u->fx = fx;
    u->id = json_str(fx, "id");
    u->email = json_str(fx, "email");
    u->password = json_str(fx, "password");
    u->status = json_str(fx, "status");
    u->tfa = json_str(fx, "tfa");
    u->secret = json_str(fx, "totpSecret");
    u->app_connected = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fx, "appConnected"));
    digits_only(json_str(fx, "phone"), u->phone, sizeof u->phone);
    u->phone_activated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fx, "phoneActivated"));
    snprintf(u->used_codes, sizeof u->used_codes, ",");
    char key[256];
    struct state_lock held = {0};
    struct state_oo_user *o = state_ns_key(ns, u->id, key, sizeof key)
                                  ? NULL
                                  : state_get(app->state, SK_OO_USER, key, 0, &held);
    if (o) {
        u->app_connected = o->app_connected;
        snprintf(u->phone, sizeof u->phone, "%s", o->phone);
        u->phone_activated = o->phone_activated;
        snprintf(u->used_codes, sizeof u->used_codes, "%s", o->used_codes ? o->used_codes : ",");
    }
    state_unlock(&held);
}

static void user_save(struct app *app, const char *ns, const struct oo_user *u)
{
    char key[256];
    struct state_lock held = {0};
    struct state_oo_user *o = state_ns_key(ns, u->id, key, sizeof key)
                                  ? NULL
                                  : state_get(app->state, SK_OO_USER, key, 1, &held);
    if (o) {
        o->app_connected = u->app_connected;
        snprintf(o->phone, sizeof o->phone, "%s", u->phone);
        o->phone_activated = u->phone_activated;
        /* Kept only once a backup code was used: most users never do. */
        if (strcmp(u->used_codes, ",") != 0 &&
            (!o->used_codes || strcmp(o->used_codes, u->used_codes) != 0)) {
            char *codes = strdup(u->used_codes);
            if (codes) {
                free(o->used_codes);
                o->used_codes = codes;
            }
        }
        state_touch(app->state, o);
    }
    state_unlock(&held);
}

/* PBKDF2 is slow by design (100,000 rounds), so each user's hash is computed
 * once, when a client first sends passwordHash for that user. */
static struct {
    pthread_mutex_t lock;
    char email[32][128];
    char hash[32][65];
    int n;
} hash_cache = {PTHREAD_MUTEX_INITIALIZER, {{0}}, {{0}}, 0};

static void password_hash(const char *email, const char *password, char out[65])
{
    pthread_mutex_lock(&hash_cache.lock);
    for (int i = 0; i < hash_cache.n; i++)
        if (strcasecmp(hash_cache.email[i], email) == 0) {
            memcpy(out, hash_cache.hash[i], 65);
            pthread_mutex_unlock(&hash_cache.lock);
            return;
        }
    pthread_mutex_unlock(&hash_cache.lock);
    uint8_t dk[32];
    pbkdf2_hmac_sha256(strlen(password), (const uint8_t *)password, HASH_ITERATIONS,
                       strlen(HASH_SALT), (const uint8_t *)HASH_SALT, sizeof dk, dk);
    hex_encode(dk, sizeof dk, out);
    pthread_mutex_lock(&hash_cache.lock);
    if (hash_cache.n < 32) {
        snprintf(hash_cache.email[hash_cache.n], sizeof hash_cache.email[0], "%s", email);
        memcpy(hash_cache.hash[hash_cache.n++], out, 65);
    }
    pthread_mutex_unlock(&hash_cache.lock);
}

void onlyoffice_phone_noise(const char *digits, char *out, size_t cap)
{
    size_t n = strlen(digits);
    if (n < 8) {
        snprintf(out, cap, "%s", digits);
        return;
    }
    char stars[64];
    size_t k = n - 8 < sizeof stars - 1 ? n - 8 : sizeof stars - 1;
    memset(stars, '*', k);
    stars[k] = '\0';
    snprintf(out, cap, "+%.4s%s%s", digits, stars, digits + n - 4);
}

/* ---- times, URLs, cookies --------------------------------------------- */

/* ASP.NET's DateTime in UTC: 7 fractional digits and a Z. */
static void format_time(double t, char out[40])
{
    time_t secs = (time_t)floor(t);
    long frac = (long)llround((t - (double)secs) * 1e7);
    if (frac >= 10000000) {
        frac -= 10000000;
        secs++;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    snprintf(out, 40, "%.39s", tmp);
}

static void http_date(double t, char out[40])
{
    time_t secs = (time_t)floor(t);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void url_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *in && n + 4 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

static void url_decode(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 1 < cap; in++) {
        if (*in == '%' && isxdigit((unsigned char)in[1]) && isxdigit((unsigned char)in[2])) {
            char h[3] = {in[1], in[2], 0};
            out[n++] = (char)strtol(h, NULL, 16);
            in += 2;
        } else {
            out[n++] = *in;
        }
    }
    out[n] = '\0';
}

static void set_cookie(const struct app *app, struct http_response *resp, const char *name,
                       const char *value, double expires)
{
    char enc[512], line[768], date[40] = "";
    url_encode(value, enc, sizeof enc);
    if (expires > 0) {
        http_date(expires, date);
        snprintf(line, sizeof line, "%s=%s; expires=%s; path=/; samesite=strict;%s httponly", name,
                 enc, date, app->tls ? " secure;" : "");
    } else {
        snprintf(line, sizeof line, "%s=%s; path=/; samesite=strict;%s httponly", name, enc,
                 app->tls ? " secure;" : "");
    }
    http_add_header(resp, "Set-Cookie", line);
}

static void delete_cookie(struct http_response *resp, const char *name)
{
    char line[160];
    snprintf(line, sizeof line, "%s=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/", name);
    http_add_header(resp, "Set-Cookie", line);
}

/* ---- envelopes -------------------------------------------------------- */

static cJSON *links(const struct app *app, const struct http_request *req)
{
    char base[300], href[2400];
    http_base_url(app, req, base, sizeof base);
    snprintf(href, sizeof href, "%s%s%s%s", base, req->path, req->query[0] ? "?" : "", req->query);
    cJSON *arr = cJSON_CreateArray();
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "href", href);
    cJSON_AddStringToObject(l, "action", req->method);
    cJSON_AddItemToArray(arr, l);
    return arr;
}

/* SuccessApiResponse: null keys dropped, so a null response disappears and counts 0. */
static void reply_success(const struct app *app, const struct http_request *req,
                          struct http_response *resp, cJSON *response, int status_field, int http)
{
    cJSON *env = cJSON_CreateObject();
    if (response)
        cJSON_AddItemToObject(env, "response", response);
    cJSON_AddNumberToObject(env, "count", response ? 1 : 0);
    cJSON_AddItemToObject(env, "links", links(app, req));
    cJSON_AddNumberToObject(env, "status", status_field);
    cJSON_AddNumberToObject(env, "statusCode", http);
    http_reply_json(resp, http, NULL, env);
    cJSON_Delete(env);
}

/* ErrorApiResponse: no count, links or response; type/stack null unless filled. */
static void reply_error(struct http_response *resp, int http, const char *message, const char *type,
                        const char *stack, double hresult)
{
    cJSON *env = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(env, "error");
    cJSON_AddStringToObject(err, "message", message);
    json_add_str_or_null(err, "type", type);
    json_add_str_or_null(err, "stack", stack);
    cJSON_AddNumberToObject(err, "hresult", hresult);
    cJSON_AddNumberToObject(env, "status", 1);
    cJSON_AddNumberToObject(env, "statusCode", http);
    http_reply_json(resp, http, NULL, env);
    cJSON_Delete(env);
}

/* A W3C traceparent-style traceId, as ProblemDetails carry. */
static void add_trace_id(cJSON *pd)
{
    char trace[56];
    rng_trace_id(trace);
    cJSON_AddStringToObject(pd, "traceId", trace);
}

/* The [ApiController] automatic 400, wrapped like a success with status 1. */
static void reply_problem(const struct app *app, const struct http_request *req,
                          struct http_response *resp, cJSON *errors)
{
    cJSON *pd = cJSON_CreateObject();
    cJSON_AddStringToObject(pd, "type", "https://tools.ietf.org/html/rfc9110#section-15.5.1");
    cJSON_AddStringToObject(pd, "title", "One or more validation errors occurred.");
    cJSON_AddNumberToObject(pd, "status", 400);
    cJSON_AddItemToObject(pd, "errors", errors);
    add_trace_id(pd);
    reply_success(app, req, resp, pd, 1, 400);
}

/* A body the JSON input formatter cannot read (a form, or no Content-Type:
 * what curl -d sends) is a 415 from [ApiController]: a ProblemDetails that
 * the response filter wraps like a success. The filter runs before the
 * status is applied, so the envelope says status 0 and statusCode 200 while
 * the HTTP status is 415 (ResponseWrapper.cs, CommonApiResponse.cs). */
static void reply_unsupported_media_type(const struct app *app, const struct http_request *req,
                                         struct http_response *resp)
{
    cJSON *pd = cJSON_CreateObject();
    cJSON_AddStringToObject(pd, "type", "https://tools.ietf.org/html/rfc9110#section-15.5.16");
    cJSON_AddStringToObject(pd, "title", "Unsupported Media Type");
    cJSON_AddNumberToObject(pd, "status", 415);
    add_trace_id(pd);
    reply_success(app, req, resp, pd, 0, 200);
    resp->status = 415;
}

/* Answers with no body at all: what the confirm scheme's challenge sends. */
static void reply_empty(struct http_response *resp, int http)
{
    http_reply_raw(resp, http, NULL, "", 0);
}

struct named_error {
    const char *name;
    int documented, server; /* HTTP status per profile */
    const char *message;
    const char *type; /* NULL: type and stack are not filled */
    double hresult;
};

static const char STACK[] = "   at ASC.Web.Api.Controllers.AuthenticationController."
                            "AuthenticateMeAsync(AuthRequestsDto inDto)";

static const struct named_error named_errors[] = {
    {"authFailed", 401, 401, "User authentication failed", NULL, 0},
    {"emptyCredentials", 400, 401, NULL, "System.ArgumentException", -2147024809.0},
    {"tooManyAttempts", 429, 403, "Too many login attempts. Please try again later", NULL, 0},
    {"userDisabled", 403, 403, "User disabled", "System.InvalidOperationException", -2146233079.0},
    {"userNotFound", 404, 404, "The user could not be found",
     "ASC.Common.Web.ItemNotFoundException", -2146233088.0},
    {"invalidRecaptcha", 403, 403, "Invalid Recaptcha", NULL, 0},
    {"codeNotAvailable", 403, 401, "Auth code is not available",
     "System.Security.SecurityException", -2146233078.0},
};

static void reply_named(const struct app *app, struct http_response *resp, const char *name)
{
    for (size_t i = 0; i < COUNT(named_errors); i++) {
        const struct named_error *e = &named_errors[i];
        if (strcmp(e->name, name) != 0)
            continue;
        int server = app->cfg.profile == PROFILE_SERVER;
        int http = server ? e->server : e->documented;
        const char *message = e->message;
        const char *type = e->type;
        if (strcmp(name, "emptyCredentials") == 0)
            message = server ? "User authentication failed"
                             : "userName, password or passworHash is empty";
        /* Where the server's catch-all turns the error into 401, it is an
         * AuthenticationException: message "User authentication failed", no stack. */
        if (http == 401) {
            message = "User authentication failed";
            type = NULL;
        }
        reply_error(resp, http, message, type, type ? STACK : NULL, type ? e->hresult : 0);
        http_set_outcome(resp, name);
        return;
    }
    reply_error(resp, 500, "authmock: unknown error name", NULL, NULL, 0);
}

/* ---- model binding ---------------------------------------------------- */

/* ConfirmType and EmployeeType, each name at its value's index. Both carry
 * [JsonConverter(typeof(JsonStringEnumConverter<T>))]: names in any case and
 * integers bind (the official SDK sends {"type":16} for TfaAuth);
 * EmployeeType is [Flags], so "RoomAdmin, Guest" binds too. */
static const char *const confirm_types[] = {
    "EmpInvite",      "LinkInvite",        "PortalSuspend",   "PortalContinue", "PortalRemove",
    "DnsChange",      "PortalOwnerChange", "Activation",      "EmailChange",    "EmailActivation",
    "PasswordChange", "ProfileRemove",     "PhoneActivation", "PhoneAuth",      "Auth",
    "TfaActivation",  "TfaAuth",           "Wizard",          "GuestShareLink",
};

static const char *const employee_types[] = {"All", "RoomAdmin", "Guest", "DocSpaceAdmin", "User"};

enum ftype {
    F_STRING,
    F_BOOL,
    F_ENUM_INT,
    F_CONFIRM_DATA,
    F_CONFIRM_TYPE,
    F_EMPLOYEE_TYPE,
    F_GUID
};

struct field {
    const char *name;
    enum ftype type;
};

static const struct field auth_fields[] = {
    {"userName", F_STRING},
    {"password", F_STRING},
    {"passwordHash", F_STRING},
    {"provider", F_STRING},
    {"accessToken", F_STRING},
    {"serializedProfile", F_STRING},
    {"codeOAuth", F_STRING},
    {"session", F_BOOL},
    {"confirmData", F_CONFIRM_DATA},
    {"recaptchaType", F_ENUM_INT},
    {"recaptchaResponse", F_STRING},
    {"culture", F_STRING},
    {"code", F_STRING},
    {"mobilePhone", F_STRING},
    {"type", F_CONFIRM_TYPE},
    {"key", F_STRING},
    {"uiD", F_GUID},
    {"email", F_STRING},
    {"encEmail", F_STRING},
    {"emplType", F_EMPLOYEE_TYPE},
    {"first", F_STRING},
    {"roomId", F_STRING},
};

static const char *clr_name(enum ftype t)
{
    switch (t) {
    case F_STRING:
        return "System.String";
    case F_BOOL:
        return "System.Boolean";
    case F_ENUM_INT:
        return "ASC.Web.Core.RecaptchaType";
    case F_CONFIRM_TYPE:
        return "System.Nullable`1[ASC.Web.Studio.Utility.ConfirmType]";
    case F_EMPLOYEE_TYPE:
        return "System.Nullable`1[ASC.Core.Users.EmployeeType]";
    case F_GUID:
        return "System.Nullable`1[System.Guid]";
    case F_CONFIRM_DATA:
        break;
    }
    return "ASC.Web.Api.ApiModel.RequestsDto.ConfirmData";
}

/* A Guid as System.Text.Json reads one: the "D" form, 8-4-4-4-12 hex digits. */
static int is_guid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return s[36] == '\0';
}

static void add_error(cJSON *errors, const char *key, const char *msg)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(errors, key);
    if (!list)
        list = cJSON_AddArrayToObject(errors, key);
    cJSON_AddItemToArray(list, cJSON_CreateString(msg));
}

/* Binds a JSON body like System.Text.Json with web defaults (names ignoring
 * case). Returns the body with canonical member names, or NULL after
 * answering 400. */
static cJSON *bind_body(const struct app *app, const struct http_request *req,
                        struct http_response *resp)
{
    if (req->body_len > 0 && !http_json_content_type(req)) {
        reply_unsupported_media_type(app, req, resp);
        return NULL;
    }
    cJSON *errors = cJSON_CreateObject();
    cJSON *out = NULL;
    size_t off;
    if (req->body_len == 0) {
        add_error(errors, "", "A non-empty request body is required.");
        goto fail;
    }
    enum json_error why;
    cJSON *doc = json_parse_why(req->body, req->body_len, &off, &why);
    resp->body_is_json = doc != NULL; /* the journal needs no second parse */
    if (!doc || !cJSON_IsObject(doc)) {
        char msg[200];
        if (doc)
            snprintf(msg, sizeof msg,
                     "The JSON value could not be converted to the request type. Path: $ | "
                     "LineNumber: 0 | BytePositionInLine: 1.");
        else
            snprintf(msg, sizeof msg,
                     "The request body %s. Path: $ | LineNumber: 0 | BytePositionInLine: %zu.",
                     json_error_text(why), off);
        add_error(errors, "$", msg);
        add_error(errors, "inDto", "The inDto field is required.");
        cJSON_Delete(doc);
        goto fail;
    }
    out = cJSON_CreateObject();
    cJSON *item;
    cJSON_ArrayForEach(item, doc)
    {
        const struct field *f = NULL;
        for (size_t i = 0; i < COUNT(auth_fields); i++)
            if (strcasecmp(auth_fields[i].name, item->string) == 0)
                f = &auth_fields[i];
        if (!f)
            continue;
        int ok;
        char name[32];
        cJSON *canon = NULL; /* the value as the handlers read it, when it differs */
        switch (f->type) {
        case F_STRING:
            ok = cJSON_IsString(item) || cJSON_IsNull(item);
            break;
        case F_CONFIRM_TYPE:
        case F_EMPLOYEE_TYPE:
            ok = cJSON_IsNull(item) ||
                 (f->type == F_CONFIRM_TYPE
                      ? json_enum_read(item, confirm_types, COUNT(confirm_types), 0, 0, name,
                                       sizeof name)
                      : json_enum_read(item, employee_types, COUNT(employee_types), 1, 0, name,
                                       sizeof name)) == 0;
            if (ok && !cJSON_IsNull(item))
                canon = cJSON_CreateString(name);
            break;
        case F_GUID:
            ok = cJSON_IsNull(item) || (cJSON_IsString(item) && is_guid(item->valuestring));
            break;
        case F_BOOL:
            ok = cJSON_IsBool(item);
            break;
        case F_ENUM_INT:
            ok = cJSON_IsNull(item) ||
                 (cJSON_IsNumber(item) && item->valuedouble == floor(item->valuedouble) &&
                  fabs(item->valuedouble) < 2147483648.0);
            break;
        default: {
            ok = cJSON_IsObject(item) || cJSON_IsNull(item);
            const char *email = ok ? json_str(item, "email") : NULL;
            if (email && !strchr(email, '@'))
                add_error(errors, "ConfirmData.Email",
                          "The Email field is not a valid e-mail address.");
        }
        }
        if (!ok) {
            char key[64], msg[300];
            snprintf(key, sizeof key, "$.%s", f->name);
            snprintf(msg, sizeof msg,
                     "The JSON value could not be converted to %s. Path: $.%s | LineNumber: 0 | "
                     "BytePositionInLine: 1.",
                     clr_name(f->type), f->name);
            add_error(errors, key, msg);
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(out, f->name);
        cJSON_AddItemToObject(out, f->name, canon ? canon : cJSON_Duplicate(item, 1));
    }
    cJSON_Delete(doc);
    if (cJSON_GetArraySize(errors) == 0) {
        cJSON_Delete(errors);
        return out;
    }
fail:
    cJSON_Delete(out);
    reply_problem(app, req, resp, errors);
    return NULL;
}

/* ---- tokens, confirm keys, SMS codes (records of the state module) --- */

/* A token: opaque standard Base64 of 128 random bytes (172 characters). */
static char *issue_token(struct app *app, const char *ns, const struct oo_user *u, int session,
                         double now)
{
    unsigned char raw[128];
    rng_bytes(raw, sizeof raw);
    char *token = b64_encode(raw, sizeof raw);
    char key[512];
    struct state_lock held = {0};
    struct state_oo_token *t = token && state_ns_key(ns, token, key, sizeof key) == 0
                                   ? state_get(app->state, SK_OO_TOKEN, key, 1, &held)
                                   : NULL;
    if (t) {
        snprintf(t->user_id, sizeof t->user_id, "%s", u->id);
        t->expires = now + TOKEN_TTL;
        t->session = session;
        t->revoked = 0;
        state_touch(app->state, t);
    }
    state_unlock(&held);
    return token;
}

/* A confirm key "{ms since 2010}.{HASH}", valid for one hour. */
static void issue_confirm_key(struct app *app, const char *ns, const struct oo_user *u,
                              const char *type, double now, char out[80])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char raw[40];
    char h[41];
    rng_bytes(raw, sizeof raw);
    for (size_t i = 0; i < sizeof raw; i++)
        h[i] = alphabet[raw[i] % 36];
    h[40] = '\0';
    snprintf(out, 80, "%.0f.%s", floor((now - 1262304000.0) * 1000.0), h);
    char key[256];
    struct state_lock held = {0};
    struct state_oo_confirm *c = state_ns_key(ns, out, key, sizeof key) == 0
                                     ? state_get(app->state, SK_OO_CONFIRM, key, 1, &held)
                                     : NULL;
    if (c) {
        snprintf(c->user_id, sizeof c->user_id, "%s", u->id);
        snprintf(c->type, sizeof c->type, "%s", type);
        c->expires = now + CONFIRM_TTL;
        state_touch(app->state, c);
    }
    state_unlock(&held);
}

/* Looks up a confirm key: 0 valid (user id copied), 1 invalid, 2 expired. */
static int check_confirm_key(struct app *app, const char *ns, const char *key, const char *type,
                             double now, char user_id[64])
{
    char k[512];
    if (!key || !*key || state_ns_key(ns, key, k, sizeof k))
        return 1;
    struct state_lock held;
    struct state_oo_confirm *c = state_get(app->state, SK_OO_CONFIRM, k, 0, &held);
    int result = 1;
    if (c && (!type || strcmp(c->type, type) == 0)) {
        snprintf(user_id, 64, "%.63s", c->user_id);
        result = c->expires > now ? 0 : 2;
    }
    state_unlock(&held);
    return result;
}

/* PutAuthCode: sends a new code unless `again` is false and one is live.
 * Returns the expiry of the live code, or -1 when too many codes are live. */
static double put_auth_code(struct app *app, const char *ns, const char *phone, int again,
                            double now)
{
    char key[256];
    if (state_ns_key(ns, phone, key, sizeof key))
        return -1;
    struct state_lock held;
    struct state_oo_sms *box = state_get(app->state, SK_OO_SMS, key, 1, &held);
    if (!box) {
        state_unlock(&held);
        return -1;
    }
    long live = 0;
    double expires = 0;
    for (int i = 0; i < box->nmsgs; i++)
        if (!box->msgs[i].used && box->msgs[i].expires > now) {
            live++;
            if (box->msgs[i].expires > expires)
                expires = box->msgs[i].expires;
        }
    if (!again && live > 0) {
        state_unlock(&held);
        return expires;
    }
    if (live > SMS_MAX_LIVE) {
        state_unlock(&held);
        return -1;
    }
    snprintf(box->phone, sizeof box->phone, "%s", phone);
    if (box->nmsgs == OO_SMS_KEEP) {
        memmove(&box->msgs[0], &box->msgs[1], (OO_SMS_KEEP - 1) * sizeof box->msgs[0]);
        box->nmsgs--;
    } else {
        struct oo_sms_msg *grown = realloc(box->msgs, (size_t)(box->nmsgs + 1) * sizeof *grown);
        if (!grown) {
            state_unlock(&held);
            return -1;
        }
        box->msgs = grown;
    }
    struct oo_sms_msg *m = &box->msgs[box->nmsgs++];
    memset(m, 0, sizeof *m);
    rng_digits(m->code, 6);
    m->sent = now;
    m->expires = now + SMS_TTL;
    state_touch(app->state, box);
    state_unlock(&held);
    return now + SMS_TTL;
}

/* Counts one attempt in a per-user (or per-phone) window kept in the engine's
 * event table, and tells whether the attempts went over `max`. */
static int attempts_exceeded(struct app *app, const char *ns, const char *kind, const char *who,
                             double window, long max, double now)
{
    char key[512];
    const char *parts[] = {kind, who};
    if (state_key(key, sizeof key, ns, parts, 2) < 0)
        return 1;
    struct state_lock held;
    struct state_session *ss = state_get(app->state, SK_SESSION, key, 1, &held);
    struct state_counter *c = ss ? state_counter(ss, "attempts", 1) : NULL;
    state_counter_add(c, now, window);
    long n = state_counter_count(c, now, window);
    if (ss)
        state_touch(app->state, ss);
    state_unlock(&held);
    return n > max;
}

static void attempts_clear(struct app *app, const char *ns, const char *kind, const char *who)
{
    char key[512];
    const char *parts[] = {kind, who};
    if (state_key(key, sizeof key, ns, parts, 2) < 0)
        return;
    struct state_lock held;
    struct state_session *ss = state_get(app->state, SK_SESSION, key, 0, &held);
    if (ss) {
        state_counter_clear(state_counter(ss, "attempts", 0));
        state_touch(app->state, ss);
    }
    state_unlock(&held);
}

/* §8.2: validates an SMS code for the user's phone; a success consumes every
 * live code and activates the phone. */
static int validate_sms(struct app *app, const char *ns, struct oo_user *u, const char *code,
                        double now)
{
    if (!code || !*code || !u->phone[0])
        return 0;
    if (attempts_exceeded(app, ns, "onlyoffice.sms", u->phone, SMS_TTL, SMS_MAX_CHECKS, now))
        return 0;
    char key[256];
    if (state_ns_key(ns, u->phone, key, sizeof key))
        return 0;
    struct state_lock held;
    struct state_oo_sms *box = state_get(app->state, SK_OO_SMS, key, 0, &held);
    double expires = 0;
    for (int i = 0; box && i < box->nmsgs; i++)
        if (!box->msgs[i].used && strcmp(box->msgs[i].code, code) == 0 &&
            box->msgs[i].expires > expires)
            expires = box->msgs[i].expires;
    if (box && expires > now) {
        for (int i = 0; i < box->nmsgs; i++)
            box->msgs[i].used = 1;
        state_touch(app->state, box);
    }
    state_unlock(&held);
    if (expires <= now)
        return 0; /* unknown (Invalide) or expired (Timeout) */
    attempts_clear(app, ns, "onlyoffice.sms", u->phone);
    u->phone_activated = 1;
    user_save(app, ns, u);
    return 1;
}

/* §8.3: a TOTP code (±5 minutes) or an unused backup code; the first
 * success connects the app. */
static int validate_totp(struct app *app, const char *ns, struct oo_user *u, const char *code,
                         double now)
{
    if (!code || !*code || !u->secret)
        return 0;
    if (attempts_exceeded(app, ns, "onlyoffice.tfa", u->id, 60.0, TFA_MAX_ATTEMPTS, now))
        return 0;
    int ok = totp_check(u->secret, strlen(u->secret), now, TOTP_DRIFT, code);
    if (!ok) {
        const cJSON *b;
        char needle[80];
        snprintf(needle, sizeof needle, ",%s,", code);
        cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(u->fx, "backupCodes"))
        {
            size_t used = strlen(u->used_codes);
            if (cJSON_IsString(b) && strcmp(b->valuestring, code) == 0 &&
                !strstr(u->used_codes, needle) && used + strlen(code) + 2 < sizeof u->used_codes) {
                snprintf(u->used_codes + used, sizeof u->used_codes - used, "%s,", code);
                ok = 1;
                break;
            }
        }
    }
    if (!ok)
        return 0;
    attempts_clear(app, ns, "onlyoffice.tfa", u->id);
    u->app_connected = 1;
    user_save(app, ns, u);
    return 1;
}

/* ---- answers ---------------------------------------------------------- */

static cJSON *token_dto(const char *token, const char *expires, int sms, const char *noise, int tfa,
                        const char *tfa_key, const char *confirm_url)
{
    cJSON *o = cJSON_CreateObject();
    if (token)
        cJSON_AddStringToObject(o, "token", token);
    cJSON_AddStringToObject(o, "expires", expires);
    cJSON_AddBoolToObject(o, "sms", sms);
    if (noise)
        cJSON_AddStringToObject(o, "phoneNoise", noise);
    cJSON_AddBoolToObject(o, "tfa", tfa);
    if (tfa_key)
        cJSON_AddStringToObject(o, "tfaKey", tfa_key);
    if (confirm_url)
        cJSON_AddStringToObject(o, "confirmUrl", confirm_url);
    return o;
}

struct call {
    struct app *app;
    const struct http_request *req;
    struct http_response *resp;
    const char *ns;
    enum endpoint ep;
    const cJSON *body;
    double now;
    int session;
};

/* Issues a token and sets asc_auth_key (no Expires for a session cookie). */
static char *login_user(struct call *c, const struct oo_user *u, char expires[40])
{
    char *token = issue_token(c->app, c->ns, u, c->session, c->now);
    set_cookie(c->app, c->resp, "asc_auth_key", token, c->session ? 0 : c->now + TOKEN_TTL);
    if (c->session)
        snprintf(expires, 40, UNSET_TIME);
    else
        format_time(c->now + TOKEN_TTL, expires);
    return token;
}

static void confirm_url(struct call *c, const struct oo_user *u, const char *type, int by_cookie,
                        char *out, size_t cap)
{
    char base[300], key[80];
    http_base_url(c->app, c->req, base, sizeof base);
    issue_confirm_key(c->app, c->ns, u, type, c->now, key);
    if (by_cookie) {
        char name[64];
        snprintf(name, sizeof name, "asc_confirm_key_%s", type);
        set_cookie(c->app, c->resp, name, key, 0);
        snprintf(out, cap, "%s/confirm/%s?type=%s&uid=%s", base, type, type, u->id);
        return;
    }
    char *enc = b64url_encode(u->email, strlen(u->email));
    char ekey[200], eenc[300];
    url_encode(key, ekey, sizeof ekey);
    url_encode(enc ? enc : "", eenc, sizeof eenc);
    snprintf(out, cap, "%.300s/confirm/%.32s?type=%.32s&key=%.200s&encemail=%.300s", base, type,
             type, ekey, eenc);
    free(enc);
}

static void answer(struct call *c, cJSON *dto)
{
    reply_success(c->app, c->req, c->resp, dto, 0, 200);
}

/* The 2FA-pending and token answers of AuthenticateMe (§6), by branch. */
static void outcome_token(struct call *c, struct oo_user *u)
{
    char expires[40];
    char *token = login_user(c, u, expires);
    answer(c, token_dto(token, expires, 0, NULL, 0, NULL, NULL));
    http_set_outcome(c->resp, "token");
    free(token);
}

static void outcome_phone_activation(struct call *c, struct oo_user *u)
{
    char url[1024];
    confirm_url(c, u, "PhoneActivation", 0, url, sizeof url);
    answer(c, token_dto(NULL, UNSET_TIME, 1, NULL, 0, NULL, url));
    http_set_outcome(c->resp, "phoneActivation");
}

static void outcome_sms_auth(struct call *c, struct oo_user *u)
{
    double exp = put_auth_code(c->app, c->ns, u->phone, 0, c->now);
    if (exp < 0) {
        reply_error(c->resp, 500, "You have sent too many text messages. Please try again later.",
                    "System.Exception", STACK, -2146233088.0);
        return;
    }
    char url[1024], noise[80], expires[40];
    confirm_url(c, u, "PhoneAuth", 0, url, sizeof url);
    onlyoffice_phone_noise(u->phone, noise, sizeof noise);
    format_time(exp, expires);
    answer(c, token_dto(NULL, expires, 1, noise, 0, NULL, url));
    http_set_outcome(c->resp, "smsAuth");
}

static void outcome_tfa(struct call *c, struct oo_user *u, int activation)
{
    char url[1024], key[40] = "";
    confirm_url(c, u, activation ? "TfaActivation" : "TfaAuth", 1, url, sizeof url);
    if (activation && u->secret)
        base32_encode(u->secret, strlen(u->secret), key);
    answer(c, token_dto(NULL, UNSET_TIME, 0, NULL, 1, activation ? key : NULL, url));
    http_set_outcome(c->resp, activation ? "tfaActivation" : "tfaAuth");
}

static int tfa_is(const struct oo_user *u, const char *kind)
{
    return u->tfa && strcmp(u->tfa, kind) == 0;
}

/* AuthenticateMe (§6): status, then SMS before TOTP, then a token. */
static void authenticate_login(struct call *c, struct oo_user *u)
{
    if (tfa_is(u, "sms")) {
        if (!u->phone[0] || !u->phone_activated)
            outcome_phone_activation(c, u);
        else
            outcome_sms_auth(c, u);
    } else if (tfa_is(u, "app")) {
        outcome_tfa(c, u, !u->app_connected);
    } else {
        outcome_token(c, u);
    }
}

/* The code login (§8): any failure inside is 401 "User authentication failed". */
static void authenticate_code(struct call *c, struct oo_user *u)
{
    const char *code = json_str(c->body, "code");
    if (!code && c->req->nparams > 0)
        code = c->req->params[0]; /* SPEC §3: the path only when the body has none */
    char expires[40], noise[80];
    if (tfa_is(u, "sms")) {
        if (!validate_sms(c->app, c->ns, u, code, c->now)) {
            reply_named(c->app, c->resp, "authFailed");
            return;
        }
        char *token = login_user(c, u, expires);
        onlyoffice_phone_noise(u->phone, noise, sizeof noise);
        answer(c, token_dto(token, expires, 1, noise, 0, NULL, NULL));
        http_set_outcome(c->resp, "token");
        free(token);
    } else if (tfa_is(u, "app")) {
        if (!validate_totp(c->app, c->ns, u, code, c->now)) {
            reply_named(c->app, c->resp, "authFailed");
            return;
        }
        char *token = login_user(c, u, expires);
        answer(c, token_dto(token, expires, 0, NULL, 1, NULL, NULL));
        http_set_outcome(c->resp, "token");
        free(token);
    } else {
        reply_named(c->app, c->resp, "codeNotAvailable");
    }
}

/* SendSmsCode: a fresh code for a user with SMS 2FA and a phone. */
static void authenticate_sendsms(struct call *c, struct oo_user *u)
{
    if (!tfa_is(u, "sms")) {
        reply_error(c->resp, 500, "Attempted to access a method.", "System.MethodAccessException",
                    STACK, -2146233072.0);
        return;
    }
    if (!u->phone[0]) {
        reply_error(c->resp, 500, "Enter mobile phone number", "System.Exception", STACK,
                    -2146233088.0);
        return;
    }
    double exp = put_auth_code(c->app, c->ns, u->phone, 1, c->now);
    if (exp < 0) {
        reply_error(c->resp, 500, "You have sent too many text messages. Please try again later.",
                    "System.Exception", STACK, -2146233088.0);
        return;
    }
    char noise[80], expires[40];
    onlyoffice_phone_noise(u->phone, noise, sizeof noise);
    format_time(exp, expires);
    answer(c, token_dto(NULL, expires, 1, noise, 0, NULL, NULL));
    http_set_outcome(c->resp, "smsSent");
}

static void render_reply(struct call *c, const struct scenario_outcome *out, struct oo_user *u,
                         int have_user)
{
    const cJSON *reply = out->reply;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    const char *outcome = json_str(reply, "outcome");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(reply, "body");
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(reply, "http");
    if (cJSON_IsString(err)) {
        reply_named(c->app, c->resp, err->valuestring);
    } else if (cJSON_IsObject(err)) {
        const char *type = json_str(err, "type");
        const cJSON *hr = cJSON_GetObjectItemCaseSensitive(err, "hresult");
        reply_error(c->resp, cJSON_IsNumber(http) ? http->valueint : 400,
                    json_str(err, "message") ? json_str(err, "message") : "", type,
                    json_str(err, "stack") ? json_str(err, "stack") : (type ? STACK : NULL),
                    cJSON_IsNumber(hr) ? hr->valuedouble : 0);
        http_set_outcome(c->resp, "error");
    } else if (outcome && !have_user) {
        /* An outcome needs a user; a scenario that asks for one without it
         * gets what the server answers for an unknown user. */
        reply_named(c->app, c->resp, "authFailed");
    } else if (outcome && strcmp(u->status, "active") != 0) {
        reply_named(c->app, c->resp, "userDisabled");
    } else if (outcome && strcmp(outcome, "authenticate") == 0) {
        if (c->ep == EP_LOGIN)
            authenticate_login(c, u);
        else if (c->ep == EP_CODE)
            authenticate_code(c, u);
        else
            authenticate_sendsms(c, u);
    } else if (outcome && strcmp(outcome, "token") == 0) {
        outcome_token(c, u);
    } else if (outcome && strcmp(outcome, "tfaAuth") == 0) {
        outcome_tfa(c, u, 0);
    } else if (outcome && strcmp(outcome, "tfaActivation") == 0) {
        outcome_tfa(c, u, 1);
    } else if (outcome && strcmp(outcome, "smsAuth") == 0) {
        outcome_sms_auth(c, u);
    } else if (outcome && strcmp(outcome, "phoneActivation") == 0) {
        outcome_phone_activation(c, u);
    } else if (!body) {
        reply_success(c->app, c->req, c->resp, NULL, 0, 200);
    } else {
        http_set_outcome(c->resp, "custom"); /* a raw body: what it means is the scenario's */
    }
    if (out->limited)
        http_set_outcome(c->resp, out->why.limit_started ? "limited" : "blocked");
    if (!http_reply_body_override(c->resp, cJSON_IsNumber(http) ? http->valueint : 200, reply) &&
        cJSON_IsNumber(http) && !cJSON_IsObject(err))
        c->resp->status = http->valueint;
    if (out->limited && c->resp->status == 429) {
        char v[32];
        snprintf(v, sizeof v, "%ld", out->retry_after > 0 ? out->retry_after : 60);
        http_add_header(c->resp, "Retry-After", v);
    }
    http_apply_reply_extras(c->resp, reply);
}

/* ---- the three credential endpoints ----------------------------------- */

/* A state write failed, or would: a 500, never a success whose state is not kept. */
static void reply_store_error(struct app *app, struct http_response *resp)
{
    char msg[320];
    state_error_message(app->state, msg, sizeof msg);
    reply_error(resp, 500, msg, NULL, NULL, 0);
}

static const char *request_header(const void *cls, const char *name)
{
    return http_header(cls, name);
}

static void credential_call(struct app *app, const struct http_request *req,
                            struct http_response *resp, enum endpoint ep)
{
    if (http_namespace(req, resp->ns, sizeof resp->ns)) {
        reply_error(resp, 400, "X-Authmock-Namespace must be 1 to 63 printable ASCII characters",
                    "System.ArgumentException", NULL, -2147024809.0);
        return;
    }
    cJSON *body = bind_body(app, req, resp);
    if (!body)
        return;
    struct call c = {app, req, resp, resp->ns, ep, body, clock_now_ns(resp->ns), 0};
    c.session = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "session"));
    const char *user_name = json_str(body, "userName");
    const char *password = json_str(body, "password");
    const cJSON *hash_item = cJSON_GetObjectItemCaseSensitive(body, "passwordHash");
    const char *hash = json_str(body, "passwordHash");

    /* The facts scenarios match: the user name lower-cased, the credentials'
     * shape and validity, the endpoint. */
    char lower[256] = "";
    for (size_t i = 0; user_name && user_name[i] && i + 1 < sizeof lower; i++)
        lower[i] = (char)tolower((unsigned char)user_name[i]), lower[i + 1] = '\0';
    int missing = !user_name || !*user_name ||
                  ((!password || !*password) && (!hash_item || cJSON_IsNull(hash_item)));
    const cJSON *fx = user_by(app, "email", user_name);
    int valid = 0;
    if (fx && !missing) {
        const char *want = json_str(fx, "password");
        char trimmed_hash[128], computed[65];
        if (hash && *hash) {
            snprintf(trimmed_hash, sizeof trimmed_hash, "%s", hash);
            password_hash(json_str(fx, "email"), want, computed);
            valid = strcasecmp(trimmed_hash, computed) == 0;
        } else if (password) {
            /* The server trims the password before hashing it. */
            size_t a = 0, b = strlen(password);
            while (a < b && isspace((unsigned char)password[a]))
                a++;
            while (b > a && isspace((unsigned char)password[b - 1]))
                b--;
            valid = strlen(want) == b - a && strncmp(want, password + a, b - a) == 0;
        }
    }
    cJSON *facts = cJSON_Duplicate(body, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(facts, "userName");
    cJSON_AddStringToObject(facts, "userName", lower);
    cJSON_AddStringToObject(facts, "endpoint", endpoint_names[ep]);
    cJSON_AddStringToObject(facts, "credentials", missing ? "missing" : "present");
    cJSON_AddBoolToObject(facts, "userExists", fx != NULL);
    cJSON_AddBoolToObject(facts, "passwordValid", valid);
    char identity[400];
    snprintf(identity, sizeof identity, "%s|%s", lower, req->client_ip);
    snprintf(resp->user, sizeof resp->user, "%s", lower);
    struct scenario_request sreq = {
        .api = "onlyoffice",
        .ns = resp->ns,
        .identity = identity,
        .forced = http_header(req, "X-Authmock-Scenario"),
        .facts = facts,
        .header = request_header,
        .header_cls = req,
        .explain = app->journal != NULL,
    };
    struct scenario_outcome out;
    int rc = scenario_step(app->engine, &sreq, &out);
    if (app->journal) {
        /* Rendered now, while the set and the facts are held: the journal keeps text. */
        struct buf why = {0};
        scenario_explain_json(&sreq, &out, rc, NULL, &why);
        resp->match = why.data;
    }
    if (out.scenario) {
        snprintf(resp->scenario, sizeof resp->scenario, "%s", scenario_name(out.scenario));
        snprintf(resp->state_from, sizeof resp->state_from, "%s", out.state_from);
        snprintf(resp->state_to, sizeof resp->state_to, "%s", out.state_to);
    }
    char msg[300];
    if (rc == SCENARIO_OK) {
        struct oo_user u;
        pthread_mutex_t *m = user_lock(resp->ns, fx ? json_str(fx, "id") : lower);
        if (fx)
            user_load(app, resp->ns, fx, &u);
        render_reply(&c, &out, &u, fx != NULL);
        pthread_mutex_unlock(m);
    } else if (rc == SCENARIO_UNKNOWN_FORCED) {
        snprintf(msg, sizeof msg, "X-Authmock-Scenario: there is no onlyoffice scenario named '%s'",
                 sreq.forced);
        reply_error(resp, 400, msg, "System.ArgumentException", NULL, -2147024809.0);
        http_set_outcome(resp, "unknownScenario");
    } else if (rc == SCENARIO_UNBOUND) {
        reply_named(app, resp, "authFailed");
        http_set_outcome(resp, "unbound");
    } else if (rc == SCENARIO_NO_STEP) {
        snprintf(msg, sizeof msg,
                 "authmock: scenario '%s' has no step in state '%s' that matches this request",
                 resp->scenario, out.state_from);
        reply_error(resp, 500, msg, NULL, NULL, 0);
        http_set_outcome(resp, "noStep");
    } else {
        reply_store_error(app, resp);
        http_set_outcome(resp, "storeError");
    }
    scenario_outcome_release(&out);
    cJSON_Delete(facts);
    cJSON_Delete(body);
}

static void h_login(struct app *app, const struct http_request *req, struct http_response *resp)
{
    credential_call(app, req, resp, EP_LOGIN);
}

static void h_code(struct app *app, const struct http_request *req, struct http_response *resp)
{
    /* The code in the path is a secret: the log shows the route instead. */
    snprintf(resp->log_path, sizeof resp->log_path, "/api/2.0/authentication/{code}");
    credential_call(app, req, resp, EP_CODE);
}

static void h_sendsms(struct app *app, const struct http_request *req, struct http_response *resp)
{
    credential_call(app, req, resp, EP_SENDSMS);
}

/* ---- token presentation ----------------------------------------------- */

/* The token in an asc_auth_key cookie value: URL-decoded, and ' ' back to '+'
 * as the server's CookieStorage does. */
static void cookie_token(const char *cookie, char *out, size_t cap)
{
    url_decode(cookie, out, cap);
    for (char *p = out; *p; p++)
        if (*p == ' ')
            *p = '+';
}

/* The token the cookie scheme sees: the asc_auth_key cookie first, then the
 * Authorization header without "Bearer ". */
static int presented_token(const struct http_request *req, char *out, size_t cap, int *from_cookie)
{
    const char *cookie = http_cookie(req, "asc_auth_key");
    *from_cookie = 0;
    if (cookie && *cookie) {
        cookie_token(cookie, out, cap);
        *from_cookie = 1;
        return 1;
    }
    const char *auth = http_header(req, "Authorization");
    if (!auth || !*auth)
        return 0;
    if (strncasecmp(auth, "Bearer ", 7) == 0)
        auth += 7;
    snprintf(out, cap, "%s", auth);
    return 1;
}

/* Whether `token` is a live token of the namespace; its user id into user_id. */
static int token_valid(struct app *app, const char *ns, const char *token, char user_id[64])
{
    char key[600];
    if (state_ns_key(ns, token, key, sizeof key))
        return 0;
    struct state_lock held;
    struct state_oo_token *t = state_get(app->state, SK_OO_TOKEN, key, 0, &held);
    int ok = t && !t->revoked && t->expires > clock_now_ns(ns);
    if (ok)
        snprintf(user_id, 64, "%.63s", t->user_id);
    state_unlock(&held);
    return ok;
}

static void h_is_authenticated(struct app *app, const struct http_request *req,
                               struct http_response *resp)
{
    if (http_namespace(req, resp->ns, sizeof resp->ns))
        resp->ns[0] = '\0';
    char token[512], user_id[64];
    int from_cookie;
    int have = presented_token(req, token, sizeof token, &from_cookie);
    int ok = have && token_valid(app, resp->ns, token, user_id);
    reply_success(app, req, resp, cJSON_CreateBool(ok), 0, 200);
    if (have && !ok && from_cookie)
        delete_cookie(resp, "asc_auth_key");
}

/* While state writes fail, a call that changes state answers 500 rather
 * than a success whose state would not be kept. */
static int refuse_if_degraded(struct app *app, struct http_response *resp)
{
    if (!state_degraded(app->state))
        return 0;
    reply_store_error(app, resp);
    return -1;
}

static void h_logout(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (http_namespace(req, resp->ns, sizeof resp->ns))
        resp->ns[0] = '\0';
    if (refuse_if_degraded(app, resp))
        return;
    /* Logout reads only the cookie: a client that used the Authorization
     * header revokes nothing. */
    const char *cookie = http_cookie(req, "asc_auth_key");
    if (cookie && *cookie) {
        char token[512];
        cookie_token(cookie, token, sizeof token);
        char key[600];
        struct state_lock held = {0};
        struct state_oo_token *t = state_ns_key(resp->ns, token, key, sizeof key) == 0
                                       ? state_get(app->state, SK_OO_TOKEN, key, 0, &held)
                                       : NULL;
        if (t) {
            t->revoked = 1;
            state_touch(app->state, t);
        }
        state_unlock(&held);
        delete_cookie(resp, "asc_auth_key");
    }
    if (http_cookie(req, "socketio.sid"))
        delete_cookie(resp, "socketio.sid");
    reply_success(app, req, resp, NULL, 0, 200);
}

/* ---- the confirm scheme: setphone, confirm, tfaapp/validate ----------- */

/* Reads the `confirm` header (a confirm URL's query string) and checks its key
 * (or the asc_confirm_key_<type> cookie). Returns the user fixture, or NULL
 * after answering with an empty body: 401 without a valid key, 403 when the
 * key is valid but its type is not one of the endpoint's roles. */
static const cJSON *confirm_scheme(struct app *app, const struct http_request *req,
                                   struct http_response *resp, const char *const *types,
                                   size_t ntypes, double now)
{
    const char *header = http_header(req, "confirm");
    char type[64] = "", key[256] = "";
    if (header) {
        char copy[2048];
        snprintf(copy, sizeof copy, "%s", header[0] == '?' ? header + 1 : header);
        for (char *save = NULL, *part = strtok_r(copy, "&", &save); part;
             part = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(part, '=');
            if (!eq)
                continue;
            *eq = '\0';
            if (strcasecmp(part, "type") == 0)
                url_decode(eq + 1, type, sizeof type);
            else if (strcasecmp(part, "key") == 0)
                url_decode(eq + 1, key, sizeof key);
        }
    }
    int allowed = str_find(types, ntypes, type, 0) != NULL;
    if (type[0] && !key[0]) {
        char name[96];
        snprintf(name, sizeof name, "asc_confirm_key_%s", type);
        const char *ck = http_cookie(req, name);
        if (ck)
            url_decode(ck, key, sizeof key);
    }
    char user_id[64];
    int valid = check_confirm_key(app, resp->ns, key, type, now, user_id) == 0;
    const cJSON *fx = valid ? user_by(app, "id", user_id) : NULL;
    if (!fx) {
        reply_empty(resp, 401); /* no valid key: the scheme's challenge */
        return NULL;
    }
    if (!allowed) {
        reply_empty(resp, 403); /* a valid key in the wrong role */
        return NULL;
    }
    return fx;
}

static void h_setphone(struct app *app, const struct http_request *req, struct http_response *resp)
{
    static const char *const types[] = {"PhoneActivation"};
    if (http_namespace(req, resp->ns, sizeof resp->ns))
        resp->ns[0] = '\0';
    if (refuse_if_degraded(app, resp))
        return;
    double now = clock_now_ns(resp->ns);
    const cJSON *fx = confirm_scheme(app, req, resp, types, COUNT(types), now);
    if (!fx)
        return;
    cJSON *body = bind_body(app, req, resp);
    if (!body)
        return;
    char digits[72];
    digits_only(json_str(body, "mobilePhone"), digits, sizeof digits);
    struct oo_user u;
    struct call c = {app, req, resp, resp->ns, EP_LOGIN, body, now, 0};
    pthread_mutex_t *m = user_lock(resp->ns, json_str(fx, "id"));
    user_load(app, resp->ns, fx, &u);
    if (!digits[0]) {
        reply_error(resp, 500, "Enter mobile phone number", "System.Exception", STACK,
                    -2146233088.0);
    } else if (u.phone[0] && u.phone_activated) {
        reply_error(resp, 500, "To change the number, you need to delete your current phone number",
                    "System.Exception", STACK, -2146233088.0);
    } else {
        snprintf(u.phone, sizeof u.phone, "%s", digits);
        u.phone_activated = 0;
        user_save(app, resp->ns, &u);
        if (tfa_is(&u, "sms"))
            authenticate_sendsms(&c, &u);
        else
            answer(&c, token_dto(NULL, UNSET_TIME, 0, NULL, 0, NULL, NULL));
    }
    pthread_mutex_unlock(m);
    cJSON_Delete(body);
}

static void h_confirm(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (http_namespace(req, resp->ns, sizeof resp->ns))
        resp->ns[0] = '\0';
    cJSON *body = bind_body(app, req, resp);
    if (!body)
        return;
    const char *type = json_str(body, "type");
    char key[256] = "", user_id[64];
    const char *k = json_str(body, "key");
    if (k && *k) {
        snprintf(key, sizeof key, "%s", k);
    } else if (type) {
        char name[96];
        snprintf(name, sizeof name, "asc_confirm_key_%s", type);
        const char *ck = http_cookie(req, name);
        if (ck)
            url_decode(ck, key, sizeof key);
    }
    int result =
        type ? check_confirm_key(app, resp->ns, key, type, clock_now_ns(resp->ns), user_id) : 1;
    cJSON *dto = cJSON_CreateObject();
    cJSON_AddNumberToObject(dto, "result", result);
    const cJSON *fx = result == 0 ? user_by(app, "id", user_id) : NULL;
    if (fx)
        cJSON_AddStringToObject(dto, "email", json_str(fx, "email"));
    cJSON_AddBoolToObject(dto, "isAgent", 0);
    reply_success(app, req, resp, dto, 0, 200);
    cJSON_Delete(body);
}

static void h_tfaapp_validate(struct app *app, const struct http_request *req,
                              struct http_response *resp)
{
    static const char *const types[] = {"TfaAuth", "TfaActivation"};
    if (http_namespace(req, resp->ns, sizeof resp->ns))
        resp->ns[0] = '\0';
    if (refuse_if_degraded(app, resp))
        return;
    snprintf(resp->log_path, sizeof resp->log_path, "/api/2.0/settings/tfaapp/validate");
    double now = clock_now_ns(resp->ns);
    const cJSON *fx = confirm_scheme(app, req, resp, types, COUNT(types), now);
    if (!fx)
        return;
    cJSON *body = bind_body(app, req, resp);
    if (!body)
        return;
    struct call c = {app, req, resp, resp->ns, EP_CODE, body, now, 0};
    c.session = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "session"));
    struct oo_user u;
    pthread_mutex_t *m = user_lock(resp->ns, json_str(fx, "id"));
    user_load(app, resp->ns, fx, &u);
    if (strcmp(u.status, "active") != 0) {
        reply_named(app, resp, "userDisabled");
    } else if (validate_totp(app, resp->ns, &u, json_str(body, "code"), now)) {
        char expires[40];
        free(login_user(&c, &u, expires));
        reply_success(app, req, resp, cJSON_CreateTrue(), 0, 200);
    } else {
        reply_error(resp, 400, "Incorrect code", "System.ArgumentException", "", -2147024809.0);
    }
    pthread_mutex_unlock(m);
    cJSON_Delete(body);
}

/* ---- admin: the current TOTP code ------------------------------------- */

void onlyoffice_totp(struct app *app, const char *ns, const char *user, struct http_response *resp)
{
    if (!user || !*user) {
        http_reply_error(resp, 400, "user is required: ?user=NAME (an onlyoffice user name)");
        return;
    }
    const cJSON *fx = user_by(app, "email", user);
    if (!fx) {
        http_reply_error(resp, 404, "there is no onlyoffice user named '%s'", user);
        return;
    }
    struct oo_user u;
    pthread_mutex_t *m = user_lock(ns ? ns : "", json_str(fx, "id"));
    user_load(app, ns ? ns : "", fx, &u);
    pthread_mutex_unlock(m);
    if (!u.secret || !*u.secret) {
        http_reply_error(resp, 404, "the onlyoffice user '%s' has no TOTP secret (tfa: %s)",
                         u.email, u.tfa ? u.tfa : "none");
        return;
    }
    /* The code the server accepts at this instant of the namespace's clock:
     * the step it falls in, and when that step ends. */
    double now = clock_now_ns(ns);
    uint64_t step = (uint64_t)floor(now / 30.0);
    char code[7], next[7], at[32], from[32], until[32], key[40];
    totp_code(u.secret, strlen(u.secret), step, code);
    totp_code(u.secret, strlen(u.secret), step + 1, next);
    clock_format(now, at);
    clock_format((double)step * 30.0, from);
    clock_format((double)(step + 1) * 30.0, until);
    base32_encode(u.secret, strlen(u.secret), key);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user", u.email);
    cJSON_AddStringToObject(o, "namespace", ns ? ns : ""); /* "": the default one */
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "now", at);
    cJSON_AddStringToObject(o, "validFrom", from);
    cJSON_AddStringToObject(o, "validUntil", until);
    cJSON_AddNumberToObject(o, "secondsRemaining", ceil((double)(step + 1) * 30.0 - now));
    cJSON_AddStringToObject(o, "nextCode", next);
    cJSON_AddNumberToObject(o, "periodSeconds", 30);
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddStringToObject(o, "tfaKey", key);
    cJSON_AddStringToObject(o, "tfa", u.tfa ? u.tfa : "none");
    cJSON_AddBoolToObject(o, "appConnected", u.app_connected);
    http_reply_json(resp, 200, NULL, o);
    cJSON_Delete(o);
}

/* ---- admin: the SMS outbox -------------------------------------------- */

struct outbox_item {
    char ns[64];
    char phone[72];
    struct oo_sms_msg msg;
    size_t order; /* within its phone: later sent later */
};

struct outbox {
    const char *ns;
    struct outbox_item *items;
    size_t n, cap;
};

static void collect_sms(void *rec, void *cls)
{
    struct outbox *ob = cls;
    struct state_oo_sms *box = rec;
    char ns[64];
    snprintf(ns, sizeof ns, "%.*s", (int)box->rec.nslen, box->rec.key);
    if (ob->ns && strcmp(ob->ns, ns) != 0)
        return;
    for (int i = 0; i < box->nmsgs; i++) {
        if (ob->n == ob->cap) {
            size_t cap = ob->cap ? ob->cap * 2 : 64;
            struct outbox_item *items = realloc(ob->items, cap * sizeof *items);
            if (!items)
                return;
            ob->items = items;
            ob->cap = cap;
        }
        struct outbox_item *it = &ob->items[ob->n++];
        snprintf(it->ns, sizeof it->ns, "%s", ns);
        snprintf(it->phone, sizeof it->phone, "%s", box->phone);
        it->msg = box->msgs[i];
        it->order = (size_t)i;
    }
}

static int by_sent_desc(const void *a, const void *b)
{
    const struct outbox_item *x = a, *y = b;
    if (x->msg.sent != y->msg.sent)
        return x->msg.sent < y->msg.sent ? 1 : -1;
    return x->order < y->order ? 1 : x->order > y->order ? -1 : 0;
}

void onlyoffice_sms_outbox(struct app *app, const char *ns, struct http_response *resp)
{
    struct outbox ob = {ns, NULL, 0, 0};
    state_each(app->state, SK_OO_SMS, collect_sms, &ob);
    if (ob.n)
        qsort(ob.items, ob.n, sizeof *ob.items, by_sent_desc);
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < ob.n && i < 500; i++) {
        cJSON *m = cJSON_CreateObject();
        char phone[80], sent[32], exp[32];
        snprintf(phone, sizeof phone, "+%s", ob.items[i].phone);
        clock_format(ob.items[i].msg.sent, sent);
        clock_format(ob.items[i].msg.expires, exp);
        cJSON_AddStringToObject(m, "phone", phone);
        cJSON_AddStringToObject(m, "code", ob.items[i].msg.code);
        cJSON_AddStringToObject(m, "sentAt", sent);
        cJSON_AddStringToObject(m, "expiresAt", exp);
        cJSON_AddStringToObject(m, "namespace", ob.items[i].ns);
        cJSON_AddItemToArray(list, m);
    }
    free(ob.items);
    http_reply_json(resp, 200, NULL, list);
    cJSON_Delete(list);
}

const struct route onlyoffice_routes[] = {
    {"GET", "/api/2.0/authentication", h_is_authenticated, "onlyoffice"},
    {"POST", "/api/2.0/authentication", h_login, "onlyoffice"},
    {"POST", "/api/2.0/authentication/{code}", h_code, "onlyoffice"},
    {"POST", "/api/2.0/authentication/logout", h_logout, "onlyoffice"},
    {"POST", "/api/2.0/authentication/sendsms", h_sendsms, "onlyoffice"},
    {"POST", "/api/2.0/authentication/setphone", h_setphone, "onlyoffice"},
    {"POST", "/api/2.0/authentication/confirm", h_confirm, "onlyoffice"},
    {"POST", "/api/2.0/settings/tfaapp/validate", h_tfaapp_validate, "onlyoffice"},
};
const size_t onlyoffice_route_count = COUNT(onlyoffice_routes);

/* ---- validation ------------------------------------------------------- */

static void oo_validate_reply(const cJSON *reply, const char *file, const char *path,
                              struct problems *p)
{
    static const char *const keys[] = {"outcome", "error",   "http",  "headers",
                                       "body",    "delayMs", "fault", "retryAfter"};
    static const char *const outcomes[] = {"authenticate",  "token",   "tfaAuth",
                                           "tfaActivation", "smsAuth", "phoneActivation"};
    char sub[600];
    const cJSON *k;
    cJSON_ArrayForEach(k, reply)
    {
        if (!str_find(keys, COUNT(keys), k->string, 0)) {
            snprintf(sub, sizeof sub, "%.500s.%.80s", path, k->string);
            problems_add(p, file, sub,
                         "unknown key in an onlyoffice reply (outcome, error, http, headers, body, "
                         "delayMs, fault, retryAfter)");
        }
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(reply, "outcome");
    if (o) {
        snprintf(sub, sizeof sub, "%.500s.outcome", path);
        if (!cJSON_IsString(o) || !str_find(outcomes, COUNT(outcomes), o->valuestring, 0))
            problems_add(p, file, sub,
                         "must be authenticate, token, tfaAuth, tfaActivation, smsAuth or "
                         "phoneActivation");
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
    if (e) {
        int known = 0;
        for (size_t i = 0; cJSON_IsString(e) && i < COUNT(named_errors); i++)
            known |= strcmp(named_errors[i].name, e->valuestring) == 0;
        snprintf(sub, sizeof sub, "%.500s.error", path);
        if (cJSON_IsObject(e) ? !json_str(e, "message") : !known)
            problems_add(p, file, sub,
                         "must be authFailed, emptyCredentials, tooManyAttempts, userDisabled, "
                         "userNotFound, invalidRecaptcha, codeNotAvailable, or an object with a "
                         "message (and http beside it)");
    }
}

static const char *const oo_derived[] = {"endpoint", "credentials", "userExists", "passwordValid",
                                         NULL};
const struct scenario_api onlyoffice_scenario_api = {"onlyoffice", oo_derived, oo_validate_reply};

int onlyoffice_check_fixtures(const struct fixtures *f, struct problems *p)
{
    int before = p->count;
    const cJSON *u;
    int i = 0;
    cJSON_ArrayForEach(u, f->onlyoffice_users)
    {
        char path[128];
        const char *status = json_str(u, "status"), *tfa = json_str(u, "tfa");
        const char *secret = json_str(u, "totpSecret");
        snprintf(path, sizeof path, "onlyoffice.users[%d].status", i);
        if (!status || (strcmp(status, "active") && strcmp(status, "disabled")))
            problems_add(p, "fixtures", path, "must be active or disabled");
        snprintf(path, sizeof path, "onlyoffice.users[%d].tfa", i);
        if (!tfa || (strcmp(tfa, "none") && strcmp(tfa, "app") && strcmp(tfa, "sms")))
            problems_add(p, "fixtures", path, "must be none, app or sms");
        snprintf(path, sizeof path, "onlyoffice.users[%d].totpSecret", i);
        if (tfa && strcmp(tfa, "app") == 0 && (!secret || strlen(secret) != 10))
            problems_add(p, "fixtures", path, "a TOTP user needs a 10-character secret");
        i++;
    }
    return p->count - before;
}

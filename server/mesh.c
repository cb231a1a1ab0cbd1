/*
 * mesh: every behaviour of the emulated Mesh API lives here.
 *
 * POST /api/v1/authenticate goes: client check -> model validation
 * (ProblemDetails) -> Base64 decoding of sensitive fields -> facts + identity
 * (userId + type, within the namespace) -> scenario engine -> rendering of
 * the chosen reply. The managed endpoints (link token, token refresh, account
 * removal, status, integrations) read the fixtures and the token records
 * directly; the schemes endpoint is generated from the integration fixtures
 * and the very scenarios that drive /authenticate.
 */
#include "mesh.h"
#include "journal.h"
#include "app.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACCESS_TTL   7200
#define REFRESH_TTL  2592000
#define PROBLEM_JSON "application/problem+json; charset=utf-8"

static const char *const broker_types[] = {
    "robinhood",
    "eTrade",
    "alpaca",
    "tdAmeritrade",
    "weBull",
    "stash",
    "interactiveBrokers",
    "public",
    "coinbase",
    "kraken",
    "coinbasePro",
    "cryptoCom",
    "openSea",
    "binanceUs",
    "gemini",
    "cryptocurrencyAddress",
    "cryptocurrencyWallet",
    "okCoin",
    "bittrex",
    "kuCoin",
    "etoro",
    "cexIo",
    "binanceInternational",
    "bitstamp",
    "gateIo",
    "acorns",
    "okx",
    "bitFlyer",
    "coinlist",
    "huobi",
    "bitfinex",
    "deFiWallet",
    "krakenDirect",
    "vanguard",
    "binanceInternationalDirect",
    "bitfinexDirect",
    "bybit",
    "paxos",
    "coinbasePrime",
    "btcTurkDirect",
    "kuCoinDirect",
    "okxOAuth",
    "paribuDirect",
    "robinhoodConnect",
    "blockchainCom",
    "bitsoDirect",
    "binanceConnect",
    "binanceOAuth",
    "revolutConnect",
    "binancePay",
    "bybitDirect",
    "paribuOAuth",
    "payPalConnect",
    "binanceTrDirect",
    "coinbaseRamp",
    "bybitDirectMobile",
    "sandbox",
};

static const char *const auth_statuses[] = {
    "failed",
    "challengeFailed",
    "succeeded",
    "challengeIssued",
    "mfaRequired",
    "openInBrokerModule",
    "delayed",
    "deviceConfirmationRequired",
    "emailVerification",
    "emailReceived",
    "captchaChallenge",
    "faceVerification",
    "bindMfaRequired",
    "apiKeyGenerationError",
    "qrCodeRequired",
    "qrCodeExpired",
    "deviceLoginVerified",
};

static const char *const mfa_types[] = {
    "phone",     "email",  "totp",       "phoneAndEmail", "requireNextSecurityQuestion",
    "readEmail", "face",   "tradingPin", "qrCode",        "password",
    "roaming",   "mobile", "passkey",
};

static const char *const flow_steps[] = {"loginPassword", "mfaFlow", "faceVerification",
                                         "createAPIKey", "loginQrCode"};

static const char *const scheme_types[] = {"usernamePassword", "oAuth", "apiKey",
                                           "blockchainAddress", "trueAuth"};

static const struct {
    const char *status;
    int http;
} api_statuses[] = {
    {"ok", 200},
    {"serverFailure", 500},
    {"permissionDenied", 403},
    {"badRequest", 400},
    {"notFound", 404},
    {"conflict", 409},
    {"tooManyRequest", 429},
    {"locked", 423},
    {"unavailableForLegalReasons", 451},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *mesh_broker_type(const char *name)
{
    /* A route or query value binds by name in any case, or by a defined
     * value's number, as ASP.NET Core's enum model binder reads it. */
    char *end;
    long v = name && *name >= '0' && *name <= '9' ? strtol(name, &end, 10) : -1;
    if (v >= 0 && !*end)
        return (size_t)v < COUNT(broker_types) ? broker_types[v] : NULL;
    return str_find(broker_types, COUNT(broker_types), name, 1);
}

int mesh_http_status(const char *api_status)
{
    for (size_t i = 0; i < COUNT(api_statuses); i++)
        if (strcmp(api_statuses[i].status, api_status) == 0)
            return api_statuses[i].http;
    return 0;
}

/* ---- request fields --------------------------------------------------- */

enum ftype { F_STRING, F_BOOL, F_OBJECT, F_BROKER, F_MFA, F_FLOW };

struct field {
    const char *name;
    enum ftype type;
    int sensitive;           /* Base64-encoded when isSensitiveFieldsEncrypted */
    const char *description; /* for the schemes endpoint */
};

/* B2BBrokerAuthRequest, 2026-06. */
static const struct field auth_fields[] = {
    {"type", F_BROKER, 0, NULL},
    {"phone", F_STRING, 1, "Phone number"},
    {"username", F_STRING, 1, "Username"},
    {"password", F_STRING, 1, "Password"},
    {"tradePin", F_STRING, 1, "Trade PIN"},
    {"countryInfo", F_OBJECT, 0, "Country"},
    {"challengeId", F_STRING, 0, "Challenge id"},
    {"challengeCode", F_STRING, 0, "Challenge code"},
    {"challengeType", F_STRING, 0, "Challenge type"},
    {"challengeAnswer", F_STRING, 1, "Answer to the security question"},
    {"mfaCode", F_STRING, 1, "MFA code"},
    {"mfaType", F_MFA, 0, "MFA type"},
    {"deviceInfo", F_STRING, 1, "Device information"},
    {"webData", F_STRING, 0, "Web data"},
    {"authFlowStep", F_FLOW, 0, "Authentication flow step"},
    {"key", F_STRING, 0, "Key"},
    {"authToken", F_STRING, 0, "Auth token"},
    {"redirectLink", F_STRING, 0, "Redirect link"},
    {"confirmationEmail", F_STRING, 1, "Confirmation email"},
    {"trueAuthAuthRequest", F_OBJECT, 0, "TrueAuth request"},
    {"isSensitiveFieldsEncrypted", F_BOOL, 0, NULL},
    {"isTryingAnotherWay", F_BOOL, 0, "Try another way"},
};

static const struct field *auth_field(const char *name)
{
    for (size_t i = 0; i < COUNT(auth_fields); i++)
        if (strcasecmp(auth_fields[i].name, name) == 0)
            return &auth_fields[i];
    return NULL;
}

static const char *clr_type_name(enum ftype t)
{
    switch (t) {
    case F_STRING:
        return "System.String";
    case F_BOOL:
        return "System.Boolean";
    case F_BROKER:
        return "Front.Models.BrokerType";
    case F_MFA:
        return "Front.Models.MfaType";
    case F_FLOW:
        return "Front.Models.AuthFlowStep";
    case F_OBJECT:
        break;
    }
    return "System.Object";
}

/* ---- envelopes -------------------------------------------------------- */

/* The ApiResult envelope. `content` (owned) is added only when `with_content`. */
static cJSON *envelope(cJSON *content, int with_content, const char *status, const char *message,
                       const char *display, const char *error_type)
{
    cJSON *env = cJSON_CreateObject();
    if (with_content) {
        if (content)
            cJSON_AddItemToObject(env, "content", content);
        else
            cJSON_AddNullToObject(env, "content");
    }
    cJSON_AddStringToObject(env, "status", status);
    cJSON_AddStringToObject(env, "message", message ? message : "");
    json_add_str_or_null(env, "displayMessage", display);
    /* An error's hash groups errors (SPEC: for Bugsnag): the same error, the
     * same hash. Each ok answer in SPEC carries a hash of its own, so an ok
     * envelope gets a fresh one (from the seeded generator under --seed). */
    char seed[512], hash[41];
    if (strcmp(status, "ok") == 0) {
        unsigned char raw[20];
        rng_bytes(raw, sizeof raw);
        hex_encode(raw, sizeof raw, hash);
    } else {
        int n = snprintf(seed, sizeof seed, "%s|%s|%s", status, message ? message : "",
                         error_type ? error_type : "");
        sha1_hex(seed, n > 0 && (size_t)n < sizeof seed ? (size_t)n : strlen(seed), hash);
    }
    cJSON_AddStringToObject(env, "errorHash", hash);
    cJSON_AddStringToObject(env, "errorType", error_type ? error_type : "");
    cJSON_AddNullToObject(env, "errorData");
    return env;
}

/* The outcome of an envelope: content.status (succeeded, mfaRequired...), else
 * the envelope's status when it is not ok (locked, tooManyRequest...). */
static void envelope_outcome(struct http_response *resp, const cJSON *env)
{
    const char *word = json_str(cJSON_GetObjectItemCaseSensitive(env, "content"), "status");
    const char *status = json_str(env, "status");
    if (!word && status && strcmp(status, "ok") != 0)
        word = status;
    if (word)
        http_set_outcome(resp, word);
}

static void send_envelope(struct http_response *resp, cJSON *env, const char *status)
{
    int http = mesh_http_status(status);
    envelope_outcome(resp, env);
    http_reply_json(resp, http ? http : 200, NULL, env);
    cJSON_Delete(env);
}

/* POST /authenticate answers 500 and 503 with no content (SPEC lists both
 * without a body). What authmock itself has to say about one goes into the
 * X-Authmock-Error header (and so the journal), never into a body the real
 * API does not send. */
static void send_no_content(struct http_response *resp, int code, const char *reason)
{
    http_reply_raw(resp, code, NULL, "", 0);
    if (reason)
        http_add_header(resp, "X-Authmock-Error", reason);
}

static void send_bad_request(struct http_response *resp, const char *message, const char *display,
                             const char *error_type)
{
    send_envelope(resp, envelope(NULL, 0, "badRequest", message, display, error_type),
                  "badRequest");
}

/* ASP.NET's automatic 400 answer: ProblemDetails with an `errors` map. */
static void send_problem(struct http_response *resp, cJSON *errors)
{
    cJSON *pd = cJSON_CreateObject();
    cJSON_AddStringToObject(pd, "type", "https://tools.ietf.org/html/rfc7231#section-6.5.1");
    cJSON_AddStringToObject(pd, "title", "One or more validation errors occurred.");
    cJSON_AddNumberToObject(pd, "status", 400);
    char trace[56];
    rng_trace_id(trace);
    cJSON_AddStringToObject(pd, "traceId", trace);
    cJSON_AddItemToObject(pd, "errors", errors);
    http_reply_json(resp, 400, PROBLEM_JSON, pd);
    cJSON_Delete(pd);
}

static void problem_add(cJSON *errors, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem_add(cJSON *errors, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(errors, field);
    if (!list)
        list = cJSON_AddArrayToObject(errors, field);
    cJSON_AddItemToArray(list, cJSON_CreateString(msg));
}

/* ---- shared checks ---------------------------------------------------- */

/* An integration is down while its fixture says so, unless the outage has a
 * downTimeEnd that has passed, or a downTimeStart still ahead, on the mock clock. */
static int integration_up(const cJSON *integ, double now)
{
    const cJSON *health = cJSON_GetObjectItemCaseSensitive(integ, "health");
    if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(health, "isUp")))
        return 1;
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(health, "downTimeStart");
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(health, "downTimeEnd");
    return (cJSON_IsNumber(end) && now >= end->valuedouble) ||
           (cJSON_IsNumber(start) && now < start->valuedouble);
}

/* `s` clipped to fit `out` (with "..." when cut), anything unprintable, a
 * space or a quote as '?': safe inside a quoted message and a log line. */
static const char *printable(const char *s, char *out, size_t cap)
{
    size_t n = 0, len = strlen(s);
    for (; n < len && n + 4 < cap; n++)
        out[n] = s[n] > 0x20 && s[n] < 0x7f && s[n] != '\'' ? s[n] : '?';
    snprintf(out + n, cap - n, "%s", n < len ? "..." : "");
    return out;
}

/* The client headers must name a client of the fixtures; answers 401 otherwise.
 * The message is Mesh's own, followed by which header is missing or which
 * value is unknown (a client id is shown, a secret never), also logged: a
 * test that sends a misspelt header learns why from the answer. */
static const cJSON *check_client(struct app *app, const struct http_request *req,
                                 struct http_response *resp)
{
    const char *id = http_header(req, "X-Client-Id");
    const char *secret = http_header(req, "X-Client-Secret");
    const cJSON *client = id ? fixtures_find(app->fixtures.mesh_clients, "clientId", id, 0) : NULL;
    const char *want = client ? json_str(client, "clientSecret") : NULL;
    if (client && secret && want && strcmp(secret, want) == 0)
        return client;
    char shown[68], detail[200], message[320], path[132];
    if (id)
        printable(id, shown, sizeof shown);
    if (!id && !secret)
        snprintf(detail, sizeof detail, "The X-Client-Id and X-Client-Secret headers are missing.");
    else if (!id)
        snprintf(detail, sizeof detail, "The X-Client-Id header is missing.");
    else if (!client && !secret)
        snprintf(detail, sizeof detail,
                 "The X-Client-Id '%s' is unknown and the X-Client-Secret header is missing.",
                 shown);
    else if (!client)
        snprintf(detail, sizeof detail, "The X-Client-Id '%s' is unknown.", shown);
    else if (!secret)
        snprintf(detail, sizeof detail, "The X-Client-Secret header is missing.");
    else
        snprintf(detail, sizeof detail, "The X-Client-Secret is unknown for client '%s'.", shown);
    snprintf(message, sizeof message,
             "Unauthorized: Client Id or Client Secret are not correct or missing. %s", detail);
    log_info("mesh: 401 for %s %s: %s", req->method, printable(req->path, path, sizeof path),
             detail);
    cJSON *env = envelope(NULL, 0, "permissionDenied", message, NULL,
                          !id || !secret ? "missingField" : "invalidField");
    http_reply_json(resp, 401, NULL, env);
    cJSON_Delete(env);
    return NULL;
}

/* ASP.NET's [FromBody] binding accepts application/json, text/json and
 * application/(anything)+json; a body of another media type gets 415. */
static int check_media_type(const struct http_request *req, struct http_response *resp)
{
    if (req->body_len == 0 || http_json_content_type(req))
        return 0;
    const char *ct = http_header(req, "Content-Type");
    cJSON *pd = cJSON_CreateObject();
    cJSON_AddStringToObject(pd, "type", "https://tools.ietf.org/html/rfc7231#section-6.5.13");
    cJSON_AddStringToObject(pd, "title", "Unsupported Media Type");
    cJSON_AddNumberToObject(pd, "status", 415);
    char detail[160];
    snprintf(detail, sizeof detail, "Content-Type %.80s is not supported; send application/json.",
             ct ? ct : "(none)");
    cJSON_AddStringToObject(pd, "detail", detail);
    http_reply_json(resp, 415, PROBLEM_JSON, pd);
    cJSON_Delete(pd);
    return -1;
}

static int take_namespace(const struct http_request *req, struct http_response *resp)
{
    if (http_namespace(req, resp->ns, sizeof resp->ns) == 0)
        return 0;
    send_bad_request(resp, "X-Authmock-Namespace must be 1 to 63 printable ASCII characters", NULL,
                     "invalidField");
    return -1;
}

/* Parses a JSON object body for the managed endpoints (ApiResult 400 on error). */
static cJSON *managed_body(const struct http_request *req, struct http_response *resp)
{
    size_t off;
    enum json_error why = JSON_OK;
    cJSON *body = req->body_len ? json_parse_why(req->body, req->body_len, &off, &why) : NULL;
    if (!body || !cJSON_IsObject(body)) {
        char msg[128];
        if (!req->body_len)
            snprintf(msg, sizeof msg, "A non-empty JSON request body is required.");
        else if (!body)
            snprintf(msg, sizeof msg, "The request body %s (at byte %zu).", json_error_text(why),
                     off);
        else
            snprintf(msg, sizeof msg, "The request body must be a JSON object.");
        send_bad_request(resp, msg, NULL, "invalidField");
        cJSON_Delete(body);
        return NULL;
    }
    return body;
}

/* A required non-empty string member of a managed request; answers 400 otherwise. */
/* The BrokerType member `type` of a managed body: a name in any case or a
 * defined value's number. Answers 400 and returns NULL when it is missing or
 * names no broker. */
static const char *required_broker(const cJSON *body, struct http_response *resp)
{
    const cJSON *v = cJSON_GetObjectItem(body, "type");
    char name[40];
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0])) {
        send_bad_request(resp, "type is required.", NULL, "missingField");
        return NULL;
    }
    if (json_enum_read(v, broker_types, COUNT(broker_types), 0, 1, name, sizeof name)) {
        send_bad_request(resp, "type is not a known broker type.", NULL, "invalidField");
        return NULL;
    }
    return mesh_broker_type(name);
}

static const char *required_string(const cJSON *body, const char *name, size_t max,
                                   struct http_response *resp)
{
    const cJSON *v = cJSON_GetObjectItem(body, name);
    char msg[160];
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0])) {
        snprintf(msg, sizeof msg, "%s is required.", name);
        send_bad_request(resp, msg, NULL, "missingField");
        return NULL;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max) {
        snprintf(msg, sizeof msg, "%s must be a string of at most %zu characters.", name, max);
        send_bad_request(resp, msg, NULL, "invalidField");
        return NULL;
    }
    return v->valuestring;
}

/* ---- tokens ----------------------------------------------------------- */

static cJSON *account_json(const char *ns, const char *user_id, const char *type,
                           const cJSON *fixture, int index)
{
    cJSON *acc = cJSON_CreateObject();
    char key[512], uuid[37], fallback_id[64];
    const char *account_id = json_str(fixture, "accountId");
    if (!account_id) {
        snprintf(fallback_id, sizeof fallback_id, "%s-%d", type, index + 1);
        account_id = fallback_id;
    }
    /* The same user, broker and account always get the same meshAccountId. */
    snprintf(key, sizeof key, "%s|%s|%s|%s", ns, user_id, type, account_id);
    uuid_from_name(key, uuid);
    cJSON_AddStringToObject(acc, "meshAccountId", uuid);
    cJSON_AddStringToObject(acc, "frontAccountId", uuid);
    cJSON_AddStringToObject(acc, "accountId", account_id);
    const char *name = json_str(fixture, "accountName");
    cJSON_AddStringToObject(acc, "accountName", name ? name : "Individual");
    static const char *const numbers[] = {"fund", "cash"};
    for (size_t i = 0; i < COUNT(numbers); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(fixture, numbers[i]);
        cJSON_AddNumberToObject(acc, numbers[i], cJSON_IsNumber(v) ? v->valuedouble : 1000.0);
    }
    const cJSON *balances = cJSON_GetObjectItemCaseSensitive(fixture, "balances");
    if (cJSON_IsArray(balances)) {
        cJSON_AddItemToObject(acc, "balances", cJSON_Duplicate(balances, 1));
    } else {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "symbol", "USD");
        cJSON_AddNumberToObject(b, "buyingPower", 1000.0);
        cJSON_AddNumberToObject(b, "cryptoBuyingPower", 1000.0);
        cJSON_AddNumberToObject(b, "cash", 1000.0);
        cJSON *arr = cJSON_AddArrayToObject(acc, "balances");
        cJSON_AddItemToArray(arr, b);
    }
    return acc;
}

/* Issues and keeps an access/refresh token pair for one account; returns the
 * BrokerAccountTokens object. A connection keeps its newest MESH_CONN_TOKENS
 * pairs: older ones stop working. */
static cJSON *issue_tokens(struct app *app, const char *ns, const char *user_id, const char *type,
                           const char *username, int index, cJSON *account, double now)
{
    const char *account_id = json_str(account, "accountId");
    const char *parts[] = {user_id, type, account_id ? account_id : ""};
    char ck[1024], ik[512], dropped[2][40] = {"", ""};
    int have_key = state_key(ck, sizeof ck, ns, parts, 3) >= 0;
    char *access = rng_token(24), *refresh = rng_token(24);
    struct state_lock held = {0};
    struct state_mesh_conn *c = have_key ? state_get(app->state, SK_MESH_CONN, ck, 1, &held) : NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(account, "isReconnected");
    cJSON_AddBoolToObject(account, "isReconnected", c && c->npairs > 0);
    if (c && access && refresh) {
        if (!c->username || !username || strcmp(c->username, username) != 0) {
            free(c->username);
            c->username = username ? strdup(username) : NULL;
        }
        c->account_index = index;
        if (c->npairs == MESH_CONN_TOKENS) {
            snprintf(dropped[0], sizeof dropped[0], "%s", c->pairs[0].access);
            snprintf(dropped[1], sizeof dropped[1], "%s", c->pairs[0].refresh);
            memmove(&c->pairs[0], &c->pairs[1], (MESH_CONN_TOKENS - 1) * sizeof c->pairs[0]);
            c->npairs--;
        } else {
            struct mesh_pair *grown = realloc(c->pairs, (size_t)(c->npairs + 1) * sizeof *grown);
            if (!grown) {
                state_unlock(&held);
                goto answer;
            }
            c->pairs = grown;
        }
        struct mesh_pair *p = &c->pairs[c->npairs++];
        memset(p, 0, sizeof *p);
        snprintf(p->access, sizeof p->access, "%s", access);
        snprintf(p->refresh, sizeof p->refresh, "%s", refresh);
        p->issued = now;
        p->expires = now + ACCESS_TTL;
        p->refresh_expires = now + REFRESH_TTL;
        state_touch(app->state, c);
    }
    state_unlock(&held);
    if (c && access && refresh) {
        if (state_ns_key(ns, access, ik, sizeof ik) == 0)
            state_link_put(app->state, SK_MESH_ACCESS, ik, ck);
        if (state_ns_key(ns, refresh, ik, sizeof ik) == 0)
            state_link_put(app->state, SK_MESH_REFRESH, ik, ck);
        if (dropped[0][0] && state_ns_key(ns, dropped[0], ik, sizeof ik) == 0)
            state_link_drop(app->state, SK_MESH_ACCESS, ik);
        if (dropped[1][0] && state_ns_key(ns, dropped[1], ik, sizeof ik) == 0)
            state_link_drop(app->state, SK_MESH_REFRESH, ik);
    }
answer:;
    cJSON *t = cJSON_CreateObject();
    cJSON_AddItemToObject(t, "account", account);
    cJSON_AddStringToObject(t, "accessToken", access ? access : "");
    cJSON_AddStringToObject(t, "refreshToken", refresh ? refresh : "");
    cJSON_AddNullToObject(t, "tokenId");
    free(access);
    free(refresh);
    return t;
}

/* The connection a token of `index` belongs to, locked in *held, the token's
 * pair in it, and the connection's user id and broker type (from its key
 * ns|userId|type|accountId); NULL when the token is unknown. */
static struct state_mesh_conn *conn_of_token(struct app *app, enum state_kind index, const char *ns,
                                             const char *token, struct state_lock *held,
                                             struct mesh_pair **pair, char user_id[65],
                                             char type[65])
{
    char ik[512], ck[1024];
    user_id[0] = type[0] = '\0';
    held->shard = NULL;
    *pair = NULL;
    if (state_ns_key(ns, token, ik, sizeof ik) ||
        state_link_get(app->state, index, ik, ck, sizeof ck))
        return NULL;
    const char *u = strchr(ck, STATE_KEY_SEP);
    const char *t = u ? strchr(u + 1, STATE_KEY_SEP) : NULL;
    const char *a = t ? strchr(t + 1, STATE_KEY_SEP) : NULL;
    if (!a)
        return NULL;
    snprintf(user_id, 65, "%.*s", (int)(t - u - 1), u + 1);
    snprintf(type, 65, "%.*s", (int)(a - t - 1), t + 1);
    struct state_mesh_conn *c = state_get(app->state, SK_MESH_CONN, ck, 0, held);
    for (int i = 0; c && i < c->npairs; i++)
        if (strcmp(index == SK_MESH_ACCESS ? c->pairs[i].access : c->pairs[i].refresh, token) == 0)
            *pair = &c->pairs[i];
    return *pair ? c : NULL;
}

/* The account `index` of the fixture user `username` (or a generic one). */
static cJSON *fixture_account(struct app *app, const char *ns, const char *user_id,
                              const char *type, const char *username, int index)
{
    const cJSON *user =
        username ? fixtures_find(app->fixtures.mesh_users, "username", username, 1) : NULL;
    const cJSON *accounts = user ? cJSON_GetObjectItemCaseSensitive(user, "accounts") : NULL;
    int n = cJSON_GetArraySize(accounts);
    return account_json(ns, user_id, type, index < n ? cJSON_GetArrayItem(accounts, index) : NULL,
                        index);
}

/* The full `succeeded` content: one token pair per fixture account of the user. */
static cJSON *success_content(struct app *app, const char *ns, const char *user_id,
                              const char *type, const char *username)
{
    const cJSON *user =
        username ? fixtures_find(app->fixtures.mesh_users, "username", username, 1) : NULL;
    const cJSON *accounts = user ? cJSON_GetObjectItemCaseSensitive(user, "accounts") : NULL;
    cJSON *content = cJSON_CreateObject();
    cJSON_AddStringToObject(content, "status", "succeeded");
    cJSON_AddNumberToObject(content, "expiresInSeconds", ACCESS_TTL);
    cJSON_AddNumberToObject(content, "refreshTokenExpiresInSeconds", REFRESH_TTL);
    cJSON *tokens = cJSON_AddArrayToObject(content, "accountTokens");
    double now = clock_now_ns(ns);
    int n = cJSON_GetArraySize(accounts);
    for (int i = 0; i < (n > 0 ? n : 1); i++) {
        cJSON *acc =
            account_json(ns, user_id, type, n > 0 ? cJSON_GetArrayItem(accounts, i) : NULL, i);
        cJSON_AddItemToArray(tokens, issue_tokens(app, ns, user_id, type, username, i, acc, now));
    }
    cJSON_AddBoolToObject(content, "requiresReauthentication", 0);
    return content;
}

/* ---- rendering a scenario reply --------------------------------------- */

struct auth_ctx {
    const char *ns;
    const char *user_id;
    const char *type;
    const char *username;
    const cJSON *client;
};

static void render_reply(struct app *app, const struct auth_ctx *ax,
                         const struct scenario_outcome *out, struct http_response *resp)
{
    const cJSON *reply = out->reply;
    cJSON *content = NULL;
    const char *outcome = json_str(reply, "outcome");
    if (outcome && strcmp(outcome, "succeeded") == 0)
        content = success_content(app, ax->ns, ax->user_id, ax->type, ax->username);
    const cJSON *over = cJSON_GetObjectItemCaseSensitive(reply, "content");
    if (cJSON_IsObject(over)) {
        if (!content)
            content = cJSON_CreateObject();
        json_merge(content, over);
    }
    if (content)
        scenario_expand(content, out->vars);
    const char *status = json_str(reply, "status");
    if (!status)
        status = "ok";
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(reply, "http");
    int code = cJSON_IsNumber(http) ? http->valueint : mesh_http_status(status);
    cJSON *env = envelope(content, 1, status, json_str(reply, "message"),
                          json_str(reply, "displayMessage"), json_str(reply, "errorType"));
    envelope_outcome(resp, env);
    if (out->limited)
        http_set_outcome(resp, out->why.limit_started ? "limited" : "blocked");
    else if (cJSON_GetObjectItemCaseSensitive(reply, "body") && !content)
        http_set_outcome(resp, "custom"); /* a raw body: what it means is the scenario's */
    if (!http_reply_body_override(resp, code, reply)) {
        if (code == 500 || code == 503)
            send_no_content(resp, code, NULL);
        else
            http_reply_json(resp, code ? code : 200, NULL, env);
    }
    cJSON_Delete(env);

    /* A 429 always says when to come back: the block's end, else a minute. */
    if ((code == 429 || strcmp(status, "tooManyRequest") == 0) &&
        !cJSON_GetObjectItemCaseSensitive(reply, "retryAfter")) {
        char v[32];
        snprintf(v, sizeof v, "%ld", out->retry_after > 0 ? out->retry_after : 60);
        http_add_header(resp, "Retry-After", v);
    }
    http_apply_reply_extras(resp, reply);
}

/* ---- POST /api/v1/authenticate ---------------------------------------- */

/* Validates the body like ASP.NET model binding and builds the facts: the
 * request's fields under their canonical names, sensitive ones decoded. */
static cJSON *auth_facts(const struct http_request *req, const char *user_id, cJSON *errors)
{
    if (!user_id || !*user_id)
        problem_add(errors, "userId", "The userId field is required.");
    else if (strlen(user_id) > 50)
        problem_add(errors, "userId",
                    "The field userId must be a string or array type with a maximum length of "
                    "'50'.");
    if (req->body_len == 0) {
        problem_add(errors, "", "A non-empty request body is required.");
        return NULL;
    }
    size_t off;
    enum json_error why;
    cJSON *body = json_parse_why(req->body, req->body_len, &off, &why);
    if (!body) {
        problem_add(errors, "$", "The request body %s. Path: $ | BytePositionInLine: %zu.",
                    json_error_text(why), off);
        problem_add(errors, "request", "The request field is required.");
        return NULL;
    }
    if (!cJSON_IsObject(body)) {
        problem_add(errors, "$",
                    "The JSON value could not be converted to Front.Models.B2BBrokerAuthRequest. "
                    "Path: $.");
        cJSON_Delete(body);
        return NULL;
    }
    cJSON *facts = cJSON_CreateObject();
    const cJSON *enc = cJSON_GetObjectItem(body, "isSensitiveFieldsEncrypted");
    int encrypted = cJSON_IsTrue(enc);
    cJSON *item;
    cJSON_ArrayForEach(item, body)
    {
        const struct field *f = auth_field(item->string);
        if (!f)
            continue; /* unknown members are ignored, as System.Text.Json does */
        char path[96];
        snprintf(path, sizeof path, "$.%s", f->name);
        int ok;
        char name[40];
        switch (f->type) {
        case F_BOOL:
            ok = cJSON_IsBool(item);
            break;
        case F_OBJECT:
            ok = cJSON_IsObject(item) || cJSON_IsNull(item);
            break;
        /* Enums bind as a string-enum converter reads them: a name in any
         * case, or the number of a defined value (in the published order). */
        case F_BROKER:
            ok = json_enum_read(item, broker_types, COUNT(broker_types), 0, 1, name, sizeof name) ==
                 0;
            break;
        case F_MFA:
            ok = cJSON_IsNull(item) ||
                 json_enum_read(item, mfa_types, COUNT(mfa_types), 0, 1, name, sizeof name) == 0;
            break;
        case F_FLOW:
            ok = cJSON_IsNull(item) ||
                 json_enum_read(item, flow_steps, COUNT(flow_steps), 0, 1, name, sizeof name) == 0;
            break;
        default:
            ok = cJSON_IsString(item) || cJSON_IsNull(item);
        }
        if (!ok) {
            problem_add(errors, path, "The JSON value could not be converted to %s. Path: %s.",
                        clr_type_name(f->type), path);
            continue;
        }
        cJSON *copy;
        if ((f->type == F_BROKER || f->type == F_MFA || f->type == F_FLOW) && !cJSON_IsNull(item))
            copy = cJSON_CreateString(name);
        else if (f->sensitive && encrypted && cJSON_IsString(item)) {
            char *plain = NULL;
            size_t plen;
            /* Decoded text with a NUL in it is refused like text that is not
             * Base64 (and its buffer freed: it leaked 44 KB per 60 KB field). */
            if (b64_decode(item->valuestring, &plain, &plen) || memchr(plain, '\0', plen)) {
                free(plain);
                problem_add(
                    errors, path,
                    "The field %s must be Base64-encoded when isSensitiveFieldsEncrypted is "
                    "true.",
                    f->name);
                continue;
            }
            copy = cJSON_CreateString(plain);
            free(plain);
        } else {
            copy = cJSON_Duplicate(item, 1);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(facts, f->name);
        cJSON_AddItemToObject(facts, f->name, copy);
    }
    if (!cJSON_GetObjectItem(body, "type"))
        problem_add(errors, "type", "The type field is required.");
    cJSON_Delete(body);
    if (user_id)
        cJSON_AddStringToObject(facts, "userId", user_id);
    return facts;
}

/* A state write failed, or would: serverFailure, never a success whose state is not kept. */
static void send_store_error(struct app *app, struct http_response *resp)
{
    char msg[320];
    state_error_message(app->state, msg, sizeof msg);
    send_envelope(resp, envelope(NULL, 1, "serverFailure", msg, NULL, ""), "serverFailure");
}

static const char *request_header(const void *cls, const char *name)
{
    return http_header(cls, name);
}

static void h_authenticate(struct app *app, const struct http_request *req,
                           struct http_response *resp)
{
    const cJSON *client = check_client(app, req, resp);
    if (!client || check_media_type(req, resp) || take_namespace(req, resp))
        return;
    const char *user_id = http_query_arg(req, "userId");
    cJSON *errors = cJSON_CreateObject();
    cJSON *facts = auth_facts(req, user_id, errors);
    resp->body_is_json = facts != NULL; /* the body parsed: the journal needs no second parse */
    if (cJSON_GetArraySize(errors) > 0) {
        cJSON_Delete(facts);
        send_problem(resp, errors);
        return;
    }
    cJSON_Delete(errors);

    const char *type = json_str(facts, "type");
    snprintf(resp->user, sizeof resp->user, "%s", user_id);
    const cJSON *integ = fixtures_find(app->fixtures.mesh_integrations, "type", type, 0);
    if (!integ) {
        char msg[160];
        snprintf(msg, sizeof msg, "Integration %s is not available for this client.", type);
        send_bad_request(resp, msg, NULL, "invalidField");
        cJSON_Delete(facts);
        return;
    }
    const cJSON *health = cJSON_GetObjectItemCaseSensitive(integ, "health");
    if (!integration_up(integ, clock_now_ns(resp->ns))) {
        const char *why = json_str(health, "description");
        char msg[256];
        snprintf(msg, sizeof msg, "%s is unavailable: %s", json_str(integ, "name"),
                 why ? why : "integration is down");
        cJSON *content = cJSON_CreateObject();
        cJSON_AddStringToObject(content, "status", "failed");
        cJSON_AddStringToObject(content, "errorMessage", msg);
        send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
        cJSON_Delete(facts);
        return;
    }
    cJSON_AddStringToObject(facts, "schemeType", json_str(integ, "schemeType"));
    /* API-key brokers take the key as username: the journal masks it. */
    const char *scheme_type = json_str(integ, "schemeType");
    if (scheme_type && strcmp(scheme_type, "apiKey") == 0)
        resp->body_secret = "username";

    static const char *const remembered[] = {"username"};
    char identity[200];
    snprintf(identity, sizeof identity, "%s:%s", user_id, type);
    struct scenario_request sreq = {
        .api = "mesh",
        .ns = resp->ns,
        .identity = identity,
        .forced = http_header(req, "X-Authmock-Scenario"),
        .facts = facts,
        .header = request_header,
        .header_cls = req,
        .remember = remembered,
        .nremember = COUNT(remembered),
        .explain = app->journal != NULL,
    };
    struct scenario_outcome out;
    int rc = scenario_step(app->engine, &sreq, &out);
    if (app->journal) {
        /* Rendered now, while the set and the facts are held: the journal keeps text. */
        struct buf why = {0};
        scenario_explain_json(&sreq, &out, rc, resp->body_secret, &why);
        resp->match = why.data;
    }
    if (out.scenario) {
        snprintf(resp->scenario, sizeof resp->scenario, "%s", scenario_name(out.scenario));
        snprintf(resp->state_from, sizeof resp->state_from, "%s", out.state_from);
        snprintf(resp->state_to, sizeof resp->state_to, "%s", out.state_to);
    }
    const char *username = json_str(facts, "username");
    if (!username && out.vars)
        username = json_str(out.vars, "username");
    struct auth_ctx ax = {resp->ns, user_id, type, username, client};
    char msg[300];
    switch (rc) {
    case SCENARIO_OK:
        render_reply(app, &ax, &out, resp);
        break;
    case SCENARIO_UNKNOWN_FORCED:
        snprintf(msg, sizeof msg, "X-Authmock-Scenario: there is no mesh scenario named '%s'.",
                 sreq.forced);
        send_bad_request(resp, msg, NULL, "invalidField");
        http_set_outcome(resp, "unknownScenario");
        break;
    case SCENARIO_UNBOUND: {
        cJSON *content = cJSON_CreateObject();
        cJSON_AddStringToObject(content, "status", "failed");
        cJSON_AddStringToObject(content, "errorMessage", "Invalid username or password");
        send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
        http_set_outcome(resp, "unbound");
        break;
    }
    case SCENARIO_NO_STEP:
        snprintf(msg, sizeof msg,
                 "authmock: scenario '%s' has no step in state '%s' that matches this request.",
                 resp->scenario, out.state_from);
        send_no_content(resp, 500, msg);
        http_set_outcome(resp, "noStep");
        break;
    default:
        state_error_message(app->state, msg, sizeof msg);
        send_no_content(resp, 500, msg);
        http_set_outcome(resp, "storeError");
    }
    scenario_outcome_release(&out);
    cJSON_Delete(facts);
}

/* ---- GET /api/v1/authenticate/{brokerType} ---------------------------- */

static void h_oauth_link(struct app *app, const struct http_request *req,
                         struct http_response *resp)
{
    const cJSON *client = check_client(app, req, resp);
    if (!client)
        return;
    const char *user_id = http_query_arg(req, "userId");
    const char *type = mesh_broker_type(req->params[0]);
    cJSON *errors = cJSON_CreateObject();
    if (!user_id || !*user_id)
        problem_add(errors, "userId", "The userId field is required.");
    if (!type)
        problem_add(errors, "brokerType", "The value '%s' is not valid.", req->params[0]);
    if (cJSON_GetArraySize(errors) > 0) {
        send_problem(resp, errors);
        return;
    }
    cJSON_Delete(errors);
    const cJSON *integ = fixtures_find(app->fixtures.mesh_integrations, "type", type, 0);
    cJSON *content = cJSON_CreateObject();
    const char *oauth = integ ? json_str(integ, "oauthUrl") : NULL;
    const char *scheme = integ ? json_str(integ, "schemeType") : NULL;
    if (scheme && strcmp(scheme, "oAuth") == 0 && oauth) {
        char *state = rng_token(18);
        char link[1024], catalog[512];
        snprintf(link, sizeof link,
                 "%s?response_type=code&client_id=%s&redirect_uri=https%%3A%%2F%%2Fweb."
                 "meshconnect.com%%2Fbroker-connect%%2Fcallback&state=%s",
                 oauth, json_str(client, "clientId"), state);
        snprintf(catalog, sizeof catalog,
                 "https://web.meshconnect.com/b2b-iframe/%s/broker-connect?auth_code=%s",
                 json_str(client, "clientId"), state);
        char *token = b64_encode(catalog, strlen(catalog));
        cJSON_AddStringToObject(content, "status", "redirect");
        cJSON_AddStringToObject(content, "redirectLink", link);
        cJSON_AddStringToObject(content, "linkToken", token);
        free(token);
        free(state);
    } else {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "%s does not use OAuth; authenticate with POST /api/v1/authenticate.", type);
        cJSON_AddStringToObject(content, "status", "failed");
        cJSON_AddStringToObject(content, "errorMessage", msg);
    }
    send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
}

/* ---- GET /api/v1/authenticationSchemes -------------------------------- */

struct describe_ctx {
    cJSON *steps; /* AuthenticationModel[] */
    cJSON *mfa;   /* MfaScheme[] */
};

static void add_unique_string(cJSON *arr, const char *s)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if (strcmp(v->valuestring, s) == 0) return;
    cJSON_AddItemToArray(arr, cJSON_CreateString(s));
}

static const char *const intermediate[] = {
    "mfaRequired",    "challengeIssued",     "deviceConfirmationRequired", "emailVerification",
    "emailReceived",  "captchaChallenge",    "faceVerification",           "bindMfaRequired",
    "qrCodeRequired", "deviceLoginVerified",
};

static void describe_step(const struct scenario_step_info *info, void *cls)
{
    struct describe_ctx *dc = cls;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(info->reply, "content");
    const char *status = json_str(content, "status");
    if (!status || !str_find(intermediate, COUNT(intermediate), status, 0))
        return;
    const char *mfa_type = json_str(content, "mfaType");
    const char *flow = json_str(content, "authFlowStep");
    /* One entry per (status, mfaType): the same prompt from several accounts is one step. */
    const cJSON *m;
    cJSON_ArrayForEach(m, dc->steps)
    {
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(m, "authResponse");
        const char *s2 = json_str(ar, "status"), *t2 = json_str(ar, "mfaType");
        if (strcmp(s2, status) == 0 &&
            ((!t2 && !mfa_type) || (t2 && mfa_type && !strcmp(t2, mfa_type))))
            return;
    }
    cJSON *model = cJSON_CreateObject();
    cJSON *ar = cJSON_AddObjectToObject(model, "authResponse");
    cJSON_AddStringToObject(ar, "status", status);
    if (mfa_type)
        cJSON_AddStringToObject(ar, "mfaType", mfa_type);
    if (flow)
        cJSON_AddStringToObject(ar, "authFlowStep", flow);
    cJSON *fields = cJSON_AddArrayToObject(model, "fields");
    int asks_answer = 0;
    for (size_t i = 0; i < info->nnext_fields; i++) {
        const struct field *f = auth_field(info->next_fields[i]);
        if (!f || !f->description || !strcmp(f->name, "username") || !strcmp(f->name, "password"))
            continue;
        asks_answer |= strcmp(f->name, "challengeAnswer") == 0;
        cJSON *fd = cJSON_CreateObject();
        char pascal[64];
        snprintf(pascal, sizeof pascal, "%s", f->name);
        pascal[0] = (char)(pascal[0] - 'a' + 'A');
        cJSON_AddStringToObject(fd, "name", pascal);
        cJSON_AddStringToObject(fd, "description", f->description);
        cJSON_AddItemToArray(fields, fd);
    }
    cJSON_AddItemToArray(dc->steps, model);
    if (strcmp(status, "mfaRequired") == 0)
        add_unique_string(dc->mfa, mfa_type && !strcmp(mfa_type, "requireNextSecurityQuestion")
                                       ? "securityQuestion"
                                       : "mfaCode");
    else if (strcmp(status, "challengeIssued") == 0)
        add_unique_string(dc->mfa, asks_answer ? "securityQuestion" : "challenge");
    else if (!strcmp(status, "deviceConfirmationRequired") ||
             !strcmp(status, "deviceLoginVerified"))
        add_unique_string(dc->mfa, "deviceConfirmation");
}

/* The schemes list depends only on the integration fixtures (fixed while the
 * server runs) and the scenario set, so it is rendered once per set. */
static char *render_schemes(const struct scenario_set *set, void *cls, size_t *len)
{
    struct app *app = cls;
    cJSON *list = cJSON_CreateArray();
    const cJSON *integ;
    cJSON_ArrayForEach(integ, app->fixtures.mesh_integrations)
    {
        cJSON *s = cJSON_CreateObject();
        const char *type = json_str(integ, "type"), *scheme = json_str(integ, "schemeType");
        cJSON_AddStringToObject(s, "brokerType", type);
        cJSON_AddStringToObject(s, "authenticationSchemeType", scheme);
        cJSON *initial = cJSON_AddObjectToObject(s, "initialAuthenticationModel");
        cJSON_AddItemToObject(
            initial, "fields",
            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(integ, "initialFields"), 1));
        struct describe_ctx dc = {cJSON_CreateArray(), cJSON_CreateArray()};
        cJSON *facts = cJSON_CreateObject();
        cJSON_AddStringToObject(facts, "type", type);
        cJSON_AddStringToObject(facts, "schemeType", scheme);
        scenario_set_describe(set, "mesh", facts, describe_step, &dc);
        cJSON_Delete(facts);
        cJSON_AddItemToObject(s, "authenticationSteps", dc.steps);
        cJSON_AddItemToObject(s, "mfaSchemes", dc.mfa);
        json_add_str_or_null(s, "instructionsUrl", json_str(integ, "instructionsUrl"));
        const cJSON *ta = cJSON_GetObjectItemCaseSensitive(integ, "trueAuth");
        if (cJSON_IsObject(ta))
            cJSON_AddItemToObject(s, "trueAuthAuthenticaion", cJSON_Duplicate(ta, 1));
        cJSON_AddItemToArray(list, s);
    }
    cJSON *env = envelope(list, 1, "ok", "", NULL, "");
    char *text = json_render(env, len);
    cJSON_Delete(env);
    return text;
}

/* The journal's form of the cached schemes, cached beside them. */
static char *schemes_journal_form(const struct scenario_set *set, void *cls, size_t *len)
{
    size_t n;
    const char *text = scenario_set_memo((struct scenario_set *)set, SCENARIO_MEMO_MESH_SCHEMES,
                                         render_schemes, cls, &n);
    return text ? journal_body_form(text, n, len) : NULL;
}

/* The schemes gzipped, cached beside them: 45 KB of JSON is a few KB. */
static char *schemes_gzip(const struct scenario_set *set, void *cls, size_t *len)
{
    size_t n;
    const char *text = scenario_set_memo((struct scenario_set *)set, SCENARIO_MEMO_MESH_SCHEMES,
                                         render_schemes, cls, &n);
    return text ? http_gzip(text, n, len) : NULL;
}

static void release_set(void *set)
{
    scenario_set_release(set);
}

static void h_schemes(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (!check_client(app, req, resp))
        return;
    struct scenario_set *set = scenario_engine_acquire(app->engine);
    size_t len;
    const char *text =
        scenario_set_memo(set, SCENARIO_MEMO_MESH_SCHEMES, render_schemes, app, &len);
    int http = mesh_http_status("ok");
    /* The official client asks for gzip (axios sends "gzip, compress,
     * deflate, br"); whoever does gets the same answer in a tenth of the
     * bytes, and whoever does not gets it as it is. */
    const char *gz = NULL;
    size_t gz_len = 0;
    if (text && http_accepts_gzip(req))
        gz = scenario_set_memo(set, SCENARIO_MEMO_MESH_SCHEMES_GZIP, schemes_gzip, app, &gz_len);
    /* The body is the set's cached one, sent as it is: the set is held until
     * libmicrohttpd has sent it. */
    if (text) {
        http_reply_shared(resp, http ? http : 200, "application/json; charset=utf-8",
                          gz ? gz : text, gz ? gz_len : len, release_set, set);
        if (gz)
            http_add_header(resp, "Content-Encoding", "gzip");
        http_add_header(resp, "Vary", "Accept-Encoding");
        /* So is its journal form: masking 4 KiB of it per request cost more
         * than the rest of the answer. */
        if (app->journal)
            resp->journal_form =
                scenario_set_memo(set, SCENARIO_MEMO_MESH_SCHEMES_JOURNAL, schemes_journal_form,
                                  app, &resp->journal_form_len);
    } else {
        http_reply_error(resp, 500, "the authentication schemes could not be rendered");
        scenario_set_release(set);
    }
}

/* ---- managed endpoints ------------------------------------------------ */

static void h_linktoken(struct app *app, const struct http_request *req, struct http_response *resp)
{
    const cJSON *client = check_client(app, req, resp);
    if (!client || check_media_type(req, resp))
        return;
    cJSON *body = managed_body(req, resp);
    if (!body)
        return;
    const char *user_id = required_string(body, "userId", 300, resp);
    if (user_id) {
        char *code = rng_token(18);
        char url[512];
        snprintf(url, sizeof url,
                 "https://web.meshconnect.com/b2b-iframe/%s/broker-connect?auth_code=%s",
                 json_str(client, "clientId"), code);
        char *token = b64_encode(url, strlen(url));
        cJSON *content = cJSON_CreateObject();
        cJSON_AddStringToObject(content, "linkToken", token);
        if (cJSON_IsObject(cJSON_GetObjectItem(body, "transferOptions"))) {
            snprintf(url, sizeof url, "https://web.meshconnect.com/payment/%s", code);
            cJSON_AddStringToObject(content, "paymentLink", url);
        }
        send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
        free(token);
        free(code);
    }
    cJSON_Delete(body);
}

/* While state writes fail, a call that changes state answers serverFailure
 * rather than a success whose state would not be kept. */
static int refuse_if_degraded(struct app *app, struct http_response *resp)
{
    if (!state_degraded(app->state))
        return 0;
    send_store_error(app, resp);
    return -1;
}

static void h_refresh(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (!check_client(app, req, resp) || check_media_type(req, resp) || take_namespace(req, resp) ||
        refuse_if_degraded(app, resp))
        return;
    cJSON *body = managed_body(req, resp);
    if (!body)
        return;
    const char *type = required_broker(body, resp);
    const char *refresh = type ? required_string(body, "refreshToken", 4096, resp) : NULL;
    if (!type || !refresh) {
        cJSON_Delete(body);
        return;
    }
    double now = clock_now_ns(resp->ns);
    struct state_lock held;
    struct mesh_pair *pair;
    char user_id[65], conn_type[65], username[256] = "";
    struct state_mesh_conn *c =
        conn_of_token(app, SK_MESH_REFRESH, resp->ns, refresh, &held, &pair, user_id, conn_type);
    cJSON *content = NULL;
    int index = 0, rotated = 0;
    if (c && strcmp(conn_type, type) == 0 && !pair->revoked && pair->refresh_expires > now) {
        /* Rotation: the old pair stops working, a new pair replaces it. The
         * check and the revocation happen under one lock: one refresh wins. */
        pair->revoked = 1;
        state_touch(app->state, c);
        snprintf(username, sizeof username, "%s", c->username ? c->username : "");
        index = c->account_index;
        rotated = 1;
    }
    state_unlock(&held);
    if (rotated) {
        content = cJSON_CreateObject();
        cJSON_AddStringToObject(content, "status", "succeeded");
        cJSON_AddNumberToObject(content, "expiresInSeconds", ACCESS_TTL);
        cJSON_AddNumberToObject(content, "refreshTokenExpiresInSeconds", REFRESH_TTL);
        cJSON *list = cJSON_AddArrayToObject(content, "brokerAccountTokens");
        cJSON *account =
            fixture_account(app, resp->ns, user_id, type, username[0] ? username : NULL, index);
        cJSON *t = issue_tokens(app, resp->ns, user_id, type, username[0] ? username : NULL, index,
                                account, now);
        cJSON_DeleteItemFromObjectCaseSensitive(t, "tokenId");
        cJSON_AddItemToArray(list, t);
    }
    if (content)
        send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
    else
        send_bad_request(resp, "Unauthorized token",
                         "Could not refresh the authentication token. The provided data is not "
                         "correct",
                         "badRequest");
    cJSON_Delete(body);
}

static void h_delete_account(struct app *app, const struct http_request *req,
                             struct http_response *resp)
{
    if (!check_client(app, req, resp) || check_media_type(req, resp) || take_namespace(req, resp) ||
        refuse_if_degraded(app, resp))
        return;
    cJSON *body = managed_body(req, resp);
    if (!body)
        return;
    const char *token = required_string(body, "authToken", 4096, resp);
    const char *type = token ? required_broker(body, resp) : NULL;
    if (!token || !type) {
        cJSON_Delete(body);
        return;
    }
    int found = 0;
    struct state_lock held;
    struct mesh_pair *pair;
    char user_id[65], conn_type[65];
    struct state_mesh_conn *c =
        conn_of_token(app, SK_MESH_ACCESS, resp->ns, token, &held, &pair, user_id, conn_type);
    if (c && strcmp(conn_type, type) == 0 && !pair->revoked) {
        /* Removing the connection revokes every token issued for it. */
        for (int i = 0; i < c->npairs; i++)
            c->pairs[i].revoked = 1;
        state_touch(app->state, c);
        found = 1;
    }
    state_unlock(&held);
    if (found)
        send_envelope(resp, envelope(NULL, 0, "ok", "", NULL, ""), "ok");
    else
        send_bad_request(resp, "The authToken is not valid or the connection was already removed.",
                         NULL, "invalidField");
    cJSON_Delete(body);
}

static void h_status(struct app *app, const struct http_request *req, struct http_response *resp)
{
    if (!check_client(app, req, resp) || take_namespace(req, resp))
        return;
    double now = clock_now_ns(resp->ns);
    cJSON *list = cJSON_CreateArray();
    const cJSON *integ;
    cJSON_ArrayForEach(integ, app->fixtures.mesh_integrations)
    {
        const cJSON *health = cJSON_GetObjectItemCaseSensitive(integ, "health");
        int up = integration_up(integ, now);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "type", json_str(integ, "type"));
        cJSON_AddStringToObject(s, "name", json_str(integ, "name"));
        cJSON_AddBoolToObject(s, "isUp", up);
        static const char *const opt[] = {"description", "downTimeStart", "downTimeEnd"};
        for (size_t i = 0; !up && i < COUNT(opt); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(health, opt[i]);
            if (v && !cJSON_IsNull(v))
                cJSON_AddItemToObject(s, opt[i], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToObject(
            s, "supportedProducts",
            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(integ, "supportedProducts"), 1));
        cJSON_AddItemToArray(list, s);
    }
    send_envelope(resp, envelope(list, 1, "ok", "", NULL, ""), "ok");
}

static void h_integrations(struct app *app, const struct http_request *req,
                           struct http_response *resp)
{
    if (!check_client(app, req, resp))
        return;
    cJSON *content = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(content, "items");
    static const char *const copied[] = {"id",
                                         "name",
                                         "type",
                                         "deFiWalletProviderId",
                                         "categories",
                                         "style",
                                         "logo",
                                         "forgotPasswordLink",
                                         "cryptoTransfersSupported"};
    const cJSON *integ;
    cJSON_ArrayForEach(integ, app->fixtures.mesh_integrations)
    {
        cJSON *it = cJSON_CreateObject();
        for (size_t i = 0; i < COUNT(copied); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(integ, copied[i]);
            if (v && !cJSON_IsNull(v))
                cJSON_AddItemToObject(it, copied[i], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(items, it);
    }
    send_envelope(resp, envelope(content, 1, "ok", "", NULL, ""), "ok");
}

const struct route mesh_routes[] = {
    {"POST", "/api/v1/authenticate", h_authenticate, "mesh"},
    {"GET", "/api/v1/authenticate/{brokerType}", h_oauth_link, "mesh"},
    {"GET", "/api/v1/authenticationSchemes", h_schemes, "mesh"},
    {"POST", "/api/v1/linktoken", h_linktoken, "mesh"},
    {"POST", "/api/v1/token/refresh", h_refresh, "mesh"},
    {"DELETE", "/api/v1/account", h_delete_account, "mesh"},
    {"GET", "/api/v1/status", h_status, "mesh"},
    {"GET", "/api/v1/integrations", h_integrations, "mesh"},
};
const size_t mesh_route_count = COUNT(mesh_routes);

/* ---- validation of scenario replies and fixtures ---------------------- */

static void check_enum_member(const cJSON *obj, const char *key, const char *const *values,
                              size_t n, const char *file, const char *path, struct problems *p)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return;
    if (!cJSON_IsString(v) || !str_find(values, n, v->valuestring, 0)) {
        struct buf list = {0};
        for (size_t i = 0; i < n; i++)
            buf_printf(&list, "%s%s", i ? ", " : "", values[i]);
        problems_add(p, file, path, "must be one of: %s", list.data);
        buf_free(&list);
    }
}

static void mesh_validate_reply(const cJSON *reply, const char *file, const char *path,
                                struct problems *p)
{
    static const char *const keys[] = {"outcome",        "content",   "status", "message",
                                       "displayMessage", "errorType", "http",   "headers",
                                       "body",           "delayMs",   "fault",  "retryAfter"};
    const cJSON *k;
    char sub[600];
    cJSON_ArrayForEach(k, reply)
    {
        if (!str_find(keys, COUNT(keys), k->string, 0)) {
            json_path_join(sub, sizeof sub, path, SIZE_MAX, k->string, SIZE_MAX);
            problems_add(p, file, sub,
                         "unknown key in a mesh reply (outcome, content, status, message, "
                         "displayMessage, errorType, http, headers, body, delayMs, fault, "
                         "retryAfter)");
        }
    }
    static const char *const outcomes[] = {"succeeded"};
    json_path_join(sub, sizeof sub, path, SIZE_MAX, "outcome", SIZE_MAX);
    check_enum_member(reply, "outcome", outcomes, COUNT(outcomes), file, sub, p);
    const char *statuses[COUNT(api_statuses)];
    for (size_t i = 0; i < COUNT(api_statuses); i++)
        statuses[i] = api_statuses[i].status;
    json_path_join(sub, sizeof sub, path, SIZE_MAX, "status", SIZE_MAX);
    check_enum_member(reply, "status", statuses, COUNT(statuses), file, sub, p);
    static const char *const strings[] = {"message", "displayMessage", "errorType"};
    for (size_t i = 0; i < COUNT(strings); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, strings[i]);
        if (v && !cJSON_IsString(v)) {
            json_path_join(sub, sizeof sub, path, SIZE_MAX, strings[i], SIZE_MAX);
            problems_add(p, file, sub, "must be a string");
        }
    }
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(reply, "content");
    if (content) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "content", SIZE_MAX);
        if (!cJSON_IsObject(content)) {
            problems_add(p, file, sub, "must be an object (fields of B2BBrokerAuthResponse)");
            return;
        }
        if (!cJSON_GetObjectItemCaseSensitive(content, "status") && !json_str(reply, "outcome"))
            problems_add(p, file, sub, "needs a status (or an outcome beside it)");
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "content.status", SIZE_MAX);
        check_enum_member(content, "status", auth_statuses, COUNT(auth_statuses), file, sub, p);
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "content.mfaType", SIZE_MAX);
        check_enum_member(content, "mfaType", mfa_types, COUNT(mfa_types), file, sub, p);
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "content.authFlowStep", SIZE_MAX);
        check_enum_member(content, "authFlowStep", flow_steps, COUNT(flow_steps), file, sub, p);
    }
}

static const char *const mesh_derived[] = {"schemeType", NULL};
const struct scenario_api mesh_scenario_api = {"mesh", mesh_derived, mesh_validate_reply};

int mesh_check_fixtures(const struct fixtures *f, struct problems *p)
{
    int before = p->count;
    const cJSON *integ;
    int i = 0;
    cJSON_ArrayForEach(integ, f->mesh_integrations)
    {
        char path[128];
        const char *type = json_str(integ, "type");
        snprintf(path, sizeof path, "mesh.integrations[%d].type", i);
        if (!type || !str_find(broker_types, COUNT(broker_types), type, 0))
            problems_add(p, "fixtures", path, "'%s' is not a BrokerType", type ? type : "");
        snprintf(path, sizeof path, "mesh.integrations[%d].schemeType", i);
        const char *scheme = json_str(integ, "schemeType");
        if (!scheme || !str_find(scheme_types, COUNT(scheme_types), scheme, 0))
            problems_add(p, "fixtures", path,
                         "must be usernamePassword, oAuth, apiKey, blockchainAddress or trueAuth");
        i++;
    }
    return p->count - before;
}

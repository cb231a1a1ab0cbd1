/*
 * fuzz_app: the in-process app and request decoder of the fuzz targets.
 *
 * The app is made like main.c makes a server on ":memory:": config defaults
 * (with a seed, quiet, smaller bounds), fixtures checked by both APIs, the
 * scenarios loaded, the store, state, engine and journal opened. Nothing
 * listens: a request is decoded from text into a struct http_request without
 * a connection (its headers, query and cookies in `fields`), dispatched by
 * the router, journaled as http.c journals it, and its reply freed as http.c
 * frees it. Each input starts from the same state (fuzz_app_reset), so an
 * input that crashes once crashes again.
 */
#include "fuzz_app.h"

#include "app.h"
#include "arena.h"
#include "clock.h"
#include "http.h"
#include "journal.h"
#include "log.h"
#include "mesh.h"
#include "onlyoffice.h"
#include "rng.h"
#include "router.h"
#include "totp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Every input starts at 2030-01-01T00:00:00Z on the mock clock, so codes and
 * windows do not depend on when it runs. */
#define FUZZ_EPOCH 1893456000.0

#define MAX_FIELDS 32
#define MAX_SAVED  64

static struct app app;
static struct scenario_api apis[2];
static struct scenario_set *base;    /* the scenarios at start */
static struct scenario_set *serving; /* held: the set a reset goes back to */

static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_app: %s: %s\n", what, why);
    exit(1);
}

struct app *fuzz_app(void)
{
    static int made;
    static char a0[] = "authmock", a1[] = "--quiet", a2[] = "--seed", a3[] = "1",
                a4[] = "--fixtures", a5[] = AUTHMOCK_SOURCE_DIR "/fixtures", a6[] = "--scenarios",
                a7[] = AUTHMOCK_SOURCE_DIR "/scenarios", a8[] = "--max-sessions", a9[] = "1000",
                a10[] = "--max-tokens", a11[] = "1000", a12[] = "--journal-max", a13[] = "200",
                a14[] = "--journal-max-bytes", a15[] = "262144";
    /* Bounds smaller than the defaults: each input clears the journal, whose
     * spare ring's pages are then given back, and reads them in again. */
    static char *argv[] = {a0, a1,  a2,  a3,  a4,  a5,  a6,  a7,  a8,
                           a9, a10, a11, a12, a13, a14, a15, NULL};
    if (made)
        return &app;
    made = 1;
    enum config_mode mode;
    int first;
    char err[1024];
    if (config_parse((int)(sizeof argv / sizeof argv[0]) - 1, argv, &app.cfg, &mode, &first, err,
                     sizeof err))
        die("config", err);
    app.started = clock_monotonic();
    apis[0] = mesh_scenario_api;
    apis[1] = onlyoffice_scenario_api;
    app.apis = apis;
    app.napis = 2;
    log_init(LOG_TEXT, app.cfg.quiet);
    /* The arena as the server runs it; without it every cJSON allocation of
     * a request is its own, with redzones, for AddressSanitizer to watch. */
    if (!getenv("AUTHMOCK_FUZZ_NO_ARENA"))
        json_arena_install();
    rng_init(app.cfg.seeded, app.cfg.seed);

    struct problems p = {0};
    fixtures_load(&app.fixtures, app.cfg.fixtures, &p);
    mesh_check_fixtures(&app.fixtures, &p);
    onlyoffice_check_fixtures(&app.fixtures, &p);
    base = scenario_set_new();
    scenario_load_dir(base, app.cfg.scenarios, apis, 2, &p);
    scenario_load_dir(base, AUTHMOCK_SOURCE_DIR "/tests/scenarios-faults", apis, 2, &p);
    if (p.count)
        die("fixtures and scenarios", p.text.data);
    if (store_open(app.cfg.db, &app.store, err, sizeof err))
        die("store", err);
    struct state_limits limits = {app.cfg.max_sessions, app.cfg.max_tokens};
    if (state_open(&app.state, &limits, NULL, err, sizeof err))
        die("state", err);
    app.engine = scenario_engine_new(app.store, app.state, fuzz_app_base_scenarios());
    if (fixtures_persist(&app.fixtures, app.store) || scenario_engine_persist(app.engine))
        die("store", store_errmsg(app.store));
    if (journal_init(&app))
        die("journal", "out of memory");
    serving = scenario_engine_acquire(app.engine);
    fuzz_app_reset(&app);
    return &app;
}

struct scenario_set *fuzz_app_base_scenarios(void)
{
    return scenario_set_copy(base, NULL, 0, apis, 2);
}

void fuzz_app_use_scenarios(struct app *a, struct scenario_set *set)
{
    scenario_engine_swap(a->engine, set);
    scenario_set_release(serving);
    serving = scenario_engine_acquire(a->engine);
}

void fuzz_app_reset(struct app *a)
{
    struct scenario_set *cur = scenario_engine_acquire(a->engine);
    scenario_set_release(cur);
    if (cur != serving)
        fuzz_app_use_scenarios(a, scenario_set_copy(serving, NULL, 0, apis, 2));
    state_reset(a->state, NULL);
    journal_clear(a, NULL);
    clock_reset_ns(NULL);
    clock_set_offset(0);
    clock_set_offset(FUZZ_EPOCH - clock_now());
    rng_init(1, 1);
}

size_t fuzz_split(const char *data, size_t len, const char **rest, size_t *rest_len)
{
    const size_t seplen = sizeof FUZZ_SEPARATOR - 1;
    for (size_t i = 0; i + seplen <= len; i++)
        if (memcmp(data + i, FUZZ_SEPARATOR, seplen) == 0) {
            *rest = data + i + seplen;
            *rest_len = len - i - seplen;
            return i;
        }
    *rest = NULL;
    *rest_len = 0;
    return len;
}

/* ---- what earlier answers said ---------------------------------------- */

struct saved {
    char name[64];
    char value[256];
};

struct session {
    struct saved vals[MAX_SAVED]; /* JSON members of earlier answers */
    size_t nvals;
    struct saved jar[16]; /* cookies earlier answers set */
    size_t njar;
};

static struct saved *saved_slot(struct saved *list, size_t *n, size_t cap, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i].name, name) == 0)
            return &list[i];
    if (*n == cap || strlen(name) >= sizeof list[0].name)
        return NULL;
    struct saved *s = &list[(*n)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->value[0] = '\0';
    return s;
}

/* Remembers the members of one answer; the first of a name in it wins (the
 * first account's token), a later answer's replaces an earlier one's. */
static void remember(struct session *ss, const cJSON *item, char (*seen)[64], size_t *nseen)
{
    for (const cJSON *c = item ? item->child : NULL; c; c = c->next) {
        if (c->string && (cJSON_IsString(c) || cJSON_IsNumber(c) || cJSON_IsBool(c))) {
            int dup = 0;
            for (size_t i = 0; i < *nseen && !dup; i++)
                dup = strcmp(seen[i], c->string) == 0;
            struct saved *s = dup || *nseen == MAX_SAVED
                                  ? NULL
                                  : saved_slot(ss->vals, &ss->nvals, MAX_SAVED, c->string);
            if (s) {
                snprintf(seen[(*nseen)++], 64, "%s", c->string);
                if (cJSON_IsString(c))
                    snprintf(s->value, sizeof s->value, "%s", c->valuestring);
                else if (cJSON_IsNumber(c))
                    snprintf(s->value, sizeof s->value, "%.17g", c->valuedouble);
                else
                    snprintf(s->value, sizeof s->value, "%s", cJSON_IsTrue(c) ? "true" : "false");
            }
        }
        remember(ss, c, seen, nseen);
    }
}

static void take_answer(struct session *ss, const struct http_response *resp)
{
    const char *body = resp->shared_body ? resp->shared_body : resp->body;
    size_t off;
    cJSON *doc = body ? json_parse(body, resp->body_len, &off) : NULL;
    char seen[MAX_SAVED][64];
    size_t nseen = 0;
    remember(ss, doc, seen, &nseen);
    cJSON_Delete(doc);
    for (int i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->header_names[i], "Set-Cookie") != 0)
            continue;
        const char *line = resp->header_values[i];
        const char *eq = strchr(line, '=');
        if (!eq || eq == line || (size_t)(eq - line) >= 64)
            continue;
        char name[64];
        memcpy(name, line, (size_t)(eq - line));
        name[eq - line] = '\0';
        size_t vlen = strcspn(eq + 1, ";");
        struct saved *s = saved_slot(ss->jar, &ss->njar, 16, name);
        if (s)
            snprintf(s->value, sizeof s->value, "%.*s", (int)vlen, eq + 1);
    }
}

static const char *saved_value(const struct session *ss, const char *name)
{
    for (size_t i = 0; i < ss->nvals; i++)
        if (strcmp(ss->vals[i].name, name) == 0)
            return ss->vals[i].value;
    return NULL;
}

/* Appends the value of ${name}; returns -1 when there is none. */
static int expand_one(const struct session *ss, const char *name, struct buf *out)
{
    size_t n = strlen(name);
    if (strncmp(name, "totp:", 5) == 0) {
        char secret[64];
        const char *colon = strchr(name + 5, ':');
        size_t slen = colon ? (size_t)(colon - name - 5) : n - 5;
        if (slen >= sizeof secret)
            return -1;
        memcpy(secret, name + 5, slen);
        secret[slen] = '\0';
        double at = clock_now() + (colon ? strtod(colon + 1, NULL) : 0);
        char code[7];
        totp_code(secret, slen, (uint64_t)(at > 0 ? at / 30 : 0), code);
        return buf_append(out, code, 6);
    }
    if (n > 1 && name[n - 1] == '?') {
        char bare[64];
        snprintf(bare, sizeof bare, "%.*s", (int)(n - 1), name);
        const char *v = saved_value(ss, bare);
        const char *q = v ? strchr(v, '?') : NULL;
        return q ? buf_append(out, q + 1, strlen(q + 1)) : -1;
    }
    const char *v = saved_value(ss, name);
    return v ? buf_append(out, v, strlen(v)) : -1;
}

static void expand(const struct session *ss, const char *text, size_t len, struct buf *out)
{
    size_t i = 0;
    while (i < len) {
        const char *open = i + 1 < len ? memchr(text + i, '$', len - i - 1) : NULL;
        if (!open) {
            buf_append(out, text + i, len - i);
            return;
        }
        size_t at = (size_t)(open - text);
        buf_append(out, text + i, at - i);
        i = at;
        const char *close = text[at + 1] == '{' ? memchr(text + at, '}', len - at) : NULL;
        char name[80];
        size_t nlen = close ? (size_t)(close - text) - at - 2 : 0;
        if (close && nlen > 0 && nlen < sizeof name && !memchr(text + at + 2, '\0', nlen)) {
            memcpy(name, text + at + 2, nlen);
            name[nlen] = '\0';
            if (expand_one(ss, name, out) == 0) {
                i = (size_t)(close - text) + 1;
                continue;
            }
        }
        buf_append(out, "$", 1);
        i++;
    }
}

/* ---- decoding ----------------------------------------------------------- */

struct decoded {
    char method[64];
    char *path;      /* decoded */
    char query[512]; /* "k=v&k=v", as http.c collects it for logs */
    char *strings;   /* names and values of fields, NUL-separated */
    struct http_field fields[MAX_FIELDS];
    size_t nfields;
    int has_cookie;
    const char *body;
    size_t body_len;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX (and '+' as a space when `plus`) into out, as libmicrohttpd
 * does; the result ends at its first NUL, as a C string does. */
static char *unescape(const char *s, size_t n, int plus, char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[w++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[w++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    out[w] = '\0';
    return out;
}

static char *store_string(char **w, const char *s, size_t n)
{
    char *at = *w;
    memcpy(at, s, n);
    at[n] = '\0';
    *w += n + 1;
    return at;
}

static void add_field(struct decoded *d, enum http_field_kind kind, const char *name,
                      const char *value)
{
    if (d->nfields < MAX_FIELDS)
        d->fields[d->nfields++] = (struct http_field){kind, name, value};
}

/* The cookies of a Cookie header, as libmicrohttpd splits them. */
static void add_cookies(struct decoded *d, char **w, const char *header)
{
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t n = strcspn(p, ";");
        const char *eq = memchr(p, '=', n);
        if (n && eq) {
            const char *v = eq + 1;
            size_t vlen = n - (size_t)(v - p);
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            char *name = store_string(w, p, (size_t)(eq - p));
            add_field(d, HTTP_FIELD_COOKIE, name, store_string(w, v, vlen));
        }
        p += n;
    }
}

/* Splits one request text; returns -1 for one libmicrohttpd or http.c would
 * refuse before the router (a NUL in the path, a body over the cap). */
static int decode(const char *text, size_t len, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    /* Every string decoded from text, with its NUL, fits in three times its
     * length (a Cookie header is kept whole and split into cookies). */
    d->strings = malloc(3 * len + 64);
    if (!d->strings)
        return -1;
    char *w = d->strings;
    const char *end = text + len;
    const char *eol = memchr(text, '\n', len);
    const char *line_end = eol ? eol : end;
    if (line_end > text && line_end[-1] == '\r')
        line_end--;
    const char *sp = memchr(text, ' ', (size_t)(line_end - text));
    size_t mlen = sp ? (size_t)(sp - text) : (size_t)(line_end - text);
    snprintf(d->method, sizeof d->method, "%.*s", (int)mlen, mlen ? text : "GET");
    const char *target = sp ? sp + 1 : line_end;
    size_t tlen = (size_t)(line_end - target);
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    for (size_t i = 0; i + 3 <= plen; i++)
        if (target[i] == '%' && target[i + 1] == '0' && target[i + 2] == '0')
            return -1; /* http.c answers 400 before routing */
    d->path = unescape(target, plen, 0, w);
    w += strlen(d->path) + 1;
    if (q) {
        const char *a = q + 1, *qend = line_end;
        while (a < qend) {
            const char *amp = memchr(a, '&', (size_t)(qend - a));
            const char *e = amp ? amp : qend;
            const char *eq = memchr(a, '=', (size_t)(e - a));
            char *name = unescape(a, (size_t)((eq ? eq : e) - a), 1, w);
            w += strlen(name) + 1;
            char *value = NULL;
            if (eq) {
                value = unescape(eq + 1, (size_t)(e - eq - 1), 1, w);
                w += strlen(value) + 1;
            }
            if (e > a) {
                add_field(d, HTTP_FIELD_QUERY, name, value);
                size_t n = strlen(d->query);
                snprintf(d->query + n, sizeof d->query - n, "%s%s=%s", n ? "&" : "", name,
                         value ? value : "");
            }
            a = e + 1;
        }
    }
    const char *p = eol ? eol + 1 : end;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) {
            p = next;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            char *name = store_string(&w, p, (size_t)(colon - p));
            char *value = store_string(&w, v, (size_t)(ve - v));
            add_field(d, HTTP_FIELD_HEADER, name, value);
            if (strcasecmp(name, "Cookie") == 0) {
                d->has_cookie = 1;
                add_cookies(d, &w, value);
            }
        }
        p = next;
    }
    d->body = p;
    d->body_len = (size_t)(end - p);
    return d->body_len > HTTP_MAX_BODY ? -1 : 0;
}

/* ---- sending ------------------------------------------------------------ */

/* What http.c's journal_request records, from what it keeps of a request. */
static void journal(struct app *a, const struct decoded *d, struct http_response *resp)
{
    /* http.c keeps 15 bytes of the method and 255 of the path. */
    char method[16], path[256], masked[700];
    snprintf(method, sizeof method, "%.15s", d->method);
    snprintf(path, sizeof path, "%.255s", d->path);
    if (!resp->log_path[0])
        router_log_path(path, resp->log_path, sizeof resp->log_path);
    if (resp->api && strcmp(resp->api, "admin") == 0)
        return;
    log_mask_query(d->query, masked, sizeof masked);
    struct journal_entry e = {
        .at = clock_now_ns(resp->ns),
        .ns = resp->ns,
        .api = resp->api,
        .method = method,
        .path = resp->log_path[0] ? resp->log_path : path,
        .query = masked,
        .status = resp->fault == FAULT_DROP ? 0 : resp->status,
        .latency_ms = 0,
        .scenario = resp->scenario[0] ? resp->scenario : NULL,
        .state_from = resp->state_from[0] ? resp->state_from : NULL,
        .state_to = resp->state_to[0] ? resp->state_to : NULL,
        .user = resp->user[0] ? resp->user : NULL,
        .body = d->body,
        .body_len = d->body_len,
        .body_secret = resp->body_secret,
    };
    journal_record(a, &e);
}

/* What any reply must be for libmicrohttpd to send it. */
static void check_reply(const struct http_response *resp)
{
    if (resp->status < 100 || resp->status > 599) {
        fprintf(stderr, "fuzz_app: a reply with status %d\n", resp->status);
        abort();
    }
    if (resp->body_len && !resp->body && !resp->shared_body) {
        fprintf(stderr, "fuzz_app: a reply of %zu bytes without a body\n", resp->body_len);
        abort();
    }
    /* HTTP's rules for a header (RFC 9110 5.1, 5.5): libmicrohttpd drops a
     * name with white space or a line break without a word, and strict
     * clients refuse a reply with a name that is not a token or a value with
     * a control character. */
    for (int i = 0; i < resp->nheaders; i++) {
        const char *name = resp->header_names[i], *value = resp->header_values[i];
        int ok = name && value && name[0];
        for (const char *c = name; ok && *c; c++)
            ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 strchr("!#$%&'*+-.^_`|~", *c);
        for (const unsigned char *c = (const unsigned char *)value; ok && *c; c++)
            ok = (*c >= 0x20 || *c == '\t') && *c != 0x7f;
        if (!ok) {
            fprintf(stderr, "fuzz_app: a reply header HTTP does not allow: '%s: %s'\n",
                    name ? name : "(null)", value ? value : "(null)");
            abort();
        }
    }
}

static void send_one(struct app *a, struct session *ss, const char *text, size_t len)
{
    struct buf expanded = {0};
    expand(ss, text, len, &expanded);
    struct decoded d;
    if (decode(expanded.data ? expanded.data : "", expanded.len, &d) == 0) {
        char cookies[1024] = "";
        char *w = NULL;
        if (!d.has_cookie && ss->njar) {
            for (size_t i = 0; i < ss->njar; i++) {
                size_t n = strlen(cookies);
                snprintf(cookies + n, sizeof cookies - n, "%s%s=%s", i ? "; " : "", ss->jar[i].name,
                         ss->jar[i].value);
            }
            add_field(&d, HTTP_FIELD_HEADER, "Cookie", cookies);
            w = malloc(2 * sizeof cookies);
            if (w) {
                char *cw = w;
                add_cookies(&d, &cw, cookies);
            }
        }
        /* The body in a buffer of its exact size: a read past it is caught. */
        char *body = d.body_len ? malloc(d.body_len) : NULL;
        if (body)
            memcpy(body, d.body, d.body_len);
        struct http_request req = {
            .conn = NULL,
            .method = d.method,
            .path = d.path,
            .query = d.query,
            .body = body ? body : "",
            .body_len = body ? d.body_len : 0,
            .client_ip = "127.0.0.1",
            .fields = d.fields,
            .nfields = d.nfields,
        };
        struct http_response *resp = calloc(1, sizeof *resp);
        if (resp) {
            router_dispatch(a, &req, resp);
            d.body = req.body;
            d.body_len = req.body_len;
            journal(a, &d, resp);
            check_reply(resp);
            if (getenv("AUTHMOCK_FUZZ_VERBOSE")) /* to see what an input does */
                fprintf(stderr, "%s %s -> %d %.*s\n", d.method, d.path, resp->status,
                        (int)(resp->body_len < 300 ? resp->body_len : 300),
                        resp->shared_body ? resp->shared_body
                        : resp->body      ? resp->body
                                          : "");
            take_answer(ss, resp);
            http_response_free(resp);
        }
        free(body);
        free(w);
    }
    free(d.strings);
    buf_free(&expanded);
}

void fuzz_app_send(struct app *a, const char *data, size_t len)
{
    struct session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return;
    for (int n = 0; n < FUZZ_MAX_REQUESTS && data; n++) {
        const char *rest;
        size_t rest_len;
        size_t one = fuzz_split(data, len, &rest, &rest_len);
        send_one(a, ss, data, one);
        data = rest;
        len = rest_len;
    }
    free(ss);
}

/*
 * http: libmicrohttpd 0.9.75 with an epoll thread pool.
 *
 * Each connection's request gets a struct request_ctx on the first call of
 * the access handler. The body is accumulated into it (never assumed
 * NUL-terminated); a declared or actual body over HTTP_MAX_BODY gets 413. A
 * delayed reply suspends the connection and a timer thread resumes it when
 * due, so a delay holds no worker thread. The completion callback writes the
 * log line and frees the context.
 */
#include "http.h"
#include "app.h"
#include "journal.h"
#include "clock.h"
#include "conntrack.h"
#include "events.h"
#include "log.h"
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

/* Limits on what precedes the body, as strict as Kestrel's defaults where
 * libmicrohttpd's 32 KiB connection pool allows: an 8 KiB request target, 100
 * headers. libmicrohttpd itself answers 414/431 when the line or the header
 * block outgrows the pool, but it hangs when query parameters exhaust it (each
 * takes a 64-byte record), so they are capped well inside it. */
#define HTTP_POOL_BYTES (32 * 1024)
#define HTTP_MAX_TARGET 8192
#define HTTP_MAX_QUERY  128
#define HTTP_MAX_FIELDS 100

struct request_ctx {
    struct buf body;
    int begun;    /* on_access has seen the request (MHD may refuse one before) */
    int nul_path; /* the raw path had %00: a NUL that decoding would hide */
    int refuse;   /* a status to answer at once (414), found in the raw request line */
    int too_large;
    int answered;
    double started;
    struct http_response *pending; /* a delayed reply waiting for its time */
    struct http_response log;      /* what the log line needs, kept after queueing */
    int status;
    char method[16];
    char path[256];
    char query[512];     /* decoded, for the API modules */
    char raw_query[512]; /* as received (still %- and +-encoded), for the log and journal */
};

/* ---- delayed replies -------------------------------------------------- */

struct delayed {
    double due;
    struct MHD_Connection *conn;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct delayed *items;
    size_t n, cap;
    int stop;
    pthread_t thread;
} timer = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0};

static _Atomic long inflight;

static void *timer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&timer.lock);
    for (;;) {
        double now = clock_monotonic();
        /* Resume every connection that is due (all of them when stopping). */
        size_t i = 0;
        while (i < timer.n) {
            if (timer.items[i].due <= now || timer.stop) {
                MHD_resume_connection(timer.items[i].conn);
                timer.items[i] = timer.items[--timer.n];
            } else {
                i++;
            }
        }
        if (timer.stop && timer.n == 0)
            break;
        double next = -1;
        for (i = 0; i < timer.n; i++)
            if (next < 0 || timer.items[i].due < next)
                next = timer.items[i].due;
        if (next < 0) {
            pthread_cond_wait(&timer.cond, &timer.lock);
        } else {
            struct timespec ts;
            clock_deadline(&ts, next - now);
            pthread_cond_timedwait(&timer.cond, &timer.lock, &ts);
        }
    }
    pthread_mutex_unlock(&timer.lock);
    return NULL;
}

static int timer_schedule(struct MHD_Connection *conn, double due)
{
    pthread_mutex_lock(&timer.lock);
    if (timer.n == timer.cap) {
        size_t cap = timer.cap ? timer.cap * 2 : 64;
        struct delayed *items = realloc(timer.items, cap * sizeof *items);
        if (!items) {
            pthread_mutex_unlock(&timer.lock);
            return -1;
        }
        timer.items = items;
        timer.cap = cap;
    }
    timer.items[timer.n].due = due;
    timer.items[timer.n++].conn = conn;
    pthread_cond_signal(&timer.cond);
    pthread_mutex_unlock(&timer.lock);
    return 0;
}

/* ---- request helpers -------------------------------------------------- */

/* A request made in-process has no connection: its fields answer instead. */
static const char *field(const struct http_request *r, enum http_field_kind kind, const char *name)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (r->fields[i].kind == kind && strcasecmp(r->fields[i].name, name) == 0)
            return r->fields[i].value;
    return NULL;
}

const char *http_header(const struct http_request *r, const char *name)
{
    if (!r->conn)
        return field(r, HTTP_FIELD_HEADER, name);
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query_arg(const struct http_request *r, const char *name)
{
    if (!r->conn)
        return field(r, HTTP_FIELD_QUERY, name);
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_cookie(const struct http_request *r, const char *name)
{
    if (!r->conn)
        return field(r, HTTP_FIELD_COOKIE, name);
    return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

/* The q of one coding's parameters (";q=0.5"): 0 when it is zero, else 1. */
static int coding_q_positive(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            if (p < end && *p == '1')
                return 1;
            for (; p < end && (*p == '0' || *p == '.'); p++)
                ;
            return p < end && *p >= '1' && *p <= '9';
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1;
}

/* One Accept-Encoding value's codings: the q of the first gzip (or x-gzip)
 * and of the first "*" go into gzip and any (-1 while unseen). */
static void scan_codings(const char *v, int *gzip, int *any)
{
    while (v && *v) {
        const char *end = strchr(v, ',');
        if (!end)
            end = v + strlen(v);
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        size_t n = 0;
        while (v + n < end && v[n] != ';' && v[n] != ' ' && v[n] != '\t')
            n++;
        int q = coding_q_positive(v + n, end);
        if ((n == 4 && strncasecmp(v, "gzip", 4) == 0) ||
            (n == 6 && strncasecmp(v, "x-gzip", 6) == 0))
            *gzip = *gzip < 0 ? q : *gzip;
        else if (n == 1 && *v == '*')
            *any = *any < 0 ? q : *any;
        v = *end ? end + 1 : end;
    }
}

struct codings {
    int gzip, any;
};

static enum MHD_Result scan_accept_encoding(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    struct codings *c = cls;
    (void)kind;
    if (strcasecmp(key, "Accept-Encoding") == 0)
        scan_codings(value, &c->gzip, &c->any);
    return MHD_YES;
}

int http_accepts_gzip(const struct http_request *r)
{
    /* Accept-Encoding sent twice is one list (RFC 9110 5.3). */
    struct codings c = {-1, -1};
    if (r->conn) {
        MHD_get_connection_values(r->conn, MHD_HEADER_KIND, scan_accept_encoding, &c);
    } else {
        for (size_t i = 0; i < r->nfields; i++)
            if (r->fields[i].kind == HTTP_FIELD_HEADER &&
                strcasecmp(r->fields[i].name, "Accept-Encoding") == 0)
                scan_codings(r->fields[i].value, &c.gzip, &c.any);
    }
    return c.gzip >= 0 ? c.gzip : c.any > 0;
}

char *http_gzip(const char *text, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* 15 + 16: the largest window, with a gzip header and trailer. */
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)len);
    char *out = malloc(cap);
    if (out) {
        z.next_in = (Bytef *)text;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) == Z_STREAM_END) {
            *out_len = z.total_out;
        } else {
            free(out);
            out = NULL;
        }
    }
    deflateEnd(&z);
    return out;
}

int http_json_content_type(const struct http_request *r)
{
    const char *ct = http_header(r, "Content-Type");
    if (!ct)
        return 0;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n == 9 && strncasecmp(ct, "text/json", 9) == 0) ||
           (n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
            strncasecmp(ct + n - 5, "+json", 5) == 0);
}

void http_base_url(const struct app *app, const struct http_request *r, char *out, size_t cap)
{
    const char *host = http_header(r, "Host");
    const char *scheme = app->tls ? "https" : "http";
    /* A Host header with characters that do not belong in one is ignored. */
    if (host && *host && strlen(host) < 256 &&
        strspn(host, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789.-:[]") == strlen(host))
        snprintf(out, cap, "%s://%s", scheme, host);
    else if (strchr(app->cfg.bind, ':'))
        snprintf(out, cap, "%s://[%s]:%d", scheme, app->cfg.bind, app->port);
    else
        snprintf(out, cap, "%s://%s:%d", scheme, app->cfg.bind, app->port);
}

int http_namespace(const struct http_request *r, char *out, size_t cap)
{
    const char *ns = http_header(r, "X-Authmock-Namespace");
    out[0] = '\0';
    if (!ns)
        return 0;
    size_t n = strlen(ns);
    if (n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ns[i] < 0x21 || (unsigned char)ns[i] > 0x7e)
            return -1;
    memcpy(out, ns, n + 1);
    return 0;
}

static void drop_shared(struct http_response *resp)
{
    if (resp->release)
        resp->release(resp->release_cls);
    resp->journal_form = NULL;
    resp->shared_body = NULL;
    resp->release = NULL;
    resp->release_cls = NULL;
}

/* Forgets the body a reply had (its own, or a cache's), before another is set. */
static void reply_clear(struct http_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    drop_shared(resp);
}

void http_reply_raw(struct http_response *resp, int status, const char *content_type,
                    const char *body, size_t len)
{
    reply_clear(resp);
    resp->body = malloc(len + 1);
    if (resp->body) {
        memcpy(resp->body, body, len);
        resp->body[len] = '\0';
    }
    resp->body_len = resp->body ? len : 0;
    resp->status = status;
    resp->content_type = content_type;
}

void http_reply_shared(struct http_response *resp, int status, const char *content_type,
                       const char *body, size_t len, void (*release)(void *cls), void *cls)
{
    reply_clear(resp);
    resp->shared_body = body;
    resp->body_len = len;
    resp->release = release;
    resp->release_cls = cls;
    resp->status = status;
    resp->content_type = content_type;
}

void http_reply_stream(struct http_response *resp, int status, const char *content_type,
                       ssize_t (*read)(void *cls, uint64_t pos, char *buf, size_t max),
                       void (*free_cls)(void *cls), void *cls)
{
    reply_clear(resp);
    resp->stream = read;
    resp->stream_free = free_cls;
    resp->stream_cls = cls;
    resp->status = status;
    resp->content_type = content_type;
}

void http_reply_json(struct http_response *resp, int status, const char *content_type,
                     const cJSON *tree)
{
    free(resp->body);
    resp->body = json_render(tree, &resp->body_len);
    if (!resp->body) {
        resp->body_len = 0;
        status = 500;
    }
    resp->status = status;
    resp->content_type = content_type ? content_type : "application/json; charset=utf-8";
}

void http_reply_error(struct http_response *resp, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    http_reply_json(resp, status, NULL, o);
    cJSON_Delete(o);
}

void http_add_header(struct http_response *resp, const char *name, const char *value)
{
    /* Set-Cookie may repeat; any other header is replaced. */
    for (int i = 0; i < resp->nheaders && strcasecmp(name, "Set-Cookie") != 0; i++) {
        if (strcasecmp(resp->header_names[i], name) == 0) {
            free(resp->header_values[i]);
            resp->header_values[i] = strdup(value);
            return;
        }
    }
    if (resp->nheaders >= HTTP_MAX_HEADERS)
        return;
    resp->header_names[resp->nheaders] = strdup(name);
    resp->header_values[resp->nheaders++] = strdup(value);
}

void http_set_outcome(struct http_response *resp, const char *word)
{
    size_t n = 0;
    for (; word && *word && n + 1 < sizeof resp->outcome; word++)
        if ((*word >= 'a' && *word <= 'z') || (*word >= 'A' && *word <= 'Z') ||
            (*word >= '0' && *word <= '9') || *word == '.' || *word == '-' || *word == '_')
            resp->outcome[n++] = *word;
    resp->outcome[n] = '\0';
}

int http_reply_body_override(struct http_response *resp, int status, const cJSON *reply)
{
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(reply, "body");
    if (cJSON_IsString(body))
        http_reply_raw(resp, status, "application/json; charset=utf-8", body->valuestring,
                       strlen(body->valuestring));
    else if (body)
        http_reply_json(resp, status, NULL, body);
    return body != NULL;
}

void http_apply_reply_extras(struct http_response *resp, const cJSON *reply)
{
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(reply, "retryAfter");
    if (cJSON_IsNumber(ra)) {
        char v[32];
        snprintf(v, sizeof v, "%ld", (long)ra->valuedouble);
        http_add_header(resp, "Retry-After", v);
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(reply, "headers"))
    {
        if (cJSON_IsString(h))
            http_add_header(resp, h->string, h->valuestring);
    }
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(reply, "delayMs");
    if (cJSON_IsNumber(delay))
        resp->delay_ms = (long)delay->valuedouble;
    const cJSON *fault = cJSON_GetObjectItemCaseSensitive(reply, "fault");
    const char *f = cJSON_IsString(fault) ? fault->valuestring : "";
    if (strcmp(f, "drop") == 0)
        resp->fault = FAULT_DROP;
    else if (strcmp(f, "truncate") == 0)
        resp->fault = FAULT_TRUNCATE;
    else if (strcmp(f, "malformed") == 0 && resp->body_len > 2) {
        resp->body_len = resp->body_len * 2 / 3; /* well delimited, but not JSON */
        resp->fault = FAULT_MALFORMED;
    }
}

void http_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    free(resp->match);
    drop_shared(resp);
    if (resp->stream_free)
        resp->stream_free(resp->stream_cls);
    for (int i = 0; i < resp->nheaders; i++) {
        free(resp->header_names[i]);
        free(resp->header_values[i]);
    }
    free(resp);
}

/* ---- sending ---------------------------------------------------------- */

struct truncated {
    char *body;
    size_t len;
};

static ssize_t truncated_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct truncated *t = cls;
    size_t half = t->len / 2;
    if (pos >= half)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = half - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, t->body + pos, n);
    return (ssize_t)n;
}

static void truncated_free(void *cls)
{
    struct truncated *t = cls;
    free(t->body);
    free(t);
}

/* The outcome word of an answer: the API module's, else ok or error by status. */
static const char *outcome_of(const struct http_response *resp)
{
    if (resp->outcome[0])
        return resp->outcome;
    if (resp->api && strcmp(resp->api, "admin") == 0)
        return NULL;
    return resp->status >= 400 || resp->status == 0 ? "error" : "ok";
}

struct header_list {
    const char *names[HTTP_MAX_FIELDS];
    const char *values[HTTP_MAX_FIELDS];
    size_t n;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct header_list *h = cls;
    (void)kind;
    if (h->n < HTTP_MAX_FIELDS) {
        h->names[h->n] = key;
        h->values[h->n++] = value ? value : "";
    }
    return MHD_YES;
}

/* The headers a response goes out with, in order: its Content-Type (unless
 * a scenario sets its own), its own headers, the CORS headers. Both the
 * sending and the journal take them from here. */
enum { RESPONSE_HEADERS_MAX = HTTP_MAX_HEADERS + 4 };

static size_t response_headers(const struct app *app, const struct http_response *resp,
                               const char **names, const char **values)
{
    size_t n = 0;
    int own_type = 0;
    for (int i = 0; i < resp->nheaders; i++)
        own_type |= strcasecmp(resp->header_names[i], "Content-Type") == 0;
    if (resp->content_type && !own_type) {
        names[n] = MHD_HTTP_HEADER_CONTENT_TYPE;
        values[n++] = resp->content_type;
    }
    for (int i = 0; i < resp->nheaders; i++) {
        names[n] = resp->header_names[i];
        values[n++] = resp->header_values[i];
    }
    if (app->cfg.cors) {
        names[n] = "Access-Control-Allow-Origin";
        values[n++] = app->cfg.cors;
        names[n] = "Access-Control-Allow-Credentials";
        values[n++] = "true";
        names[n] = "Vary";
        values[n++] = "Origin";
    }
    return n;
}

/* Journals a request before its answer goes out, so a client that reads the
 * journal right after its call finds the call there. Admin calls are not
 * journaled: a test reading the journal must not see itself. */
static void journal_request(struct app *app, struct MHD_Connection *conn, struct request_ctx *ctx,
                            struct http_response *resp)
{
    /* A code in the path stays out of the journal and the log however the
     * request was answered (405 for another method, 413 before routing...). */
    if (!resp->log_path[0])
        router_log_path(ctx->path, resp->log_path, sizeof resp->log_path);
    if (resp->api && strcmp(resp->api, "admin") == 0)
        return;
    if (!app->journal)
        return;
    char masked[700];
    log_mask_query(ctx->raw_query, masked, sizeof masked);
    /* The headers as received (pointers into libmicrohttpd's pool) and as
     * they will be sent; the journal masks the secret ones. */
    struct header_list req_h = {.n = 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &req_h);
    const char *rnames[RESPONSE_HEADERS_MAX], *rvalues[RESPONSE_HEADERS_MAX];
    size_t nr = response_headers(app, resp, rnames, rvalues);
    static const char *const faults[] = {NULL, "drop", "truncate", "malformed"};
    struct journal_entry e = {
        .at = clock_now_ns(resp->ns),
        .ns = resp->ns,
        .api = resp->api,
        .method = ctx->method,
        .path = resp->log_path[0] ? resp->log_path : ctx->path,
        .query = masked,
        .status = resp->fault == FAULT_DROP ? 0 : resp->status,
        .latency_ms = (clock_monotonic() - ctx->started) * 1000.0,
        .scenario = resp->scenario[0] ? resp->scenario : NULL,
        .state_from = resp->state_from[0] ? resp->state_from : NULL,
        .state_to = resp->state_to[0] ? resp->state_to : NULL,
        .user = resp->user[0] ? resp->user : NULL,
        .body = ctx->body.data,
        .body_len = ctx->body.len,
        .body_secret = resp->body_secret,
        .body_is_json = resp->body_is_json,
        .outcome = outcome_of(resp),
        .req_header_names = req_h.names,
        .req_header_values = req_h.values,
        .nreq_headers = req_h.n,
        .resp_header_names = rnames,
        .resp_header_values = rvalues,
        .nresp_headers = nr,
        .resp_body = resp->shared_body ? resp->shared_body : resp->body,
        .resp_body_len = resp->fault == FAULT_DROP ? 0 : resp->body_len,
        .resp_body_form =
            resp->shared_body && resp->fault == FAULT_NONE ? resp->journal_form : NULL,
        .resp_body_form_len = resp->journal_form_len,
        .fault = faults[resp->fault],
        .secret_path = resp->log_path[0] ? ctx->path : NULL,
        .delay_ms = resp->delay_ms,
        .match = resp->match,
    };
    journal_record(app, &e);
}

static enum MHD_Result send_response(struct app *app, struct MHD_Connection *conn,
                                     struct request_ctx *ctx, struct http_response *resp)
{
    struct MHD_Response *r;
    if (resp->shared_body) {
        r = MHD_create_response_from_buffer_with_free_callback_cls(
            resp->body_len, (void *)resp->shared_body, resp->release, resp->release_cls);
        /* A response made calls release when it is done; else we do now. */
        if (r) {
            resp->shared_body = NULL;
            resp->release = NULL;
        } else {
            drop_shared(resp);
        }
    } else if (resp->stream) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, resp->stream,
                                              resp->stream_cls, resp->stream_free);
        /* The response owns the stream now (and frees it), made or not. */
        if (!r && resp->stream_free)
            resp->stream_free(resp->stream_cls);
        resp->stream = NULL;
        resp->stream_free = NULL;
    } else if (resp->fault == FAULT_TRUNCATE && resp->body_len > 1) {
        /* Announce the whole length, send half, then close: a truncated body. */
        struct truncated *t = malloc(sizeof *t);
        if (!t)
            return MHD_NO;
        t->body = resp->body;
        t->len = resp->body_len;
        resp->body = NULL;
        r = MHD_create_response_from_callback(t->len, 4096, truncated_reader, t, truncated_free);
    } else {
        r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        resp->body = NULL;
    }
    if (!r)
        return MHD_NO;
    /* A scenario's own Content-Type (in "headers") replaces the default. */
    const char *names[RESPONSE_HEADERS_MAX], *values[RESPONSE_HEADERS_MAX];
    size_t nh = response_headers(app, resp, names, values);
    for (size_t i = 0; i < nh; i++)
        MHD_add_response_header(r, names[i], values[i]);
    ctx->status = resp->status;
    if (resp->log_path[0])
        snprintf(ctx->path, sizeof ctx->path, "%s", resp->log_path);
    ctx->log.api = resp->api;
    memcpy(ctx->log.ns, resp->ns, sizeof ctx->log.ns);
    memcpy(ctx->log.scenario, resp->scenario, sizeof ctx->log.scenario);
    memcpy(ctx->log.state_from, resp->state_from, sizeof ctx->log.state_from);
    memcpy(ctx->log.state_to, resp->state_to, sizeof ctx->log.state_to);
    memcpy(ctx->log.user, resp->user, sizeof ctx->log.user);
    const char *outcome = outcome_of(resp);
    snprintf(ctx->log.outcome, sizeof ctx->log.outcome, "%s", outcome ? outcome : "");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    ctx->answered = 1;
    return ret;
}

/* Journals the request, then answers it (or drops the connection), and frees the reply. */
static enum MHD_Result finish(struct app *app, struct MHD_Connection *conn, struct request_ctx *ctx,
                              struct http_response *resp)
{
    journal_request(app, conn, ctx, resp);
    enum MHD_Result r = MHD_NO;
    if (resp->fault == FAULT_DROP)
        ctx->status = 0;
    else
        r = send_response(app, conn, ctx, resp);
    http_response_free(resp);
    return r;
}

static void preflight(struct app *app, const struct http_request *req, struct http_response *resp)
{
    http_reply_raw(resp, 204, NULL, "", 0);
    http_add_header(resp, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
    const char *h = http_header(req, "Access-Control-Request-Headers");
    http_add_header(resp, "Access-Control-Allow-Headers",
                    h ? h : "Content-Type, Authorization, X-Client-Id, X-Client-Secret");
    http_add_header(resp, "Access-Control-Max-Age", "600");
    (void)app;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct request_ctx *ctx = cls;
    size_t n = strlen(ctx->query);
    (void)kind;
    snprintf(ctx->query + n, sizeof ctx->query - n, "%s%s=%s", n ? "&" : "", key,
             value ? value : "");
    return MHD_YES;
}

/* Answers a request before its body is read (journaled and logged as usual). */
static enum MHD_Result refuse_early(struct app *app, struct MHD_Connection *conn,
                                    struct request_ctx *ctx, int status, const char *message)
{
    struct http_response resp = {0};
    http_reply_error(&resp, status, "%s", message);
    conntrack_received(conntrack_of(conn));
    journal_request(app, conn, ctx, &resp);
    enum MHD_Result r = send_response(app, conn, ctx, &resp);
    free(resp.body);
    return r;
}

struct cl_count {
    const char *first;
    int conflict;
};

static enum MHD_Result count_content_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    struct cl_count *c = cls;
    (void)kind;
    if (!key || strcasecmp(key, "Content-Length") != 0 || !value)
        return MHD_YES;
    if (c->first && strcmp(c->first, value) != 0)
        c->conflict = 1;
    if (!c->first)
        c->first = value;
    return MHD_YES;
}

/* Sees the request line before libmicrohttpd decodes it or parses its query,
 * and creates the request's context:
 * - "%00" decodes to a NUL that would cut the path short
 *   (/__admin/health%00x answered as /__admin/health): refused with 400;
 * - a target over HTTP_MAX_TARGET bytes or with over HTTP_MAX_QUERY query
 *   parameters is refused with 414, and its query is blanked in place (the
 *   line is libmicrohttpd's own writable buffer, parsed right after this call)
 *   so that the parameters cannot exhaust the connection's pool;
 * - the request's deadline starts, if the reaper has not started it yet. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    conntrack_began(conntrack_of(conn));
    struct request_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx || !uri)
        return ctx;
    const char *q = strchr(uri, '?');
    size_t n = q ? (size_t)(q - uri) : strlen(uri);
    for (size_t i = 0; i + 3 <= n; i++)
        if (uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0')
            ctx->nul_path = 1;
    snprintf(ctx->path, sizeof ctx->path, "%.*s", (int)(n < 255 ? n : 255), uri);
    size_t params = 0;
    if (q && q[1])
        for (const char *c = q; *c; c++)
            params += *c == '&' || *c == '?';
    if (n + (q ? strlen(q) : 0) > HTTP_MAX_TARGET || params > HTTP_MAX_QUERY) {
        ctx->refuse = 414;
        if (q)
            *(char *)(q + 1) = '\0';
    }
    /* Logged as received: a decoded "user 1" or "a&b" would split a line
     * that is read by whitespace and '&'. */
    if (q)
        snprintf(ctx->raw_query, sizeof ctx->raw_query, "%s", q + 1);
    return ctx;
}

/* Counts the request's header fields. */
static enum MHD_Result count_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    (void)key;
    (void)value;
    (*(int *)cls)++;
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct app *app = cls;
    struct request_ctx *ctx = *con_cls;
    (void)version;
    if (!ctx || !ctx->begun) {
        if (!ctx)
            ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        ctx->begun = 1;
        ctx->started = clock_monotonic();
        snprintf(ctx->method, sizeof ctx->method, "%s", method);
        snprintf(ctx->path, sizeof ctx->path, "%s", url);
        *con_cls = ctx;
        atomic_fetch_add(&inflight, 1);
        /* As strict as ASP.NET Core: a NUL in the path, or two Content-Length
         * headers that disagree, is a bad request, answered before the body. */
        struct cl_count cls_ = {NULL, 0};
        MHD_get_connection_values(conn, MHD_HEADER_KIND, count_content_length, &cls_);
        int fields = 0;
        MHD_get_connection_values(conn, MHD_HEADER_KIND, count_field, &fields);
        if (ctx->refuse == 414) {
            char msg[96];
            snprintf(msg, sizeof msg,
                     "the request target is longer than %d bytes or has more than %d query "
                     "parameters",
                     HTTP_MAX_TARGET, HTTP_MAX_QUERY);
            return refuse_early(app, conn, ctx, 414, msg);
        }
        if (fields > HTTP_MAX_FIELDS) {
            char msg[64];
            snprintf(msg, sizeof msg, "the request has more than %d header fields",
                     HTTP_MAX_FIELDS);
            return refuse_early(app, conn, ctx, 431, msg);
        }
        if (ctx->nul_path)
            return refuse_early(app, conn, ctx, 400, "the request path contains a NUL character");
        if (cls_.conflict)
            return refuse_early(app, conn, ctx, 400,
                                "the request has conflicting Content-Length headers");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > HTTP_MAX_BODY)
            ctx->too_large = 1;
        if (!ctx->too_large)
            return MHD_YES;
        /* Refuse before reading the body at all. */
        char msg[64];
        snprintf(msg, sizeof msg, "request body is larger than %d bytes", HTTP_MAX_BODY);
        return refuse_early(app, conn, ctx, 413, msg);
    }
    if (ctx->answered)
        return MHD_YES; /* a 413 already went out; the rest of the body is discarded */
    if (ctx->pending) {
        struct http_response *resp = ctx->pending;
        ctx->pending = NULL;
        return finish(app, conn, ctx, resp);
    }
    if (*upload_data_size) {
        if (!ctx->too_large) {
            if (ctx->body.len + *upload_data_size > HTTP_MAX_BODY) {
                ctx->too_large = 1;
                buf_free(&ctx->body);
            } else if (buf_append(&ctx->body, upload_data, *upload_data_size)) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* The request is whole: its deadline no longer applies (or it already
     * expired and the connection is being closed). */
    if (conntrack_received(conntrack_of(conn)) != 0)
        return MHD_NO;
    struct http_response *resp = calloc(1, sizeof *resp);
    if (!resp)
        return MHD_NO;
    if (ctx->too_large) {
        http_reply_error(resp, 413, "request body is larger than %d bytes", HTTP_MAX_BODY);
    } else {
        char ip[INET6_ADDRSTRLEN] = "";
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
        }
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, ctx);
        struct http_request req = {
            .conn = conn,
            .method = method,
            .path = url,
            .query = ctx->query,
            .body = ctx->body.data ? ctx->body.data : "",
            .body_len = ctx->body.len,
            .client_ip = ip,
        };
        if (app->cfg.cors && strcmp(method, "OPTIONS") == 0)
            preflight(app, &req, resp);
        else
            router_dispatch(app, &req, resp);
    }
    if (resp->delay_ms > 0) {
        ctx->pending = resp;
        MHD_suspend_connection(conn);
        if (timer_schedule(conn, clock_monotonic() + (double)resp->delay_ms / 1000.0) == 0)
            return MHD_YES;
        ctx->pending = NULL;
        MHD_resume_connection(conn);
    }
    return finish(app, conn, ctx, resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request_ctx *ctx = *con_cls;
    struct app *app = cls;
    (void)toe;
    struct conn_track *track = conntrack_of(conn);
    int expired = conntrack_expired(track);
    conntrack_done(track);
    if (!ctx)
        return;
    if (!ctx->begun) {
        /* Refused by libmicrohttpd (431: header block too large) or expired
         * before its headers were whole: the log still tells of it. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        int status = expired ? 408 : ci ? (int)ci->http_status : 0;
        if (status) {
            char path[256] = "";
            router_log_path(ctx->path, path, sizeof path);
            struct log_request line = {
                .method = "-", .path = path[0] ? path : ctx->path, .status = status};
            log_request(&line);
        }
        free(ctx);
        *con_cls = NULL;
        return;
    }
    if (expired && !ctx->answered) {
        /* The reaper answered 408 on the socket; journal it like any answer. */
        struct http_response resp = {0};
        http_reply_error(&resp, 408, "request timeout");
        journal_request(app, conn, ctx, &resp);
        if (resp.log_path[0])
            snprintf(ctx->path, sizeof ctx->path, "%s", resp.log_path);
        free(resp.body);
        ctx->status = 408;
    }
    struct log_request line = {
        .method = ctx->method,
        .path = ctx->path,
        .query = ctx->raw_query,
        .status = ctx->status,
        .latency_ms = (clock_monotonic() - ctx->started) * 1000.0,
        .api = ctx->log.api,
        .ns = ctx->log.ns[0] ? ctx->log.ns : NULL,
        .scenario = ctx->log.scenario[0] ? ctx->log.scenario : NULL,
        .state_from = ctx->log.state_from[0] ? ctx->log.state_from : NULL,
        .state_to = ctx->log.state_to[0] ? ctx->log.state_to : NULL,
        .outcome = ctx->log.outcome[0] ? ctx->log.outcome : NULL,
    };
    log_request(&line);
    http_response_free(ctx->pending);
    buf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&inflight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        conntrack_opened(conn, socket_context);
    else
        conntrack_closed(socket_context);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* A client that goes away mid-request (or one the reaper shut out, or a
     * dashboard tab closed while its event stream was open) is not the
     * server's error. */
    if (strstr(msg, "detected connection closure") ||
        strstr(msg, "socket is no longer available for sending"))
        log_info("libmicrohttpd: %s", msg);
    else
        log_error("libmicrohttpd: %s", msg);
}

static char *read_pem(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *pem = file_read(path, &len);
    if (!pem)
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    else if (len == 0)
        snprintf(err, errlen, "%s: empty file", path);
    if (pem && len == 0) {
        free(pem);
        return NULL;
    }
    return pem;
}

/* Raises the soft open-file limit to the hard one and returns how many
 * connections fit under it (a few descriptors are kept for the listen socket,
 * epoll sets, the store, the journal and the log). When `wanted` does not
 * fit, returns -1 with the reason. */
static int connection_limit(int wanted, char *err, size_t errlen)
{
    enum { RESERVED = 64, DEFAULT_MAX = 10000 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return wanted ? wanted : 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl = raised;
    }
    long fit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000 + RESERVED
                   ? 1000000
                   : (long)rl.rlim_cur - RESERVED;
    if (fit < 1)
        fit = 1;
    if (!wanted)
        return (int)(fit < DEFAULT_MAX ? fit : DEFAULT_MAX);
    if (wanted > fit) {
        snprintf(err, errlen,
                 "--max-connections %d: the open-file limit (ulimit -n, hard %llu) allows at "
                 "most %ld",
                 wanted, (unsigned long long)rl.rlim_max, fit);
        return -1;
    }
    return wanted;
}

/* libmicrohttpd 0.9.75 races with itself when it quiesces a thread pool on
 * epoll: a worker that sees the quiesce flag may take the listen socket out
 * of its epoll set just before MHD_quiesce_daemon does, which then panics on
 * the failed removal (seen at SIGTERM in about 1 of 200 test servers). The
 * socket is out of the set either way, so that one panic is survivable; any
 * other aborts as libmicrohttpd's own handler would. */
static void on_mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    (void)cls;
    if (reason && strstr(reason, "Failed to remove listen FD from epoll set")) {
        log_info("libmicrohttpd: the listen socket had already left a worker's epoll set");
        return;
    }
    log_error("libmicrohttpd: fatal error at %s:%u: %s", file ? file : "?", line,
              reason ? reason : "");
    abort();
}

/* Binds and listens on --bind and --port here rather than in libmicrohttpd,
 * so that a failure names the system's reason ("Address already in use",
 * "Cannot assign requested address"), and so that an IPv6 socket is dual
 * stack: `--bind ::` serves IPv4 clients too, as users of the any-address
 * expect (Linux may default IPV6_V6ONLY to on, libmicrohttpd sets it on
 * unless told otherwise). Returns the socket, or -1 with the reason. */
static int listen_socket(const struct config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, cfg->bind, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->port);
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, cfg->bind, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof *sin6;
    } else {
        snprintf(err, errlen, "--bind %s: not an IPv4 or IPv6 address", cfg->bind);
        return -1;
    }
    int one = 1, off = 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->bind, cfg->port, strerror(e));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int http_serve(struct app *app, char *err, size_t errlen)
{
    MHD_set_panic_func(on_mhd_panic, NULL);
    const struct config *cfg = &app->cfg;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (strchr(cfg->bind, ':'))
        flags |= MHD_USE_DUAL_STACK;
    char *cert = NULL, *key = NULL;
    if (cfg->tls_cert) {
        if (!(cert = read_pem(cfg->tls_cert, err, errlen)) ||
            !(key = read_pem(cfg->tls_key, err, errlen))) {
            free(cert);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    int max_connections = connection_limit(cfg->max_connections, err, errlen);
    int fd = max_connections < 0 ? -1 : listen_socket(cfg, err, errlen);
    if (fd < 0) {
        free(cert);
        free(key);
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    int port = cfg->port;
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned int threads =
        cfg->threads > 0 ? (unsigned int)cfg->threads : (unsigned int)(ncpu > 0 ? ncpu : 2);

    /* Signals are taken by sigwait below. main() blocked them before its first
     * thread; blocking again keeps http_serve right for any other caller. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_OptionItem tls_opts[] = {
        {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert},
        {cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, key},
        {MHD_OPTION_END, 0, NULL},
    };
    events_start(app);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_access, app, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_POOL_BYTES, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, app, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!d) {
        /* libmicrohttpd has logged why. It closes the listen socket on some
         * of its failures and not on others: the socket is left to the exit
         * that follows rather than risk closing a descriptor twice. */
        snprintf(err, errlen, "cannot serve on %s port %d: libmicrohttpd did not start%s",
                 cfg->bind, port,
                 cert ? " (are --tls-cert and --tls-key a matching PEM pair?)" : "");
        free(cert);
        free(key);
        return -1;
    }
    app->port = port;
    app->tls = cert != NULL;
    timer.stop = 0;
    pthread_create(&timer.thread, NULL, timer_main, NULL);
    conntrack_start(cfg->request_timeout, app->tls);

    printf("authmock %s listening on %s://%s%s%s:%d (fixtures: %zu, scenarios: %zu, profile: %s)\n",
           AUTHMOCK_VERSION, cert ? "https" : "http", strchr(cfg->bind, ':') ? "[" : "", cfg->bind,
           strchr(cfg->bind, ':') ? "]" : "", port, fixtures_count(&app->fixtures),
           scenario_engine_count(app->engine),
           cfg->profile == PROFILE_SERVER ? "server" : "documented");
    fflush(stdout);
    if (app->on_listening)
        app->on_listening(app);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("received %s: draining in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");

    /* Stop accepting, let in-flight requests (delayed ones too) finish, then stop. */
    MHD_socket listen_fd = MHD_quiesce_daemon(d);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    events_stop(); /* the admin event streams end: they would never drain */
    double deadline = clock_monotonic() + 10.0;
    while (atomic_load(&inflight) > 0 && clock_monotonic() < deadline)
        usleep(5000);
    pthread_mutex_lock(&timer.lock);
    timer.stop = 1;
    pthread_cond_signal(&timer.cond);
    pthread_mutex_unlock(&timer.lock);
    pthread_join(timer.thread, NULL);
    conntrack_stop();
    MHD_stop_daemon(d);
    free(timer.items);
    timer.items = NULL;
    timer.n = timer.cap = 0;
    free(cert);
    free(key);
    return 0;
}

/*
 * http: the libmicrohttpd glue. It runs the daemon (epoll, thread pool),
 * accumulates request bodies length-delimited up to a cap (64 KiB, then 413),
 * hands each complete request to the router, and sends the reply: with extra
 * headers, after a delay (the connection is suspended, no thread sleeps), or
 * with a fault (connection dropped, body truncated). It also owns graceful
 * shutdown and the per-request log line.
 */
#ifndef AUTHMOCK_HTTP_H
#define AUTHMOCK_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#define HTTP_MAX_BODY    (64 * 1024)
#define HTTP_MAX_PARAMS  4
#define HTTP_MAX_HEADERS 16

struct app;
struct MHD_Connection;

/* A header, query argument or cookie of a request made without a
 * connection, as the fuzz targets make them in-process. */
enum http_field_kind { HTTP_FIELD_HEADER, HTTP_FIELD_QUERY, HTTP_FIELD_COOKIE };
struct http_field {
    enum http_field_kind kind;
    const char *name;
    const char *value;
};

struct http_request {
    struct MHD_Connection *conn; /* NULL: headers, query and cookies are in `fields` */
    const char *method;
    const char *path;
    const char *query; /* decoded "k=v&k=v", "" when none (logs show the raw one) */
    const char *body;  /* not NUL-terminated: use body_len */
    size_t body_len;
    const char *client_ip;
    const char *params[HTTP_MAX_PARAMS]; /* {name} segments of the matched route, decoded */
    size_t nparams;
    const struct http_field *fields; /* read only when conn is NULL */
    size_t nfields;
};

/* MALFORMED: the body was cut to two thirds (sent whole as that): for the journal. */
enum http_fault { FAULT_NONE, FAULT_DROP, FAULT_TRUNCATE, FAULT_MALFORMED };

struct http_response {
    int status;
    const char *content_type; /* static string */
    char *body;               /* malloc'd, owned */
    size_t body_len;
    /* Or a body shared with a cache, sent without a copy: release(release_cls)
     * is called once libmicrohttpd is done with it (or the reply is dropped). */
    const char *shared_body;
    void (*release)(void *cls);
    void *release_cls;
    /* Or a body of unknown length produced over time (the admin event
     * stream): see http_reply_stream. */
    ssize_t (*stream)(void *cls, uint64_t pos, char *buf, size_t max);
    void (*stream_free)(void *cls);
    void *stream_cls;
    /* The journal's stored form of the shared body (journal_body_form), kept
     * beside it and valid as long as it is; or NULL. */
    const char *journal_form;
    size_t journal_form_len;
    char *header_names[HTTP_MAX_HEADERS];
    char *header_values[HTTP_MAX_HEADERS];
    int nheaders;
    enum http_fault fault;
    long delay_ms;
    /* For the log line. */
    char log_path[128]; /* logged instead of the path when set (a path that holds a secret) */
    const char *api;
    char ns[64];
    char scenario[64];
    char state_from[64];
    char state_to[64];
    char user[128]; /* the API's user key, for the journal's user filter */
    /* A body member this request carries a secret in (an API key as mesh's
     * username): the journal masks it too. A static string. */
    const char *body_secret;
    /* The API module parsed the request body as JSON: the journal masks it
     * by a scan of its text instead of parsing it again. */
    int body_is_json;
    /* What the answer meant (succeeded, mfaRequired, limited, unbound...),
     * for the journal and the log line; set with http_set_outcome. */
    char outcome[32];
    /* The scenario engine's explanation of the answer, JSON text (malloc'd,
     * owned), built only when the journal is on. */
    char *match;
};

/* Look-ups ignore the case of `name`, as libmicrohttpd's do; the first match wins. */
const char *http_header(const struct http_request *r, const char *name);
const char *http_query_arg(const struct http_request *r, const char *name);
const char *http_cookie(const struct http_request *r, const char *name);
/* Whether the request's Accept-Encoding takes gzip (RFC 9110 12.5.3: "gzip"
 * or "x-gzip", else "*", with a q above 0). */
int http_accepts_gzip(const struct http_request *r);
/* `text` compressed as a gzip member (malloc'd, *out_len its length), or NULL. */
char *http_gzip(const char *text, size_t len, size_t *out_len);
/* Whether the request's Content-Type is one ASP.NET Core's JSON input
 * formatter reads: application/json, text/json or application/...+json. */
int http_json_content_type(const struct http_request *r);

/* Frees a calloc'd reply and everything it holds (releasing a shared body). */
void http_response_free(struct http_response *resp);

/* Sets the body to `tree` rendered (the tree stays the caller's). */
void http_reply_json(struct http_response *resp, int status, const char *content_type,
                     const cJSON *tree);
/* A JSON {"error": message} body with `status`: for admin and routing errors. */
void http_reply_error(struct http_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void http_reply_raw(struct http_response *resp, int status, const char *content_type,
                    const char *body, size_t len);
/* Answers with `body` as it is, without copying it: it must stay valid until
 * release(cls) is called. */
void http_reply_shared(struct http_response *resp, int status, const char *content_type,
                       const char *body, size_t len, void (*release)(void *cls), void *cls);
/* Answers with a body libmicrohttpd pulls from read(cls, pos, buf, max) as the
 * socket takes it, sent chunked: read returns the bytes written to buf, or 0
 * after suspending the connection (MHD_suspend_connection; whoever resumes it
 * makes read be called again), or -1 to end the body. free(cls) is called
 * once the body is done with, sent or not. */
void http_reply_stream(struct http_response *resp, int status, const char *content_type,
                       ssize_t (*read)(void *cls, uint64_t pos, char *buf, size_t max),
                       void (*free_cls)(void *cls), void *cls);
void http_add_header(struct http_response *resp, const char *name, const char *value);
/* Sets resp->outcome to `word` (letters, digits, '.', '-', '_'; others dropped). */
void http_set_outcome(struct http_response *resp, const char *word);
/* A scenario reply's "body" override with `status`: a string is sent as it is,
 * any other JSON value rendered. Returns 0 when the reply has no body. */
int http_reply_body_override(struct http_response *resp, int status, const cJSON *reply);
/* Applies the transport keys every scenario reply may carry, whatever the API:
 * "retryAfter" (Retry-After), "headers", "delayMs" and "fault". Call after the
 * body is set: "malformed" cuts it. */
void http_apply_reply_extras(struct http_response *resp, const cJSON *reply);

/* "http(s)://host" of the request, from the Host header (else the bound address). */
void http_base_url(const struct app *app, const struct http_request *r, char *out, size_t cap);

/* The X-Authmock-Namespace header into out ("" when absent). Returns -1 when
 * it is longer than cap - 1 bytes or has characters other than printable ASCII. */
int http_namespace(const struct http_request *r, char *out, size_t cap);

/* Starts serving, prints the listening line, blocks until SIGTERM/SIGINT,
 * drains in-flight requests and returns 0; or returns -1 with a message. */
int http_serve(struct app *app, char *err, size_t errlen);

#endif

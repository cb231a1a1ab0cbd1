/*
 * journal: an in-memory ring of the newest requests, bounded twice: at most
 * --journal-max entries and at most --journal-max-bytes bytes of stored
 * entries; the oldest go first.
 *
 * The entries' bytes live in one byte ring of --journal-max-bytes bytes,
 * mapped once at start, never in the malloc heap: entries written per request
 * and freed in bulk would otherwise be scattered among the server's small
 * long-lived records, and the heap could neither reuse nor return them whole.
 * An entry is one record (a fixed header, then its strings, each
 * NUL-terminated) appended at the tail; one that does not fit before the end
 * of the ring starts again at its beginning, and the unused end is charged
 * until the head passes it. The oldest records are evicted from the head
 * until the new one fits. A slot array, allocated once, holds each record's
 * id, offset and length, oldest first.
 *
 * Besides the request, an entry keeps the answer: the response's status,
 * headers and body, the outcome word and the engine's `match` explanation
 * (JSON text built by the API module). Headers and the response body are
 * masked here as the entry is written: a response body is masked by a scan of
 * its text (no tree is built, it is our own JSON), so journaling the answer
 * costs a copy rather than a parse.
 *
 * Nothing outside the lock points into the ring: readers copy the records
 * they select under the lock and render them after it. Clearing all swaps the
 * ring for a spare one of the same size, so the lock is held for a few
 * stores, and the old ring's pages are then handed back to the system with
 * MADV_DONTNEED; clearing one namespace packs the other records in place.
 */
#include "journal.h"
#include "app.h"
#include "clock.h"
#include "jsonutil.h"
#include "log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

/* The strings of a record, in the order they follow its header. */
enum {
    S_NS,
    S_API,
    S_METHOD,
    S_PATH,
    S_QUERY,
    S_SCENARIO,
    S_FROM,
    S_TO,
    S_USER,
    S_BODY,
    S_OUTCOME,
    S_REQ_HEADERS,  /* "Name:value\n" lines, masked */
    S_RESP_HEADERS, /* the same */
    S_RESP_BODY,
    S_MATCH, /* JSON text */
    S_FAULT,
    NSTR
};

/* The length of a string a record does not have (rendered as null). */
#define NO_STR UINT32_MAX
/* Records start on this boundary, so their headers can be read in place. */
#define REC_ALIGN 8

struct rec {
    long id;
    double at; /* mock clock */
    double latency_ms;
    size_t body_bytes; /* the request body's length as received */
    size_t resp_bytes; /* the response body's length as sent */
    long delay_ms;
    int status;
    unsigned char body_json;      /* the stored body is whole JSON text, rendered as JSON */
    unsigned char body_truncated; /* the stored body is the first JOURNAL_BODY_MAX bytes */
    unsigned char resp_json;      /* the same two of the response body */
    unsigned char resp_truncated;
    uint32_t len[NSTR]; /* each string's length, or NO_STR */
    /* then each present string and its NUL, in the order of len */
};

struct slot {
    long id;
    size_t off, len; /* the record's place in the ring */
};

struct journal {
    pthread_mutex_t lock;  /* the ring, the slots and next_id */
    pthread_mutex_t clear; /* taken first by a clear of all: it alone uses the spare ring */
    char *ring, *spare;    /* size bytes each, in one mapping */
    size_t size, mapped;   /* the bound, and the mapping's length (two rounded rings) */
    char *map;
    struct slot *slots; /* cap slots; the ring holds slots[(head + i) % cap], oldest first */
    size_t cap, head, count;
    long next_id;
    /* The spare ring's pages go back to the system on this thread, not in the
     * request that cleared the journal (madvise of 8 MiB took 2 ms). */
    pthread_t trimmer;
    int trimmer_started;
    pthread_cond_t trim_cond; /* with `clear` */
    int trim_pending, stopping;
    /* The event stream's listener (journal_listen), told each new id. */
    void (*_Atomic listener)(void *cls, long id);
    void *listener_cls;
};

/* Replaces a member by "***" through its pointer (not by name: a body may
 * carry the same key twice, and by name only the first would be masked). */
static void mask_member(cJSON *parent, cJSON *item)
{
    cJSON *masked = cJSON_CreateString("***");
    if (!masked)
        return;
    masked->string = item->string;
    masked->type |= item->type & cJSON_StringIsConst;
    item->string = NULL;
    cJSON_ReplaceItemViaPointer(parent, item, masked);
}

/* Whether the value of a secret-named member stays as it is: null and
 * booleans carry no secret, and neither do durations ("...Seconds") or
 * onlyoffice's statusCode, numbers whose names only look like secrets. */
static int value_kept(const char *name, size_t len, int is_bool, int is_null, int is_number)
{
    if (is_null || is_bool)
        return 1;
    if (!is_number)
        return 0;
    return (len >= 7 && strncasecmp(name + len - 7, "Seconds", 7) == 0) ||
           (len == 10 && strncmp(name, "statusCode", 10) == 0);
}

void journal_redact(cJSON *doc)
{
    /* The next pointer is taken first: replacing an item frees it. */
    for (cJSON *item = doc ? doc->child : NULL, *next; item; item = next) {
        next = item->next;
        if (item->string && log_is_secret_name(item->string, strlen(item->string)) &&
            !value_kept(item->string, strlen(item->string), cJSON_IsBool(item), cJSON_IsNull(item),
                        cJSON_IsNumber(item)))
            mask_member(doc, item);
        else if (cJSON_IsObject(item) || cJSON_IsArray(item))
            journal_redact(item);
    }
}

/* Drops the spare ring's pages after a clear of all; holds `clear` meanwhile,
 * so the spare is not swapped in again before it is empty. */
static void *trimmer_main(void *arg)
{
    struct journal *j = arg;
    pthread_mutex_lock(&j->clear);
    while (!j->stopping) {
        if (!j->trim_pending) {
            pthread_cond_wait(&j->trim_cond, &j->clear);
            continue;
        }
        madvise(j->spare, j->mapped / 2, MADV_DONTNEED);
        j->trim_pending = 0;
    }
    pthread_mutex_unlock(&j->clear);
    return NULL;
}

int journal_init(struct app *app)
{
    app->journal = NULL;
    if (app->cfg.journal_max <= 0 || app->cfg.journal_max_bytes <= 0)
        return 0; /* no journal */
    struct journal *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->size = (size_t)app->cfg.journal_max_bytes;
    /* No more records than headers fit in the ring can ever be held. */
    j->cap = (size_t)app->cfg.journal_max;
    if (j->cap > j->size / sizeof(struct rec) + 1)
        j->cap = j->size / sizeof(struct rec) + 1;
    long page = sysconf(_SC_PAGESIZE);
    size_t half = (j->size + (size_t)page - 1) / (size_t)page * (size_t)page;
    j->mapped = 2 * half;
    j->slots = calloc(j->cap, sizeof *j->slots);
    /* Pages are only backed once written, so an idle journal costs nothing. */
    j->map = j->slots ? mmap(NULL, j->mapped, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                      : MAP_FAILED;
    if (j->map == MAP_FAILED) {
        free(j->slots);
        free(j);
        return -1;
    }
    j->ring = j->map;
    j->spare = j->map + half;
    j->next_id = 1;
    pthread_mutex_init(&j->lock, NULL);
    pthread_mutex_init(&j->clear, NULL);
    pthread_cond_init(&j->trim_cond, NULL);
    j->trimmer_started = pthread_create(&j->trimmer, NULL, trimmer_main, j) == 0;
    app->journal = j;
    return 0;
}

void journal_free(struct app *app)
{
    struct journal *j = app->journal;
    if (!j)
        return;
    pthread_mutex_lock(&j->clear);
    j->stopping = 1;
    pthread_cond_signal(&j->trim_cond);
    pthread_mutex_unlock(&j->clear);
    if (j->trimmer_started)
        pthread_join(j->trimmer, NULL);
    pthread_cond_destroy(&j->trim_cond);
    munmap(j->map, j->mapped);
    free(j->slots);
    pthread_mutex_destroy(&j->clear);
    pthread_mutex_destroy(&j->lock);
    free(j);
    app->journal = NULL;
}

/* Cuts a stored text to JOURNAL_BODY_MAX bytes, back on the first byte of the
 * UTF-8 character the bound falls in. Returns the new length. */
static size_t cut_utf8(const char *text, size_t len)
{
    if (len <= JOURNAL_BODY_MAX)
        return len;
    size_t cut = JOURNAL_BODY_MAX;
    while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

static int is_delim(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ':' || c == '{' ||
           c == '}' || c == '[' || c == ']' || c == '"';
}

/* Where the JSON string starting at the quote at `i` ends (after its closing
 * quote), or len when it is not closed. */
static size_t string_end(const char *in, size_t len, size_t i)
{
    for (size_t j = i + 1; j < len;) {
        const char *q = memchr(in + j, '"', len - j);
        if (!q)
            return len;
        size_t at = (size_t)(q - in), bs = 0;
        while (at - bs > i + 1 && in[at - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return at + 1; /* not escaped */
        j = at + 1;
    }
    return len;
}

/* Where the object or array opening at `i` ends. */
static size_t value_end(const char *in, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = in[i];
        if (c == '"') {
            i = string_end(in, len, i);
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return len;
}

/* A path that held a secret (an onlyoffice code in /authentication/{code}),
 * and what the journal shows instead: a response that echoes the request's
 * URL (onlyoffice's links) shows the masked one. */
struct mask_path {
    const char *raw, *masked;
    size_t raw_len;
};

/* Copies a JSON string token; in a URL, the values of query parameters with
 * secret-looking names (an onlyoffice confirmUrl's key) become ***, and a
 * path that held a secret is replaced by its masked form. */
static void put_string_token(struct buf *out, const char *s, size_t n, const struct mask_path *mp)
{
    const char *hit = mp->raw_len && n > mp->raw_len ? memmem(s, n, mp->raw, mp->raw_len) : NULL;
    if (hit) {
        struct buf t = {0};
        buf_append(&t, s, (size_t)(hit - s));
        buf_append(&t, mp->masked, strlen(mp->masked));
        buf_append(&t, hit + mp->raw_len, n - (size_t)(hit - s) - mp->raw_len);
        if (t.data)
            put_string_token(out, t.data, t.len, &(struct mask_path){NULL, NULL, 0});
        buf_free(&t);
        return;
    }
    const char *q = memchr(s, '?', n);
    if (!q || !memmem(s, (size_t)(q - s), "://", 3)) {
        buf_append(out, s, n);
        return;
    }
    const char *end = s + n - (s[n - 1] == '"' && n > 1 ? 1 : 0);
    buf_append(out, s, (size_t)(q + 1 - s));
    for (const char *p = q + 1; p < end;) {
        const char *stop = p;
        while (stop < end && *stop != '&' && *stop != '#')
            stop++;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq && log_is_secret_name(p, (size_t)(eq - p))) {
            buf_append(out, p, (size_t)(eq + 1 - p));
            buf_append(out, "***", 3);
        } else {
            buf_append(out, p, (size_t)(stop - p));
        }
        p = stop;
        if (p < end && *p == '#') {
            buf_append(out, p, (size_t)(end - p));
            break;
        }
        if (p < end) {
            buf_append(out, "&", 1);
            p++;
        }
    }
    buf_append(out, end, (size_t)(s + n - end));
}

/* Whether a string token is copied other than as it is: a URL with a query,
 * or one holding a path that held a secret. */
static int string_rewritten(const char *s, size_t n, const struct mask_path *mp)
{
    const char *q = memchr(s, '?', n);
    return (q && memmem(s, (size_t)(q - s), "://", 3)) ||
           (mp->raw_len && n > mp->raw_len && memmem(s, n, mp->raw, mp->raw_len));
}

/* Copies JSON text with the value of every secret-looking member replaced by
 * "***" (as journal_redact does to a tree), scanning the text rather than
 * parsing it: the response bodies masked here are the server's own JSON, and
 * the scan costs little more than a copy (runs of text are copied whole, only
 * masked values are written apart). It copies what it cannot read as JSON as
 * it is (a body cut by a fault), and stops once more than JOURNAL_BODY_MAX
 * bytes are written. *whole says whether the text was one complete JSON value. */
/* Whether the member name token in[0..n) (without its quotes) names a
 * secret; `extra` is one more, for top-level members, in any letter case. A
 * name with escapes is read decoded, as a JSON binder would ("pass\u0077ord"
 * is a password). */
static int key_is_secret(const char *k, size_t n, const char *extra, int depth)
{
    if (memchr(k, '\\', n)) {
        cJSON *decoded = cJSON_ParseWithLength(k - 1, n + 2);
        int secret =
            !cJSON_IsString(decoded) ||
            key_is_secret(decoded->valuestring, strlen(decoded->valuestring), extra, depth);
        cJSON_Delete(decoded);
        return secret;
    }
    return log_is_secret_name(k, n) ||
           (extra && depth == 1 && strlen(extra) == n && strncasecmp(k, extra, n) == 0);
}

static void mask_json_text(const char *in, size_t len, const struct mask_path *mp,
                           const char *extra, struct buf *out, int *whole)
{
    enum { MAX_DEPTH = 64 };
    char stack[MAX_DEPTH];
    int depth = 0, values = 0, bad = 0, expect_key = 0, secret = 0;
    const char *key = NULL; /* the secret member's name, as written */
    size_t key_len = 0, i = 0, from = 0, start = out->len;
    /* in[from..i) is copied but not yet written out. */
    while (i < len && out->len - start + (i - from) <= JOURNAL_BODY_MAX) {
        char c = in[i];
        if (c == '"') {
            size_t end = string_end(in, len, i);
            bad |= in[end - 1] != '"' || end == i + 1;
            if (expect_key) {
                size_t n = end - i > 2 ? end - i - 2 : 0;
                secret = key_is_secret(in + i + 1, n, extra, depth);
                key = in + i + 1;
                key_len = n;
                expect_key = 0;
            } else {
                if (secret || string_rewritten(in + i, end - i, mp)) {
                    buf_append(out, in + from, i - from);
                    if (secret)
                        buf_append(out, "\"***\"", 5);
                    else
                        put_string_token(out, in + i, end - i, mp);
                    from = end;
                }
                secret = 0;
                values += depth == 0;
            }
            i = end;
        } else if (c == '{' || c == '[') {
            if (secret) {
                buf_append(out, in + from, i - from);
                i = from = value_end(in, len, i);
                buf_append(out, "\"***\"", 5);
                secret = 0;
                values += depth == 0;
                continue;
            }
            if (depth < MAX_DEPTH)
                stack[depth] = c;
            depth++;
            expect_key = c == '{';
            i++;
        } else if (c == '}' || c == ']') {
            bad |= depth == 0;
            depth -= depth > 0;
            expect_key = secret = 0;
            values += depth == 0;
            i++;
        } else if (c == ',') {
            expect_key = depth > 0 && depth <= MAX_DEPTH && stack[depth - 1] == '{';
            secret = 0;
            i++;
        } else if (c == ':' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else {
            /* A number or literal (or text that is not JSON) up to the next delimiter. */
            size_t j = i;
            while (j < len && !is_delim(in[j]))
                j++;
            if (secret) {
                int lit_null = j - i == 4 && memcmp(in + i, "null", 4) == 0;
                int lit_bool = (j - i == 4 && memcmp(in + i, "true", 4) == 0) ||
                               (j - i == 5 && memcmp(in + i, "false", 5) == 0);
                if (!value_kept(key, key_len, lit_bool, lit_null, !lit_null && !lit_bool)) {
                    buf_append(out, in + from, i - from);
                    buf_append(out, "\"***\"", 5);
                    from = j;
                }
            }
            secret = 0;
            values += depth == 0;
            i = j;
        }
    }
    buf_append(out, in + from, i - from);
    *whole = i >= len && depth == 0 && values == 1 && !bad;
}

/* The stored form of a response body, or of a request body the API module
 * already parsed as JSON: masked, cut like request bodies. */
static void stored_response(const char *body, size_t len, const struct mask_path *mp,
                            const char *extra, struct buf *out, size_t *off, size_t *slen,
                            int *json, int *truncated)
{
    *off = out->len;
    *json = *truncated = 0;
    int whole = 0;
    mask_json_text(body, len, mp, extra, out, &whole);
    *slen = cut_utf8(out->data + *off, out->len - *off);
    *truncated = *slen < out->len - *off || (!whole && out->len - *off > JOURNAL_BODY_MAX);
    *json = whole && !*truncated;
    out->len = *off + *slen;
    buf_append(out, "", 1); /* each part keeps its NUL, for the parse at rendering */
}

char *journal_body_form(const char *body, size_t len, size_t *form_len)
{
    struct buf b = {0};
    size_t off, slen;
    int json, truncated;
    struct mask_path none = {NULL, NULL, 0};
    buf_append(&b, "0", 1);
    stored_response(body, len, &none, NULL, &b, &off, &slen, &json, &truncated);
    if (!b.data)
        return NULL;
    b.data[0] = (char)('0' + json + 2 * truncated);
    *form_len = b.len; /* the flag, the text and its NUL */
    return b.data;
}

/* Headers are stored as "Name:value\n" lines, masked (a header name has no
 * ':' and a value no line break), and become JSON only when read: the
 * request path pays for a copy, not for escaping. A secret value is "***";
 * a Set-Cookie keeps its cookie's name and attributes, only the value is
 * masked. */
static void put_headers(struct buf *out, const char *const *names, const char *const *values,
                        size_t n, int response)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i], *value = values[i];
        size_t nl = name ? strlen(name) : 0, vl = value ? strlen(value) : 0;
        if (!nl || !value || memchr(name, ':', nl) || memchr(name, '\n', nl) ||
            memchr(value, '\n', vl) || buf_reserve(out, nl + vl + 8))
            continue;
        char *w = out->data + out->len;
        memcpy(w, name, nl);
        w[nl] = ':';
        w += nl + 1;
        const char *eq;
        if (response && nl == 10 && strcasecmp(name, "Set-Cookie") == 0 &&
            !((eq = strchr(value, '=')) && eq[1] && eq[1] != ';')) {
            memcpy(w, value, vl); /* a cookie cleared, or no value: nothing to hide */
            w += vl;
        } else if (response && nl == 10 && strcasecmp(name, "Set-Cookie") == 0) {
            const char *semi = strchr(eq, ';');
            size_t keep = (size_t)(eq + 1 - value), rest = semi ? strlen(semi) : 0;
            memcpy(w, value, keep);
            memcpy(w + keep, "***", 3);
            memcpy(w + keep + 3, semi ? semi : "", rest);
            w += keep + 3 + rest;
        } else if (log_is_secret_header(name)) {
            memcpy(w, "***", 3);
            w += 3;
        } else {
            memcpy(w, value, vl);
            w += vl;
        }
        *w++ = '\n';
        out->len = (size_t)(w - out->data);
    }
    buf_append(out, "", 1); /* each part keeps its NUL */
}

/* The stored header lines as a JSON object; a name that repeats (Set-Cookie)
 * maps to an array of its values, in order. */
static cJSON *headers_json(const char *lines)
{
    cJSON *o = cJSON_CreateObject();
    for (const char *p = lines; p && *p;) {
        const char *colon = strchr(p, ':'), *nl = strchr(p, '\n');
        if (!colon || !nl || colon > nl)
            break;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(colon - p), p);
        char *text = strndup(colon + 1, (size_t)(nl - colon - 1));
        cJSON *v = cJSON_CreateString(text ? text : "");
        free(text);
        cJSON *had = NULL;
        for (cJSON *c = o->child; c; c = c->next)
            if (strcasecmp(c->string, name) == 0)
                had = c;
        if (!had) {
            cJSON_AddItemToObject(o, name, v);
        } else if (cJSON_IsArray(had)) {
            cJSON_AddItemToArray(had, v);
        } else {
            cJSON *arr = cJSON_CreateArray();
            cJSON_AddItemToArray(arr, cJSON_Duplicate(had, 1));
            cJSON_AddItemToArray(arr, v);
            char first[256];
            snprintf(first, sizeof first, "%s", had->string);
            cJSON_ReplaceItemInObjectCaseSensitive(o, first, arr);
        }
        p = nl + 1;
    }
    return o;
}

/* The stored form of a body: redacted JSON cut to JOURNAL_BODY_MAX bytes on a
 * UTF-8 boundary, or a note of its size. Secrets are masked before the cut, so
 * the cut never exposes a secret a whole body would have hidden. Returns the
 * text (malloc'd, or `note` itself) and its length in *len. */
static char *stored_body(const char *body, size_t blen, const char *secret, char note[64],
                         size_t *len, int *json, int *truncated)
{
    size_t off;
    cJSON *doc = json_parse(body, blen, &off);
    *json = 0;
    *truncated = 0;
    if (!doc) {
        int n = snprintf(note, 64, "(%zu bytes that are not JSON)", blen);
        *len = n > 0 ? (size_t)n : 0;
        return note;
    }
    journal_redact(doc);
    /* A top-level member the API says is a secret for this request (an API key
     * sent as mesh's username), under any letter case, as the API binds it. */
    for (cJSON *item = secret && cJSON_IsObject(doc) ? doc->child : NULL, *next; item;
         item = next) {
        next = item->next;
        if (item->string && strcasecmp(item->string, secret) == 0 && !cJSON_IsNull(item))
            mask_member(doc, item);
    }
    char *out = json_render(doc, len);
    cJSON_Delete(doc);
    if (!out) {
        *len = 0;
        return NULL;
    }
    if (*len > JOURNAL_BODY_MAX) {
        *len = cut_utf8(out, *len);
        *truncated = 1;
    } else {
        *json = 1;
    }
    return out;
}

/* Where a record of len bytes goes, evicting the oldest records until it
 * fits. The live records run from the head's offset to the tail (the end of
 * the newest); when the tail has wrapped below the head, the free space is
 * between them, otherwise it is after the tail and before the head. Call with
 * the lock; len is at most the ring's size. */
static size_t make_room(struct journal *j, size_t len)
{
    for (;;) {
        if (!j->count) {
            j->head = 0;
            return 0;
        }
        if (j->count < j->cap) {
            size_t head = j->slots[j->head].off;
            const struct slot *newest = &j->slots[(j->head + j->count - 1) % j->cap];
            size_t tail = newest->off + newest->len;
            if (tail > head) { /* not wrapped */
                if (tail + len <= j->size)
                    return tail;
                if (len <= head)
                    return 0; /* wraps: the end after tail stays unused */
            } else if (tail + len <= head) {
                return tail;
            }
        }
        j->head = (j->head + 1) % j->cap;
        j->count--;
    }
}

/* Copies a record's strings after its header and NUL-terminates each. */
static void put_strings(char *dst, const struct rec *h, const char *const src[NSTR])
{
    for (int i = 0; i < NSTR; i++) {
        if (h->len[i] == NO_STR)
            continue;
        memcpy(dst, src[i], h->len[i]);
        dst[h->len[i]] = '\0';
        dst += h->len[i] + 1;
    }
}

void journal_record(struct app *app, const struct journal_entry *e)
{
    struct journal *j = app->journal;
    if (!j)
        return;
    /* Everything but the copy into the ring is done before the lock. */
    char note[64];
    size_t blen = 0;
    int json = 0, truncated = 0;
    /* The scanned request body and the answer's parts, each NUL-terminated, in one buffer. */
    struct buf parts = {0};
    size_t req_b = 0, req_h, resp_h, resp_b = 0, resp_len = 0;
    int resp_json = 0, resp_truncated = 0;
    buf_reserve(&parts,
                1024 + (e->resp_body_len < JOURNAL_BODY_MAX ? e->resp_body_len : JOURNAL_BODY_MAX));
    struct mask_path mp = {e->secret_path, e->path, e->secret_path ? strlen(e->secret_path) : 0};
    struct mask_path none = {NULL, NULL, 0};
    /* A body the API module parsed as JSON is masked by a scan of its text,
     * when it is kept whole; any other (and a long one, so that what is cut
     * is the canonical text) is parsed here, and only a JSON one is kept. */
    int scanned = e->body_len && e->body_is_json && e->body_len <= JOURNAL_BODY_MAX;
    if (scanned) {
        stored_response(e->body, e->body_len, &none, e->body_secret, &parts, &req_b, &blen, &json,
                        &truncated);
        scanned = !truncated;
        if (!scanned)
            parts.len = req_b;
    }
    char *body = e->body_len && !scanned ? stored_body(e->body, e->body_len, e->body_secret, note,
                                                       &blen, &json, &truncated)
                                         : NULL;
    req_h = parts.len;
    put_headers(&parts, e->req_header_names, e->req_header_values, e->nreq_headers, 0);
    resp_h = parts.len;
    put_headers(&parts, e->resp_header_names, e->resp_header_values, e->nresp_headers, 1);
    if (e->resp_body_form && e->resp_body_form_len >= 2) {
        /* Kept beside an answer sent unchanged: "flags text NUL". */
        resp_b = parts.len;
        resp_len = e->resp_body_form_len - 2;
        buf_append(&parts, e->resp_body_form + 1, resp_len + 1);
        resp_json = (e->resp_body_form[0] - '0') & 1;
        resp_truncated = ((e->resp_body_form[0] - '0') & 2) != 0;
    } else if (e->resp_body_len) {
        stored_response(e->resp_body, e->resp_body_len, &mp, NULL, &parts, &resp_b, &resp_len,
                        &resp_json, &resp_truncated);
    }
    int have_parts = parts.data != NULL;
    if (scanned)
        body = have_parts ? parts.data + req_b : NULL;
    const char *src[NSTR] = {[S_NS] = e->ns ? e->ns : "",
                             [S_API] = e->api ? e->api : "",
                             [S_METHOD] = e->method,
                             [S_PATH] = e->path,
                             [S_QUERY] = e->query ? e->query : "",
                             [S_SCENARIO] = e->scenario,
                             [S_FROM] = e->state_from,
                             [S_TO] = e->state_to,
                             [S_USER] = e->user,
                             [S_BODY] = body,
                             [S_OUTCOME] = e->outcome,
                             [S_REQ_HEADERS] = have_parts ? parts.data + req_h : NULL,
                             [S_RESP_HEADERS] = have_parts ? parts.data + resp_h : NULL,
                             [S_RESP_BODY] =
                                 have_parts && e->resp_body_len ? parts.data + resp_b : NULL,
                             [S_MATCH] = e->match,
                             [S_FAULT] = e->fault};
    struct rec h = {.at = e->at,
                    .latency_ms = e->latency_ms,
                    .body_bytes = e->body_len,
                    .status = e->status,
                    .body_json = (unsigned char)json,
                    .body_truncated = (unsigned char)truncated,
                    .resp_bytes = e->resp_body_len,
                    .delay_ms = e->delay_ms,
                    .resp_json = (unsigned char)resp_json,
                    .resp_truncated = (unsigned char)resp_truncated};
    size_t len = sizeof h;
    for (int i = 0; i < NSTR; i++) {
        size_t n = i == S_BODY ? blen : i == S_RESP_BODY ? resp_len : src[i] ? strlen(src[i]) : 0;
        h.len[i] = src[i] && n < NO_STR ? (uint32_t)n : NO_STR;
        len += h.len[i] == NO_STR ? 0 : n + 1;
    }
    len = (len + REC_ALIGN - 1) / REC_ALIGN * REC_ALIGN;
    /* One that could never fit would empty the journal for nothing. */
    if (len <= j->size) {
        pthread_mutex_lock(&j->lock);
        size_t off = make_room(j, len);
        h.id = j->next_id++;
        memcpy(j->ring + off, &h, sizeof h);
        put_strings(j->ring + off + sizeof h, &h, src);
        j->slots[(j->head + j->count) % j->cap] = (struct slot){h.id, off, len};
        j->count++;
        pthread_mutex_unlock(&j->lock);
        void (*listener)(void *, long) = j->listener;
        if (listener)
            listener(j->listener_cls, h.id);
    }
    if (body != note && !scanned)
        free(body);
    buf_free(&parts);
}

void journal_listen(struct app *app, void (*fn)(void *cls, long id), void *cls)
{
    struct journal *j = app->journal;
    if (!j)
        return;
    j->listener_cls = cls;
    j->listener = fn;
}

/* A record's strings, pointing into the record. */
static void strings_of(const struct rec *h, const char *s[NSTR])
{
    const char *p = (const char *)(h + 1);
    for (int i = 0; i < NSTR; i++) {
        s[i] = h->len[i] == NO_STR ? NULL : p;
        p += h->len[i] == NO_STR ? 0 : h->len[i] + 1;
    }
}

static int str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* The filter of GET /__admin/requests: every given criterion must hold; a path
 * ending in '*' matches by prefix. An entry without a user never matches a
 * user filter. */
static int matches(const struct rec *h, const struct journal_filter *f, size_t path_prefix)
{
    if (f->before > 0 && h->id >= f->before)
        return 0;
    if (f->after > 0 && h->id <= f->after)
        return 0;
    if (f->since >= 0 && !(h->at >= f->since))
        return 0;
    if (f->status > 0 && h->status != f->status)
        return 0;
    const char *s[NSTR];
    strings_of(h, s);
    if (f->ns && !str_eq(s[S_NS], f->ns))
        return 0;
    if (f->api && !str_eq(s[S_API], f->api))
        return 0;
    if (f->path && !str_eq(s[S_PATH], f->path) &&
        !(path_prefix != (size_t)-1 && s[S_PATH] && strncmp(s[S_PATH], f->path, path_prefix) == 0))
        return 0;
    if (f->user && !str_eq(s[S_USER], f->user))
        return 0;
    if (f->method && !str_eq(s[S_METHOD], f->method))
        return 0;
    return 1;
}

/* The length of the prefix a path filter asks for, or (size_t)-1 for an exact match. */
static size_t prefix_of(const struct journal_filter *f)
{
    size_t n = f->path ? strlen(f->path) : 0;
    return n && f->path[n - 1] == '*' ? n - 1 : (size_t)-1;
}

static const struct rec *rec_at(const struct journal *j, size_t i)
{
    return (const struct rec *)(j->ring + j->slots[(j->head + i) % j->cap].off);
}

/* A stored body (request or response) as the entry's body, bodyBytes and
 * bodyTruncated: parsed back when it was whole JSON, else text or null. */
static void add_body(cJSON *obj, const char *text, size_t len, int json, size_t bytes,
                     int truncated)
{
    size_t off;
    cJSON *parsed = json && text ? json_parse(text, len, &off) : NULL;
    if (parsed)
        cJSON_AddItemToObject(obj, "body", parsed);
    else
        json_add_str_or_null(obj, "body", text);
    cJSON_AddNumberToObject(obj, "bodyBytes", (double)bytes);
    cJSON_AddBoolToObject(obj, "bodyTruncated", truncated);
}

static cJSON *entry_json(const struct rec *h)
{
    const char *s[NSTR];
    strings_of(h, s);
    cJSON *e = cJSON_CreateObject();
    char when[32];
    cJSON_AddNumberToObject(e, "id", (double)h->id);
    clock_format(h->at, when);
    cJSON_AddStringToObject(e, "time", when);
    cJSON_AddStringToObject(e, "namespace", s[S_NS] ? s[S_NS] : ""); /* "": the default one */
    json_add_str_or_null(e, "api", s[S_API]);
    json_add_str_or_null(e, "method", s[S_METHOD]);
    json_add_str_or_null(e, "path", s[S_PATH]);
    json_add_str_or_null(e, "query", s[S_QUERY]);
    cJSON_AddNumberToObject(e, "status", h->status);
    cJSON_AddNumberToObject(e, "latencyMs", h->latency_ms);
    json_add_str_or_null(e, "scenario", s[S_SCENARIO]);
    json_add_str_or_null(e, "stateFrom", s[S_FROM]);
    json_add_str_or_null(e, "stateTo", s[S_TO]);
    json_add_str_or_null(e, "user", s[S_USER]);
    add_body(e, s[S_BODY], h->len[S_BODY], h->body_json, h->body_bytes, h->body_truncated);
    json_add_str_or_null(e, "outcome", s[S_OUTCOME]);
    /* The match is JSON text the engine wrote: it goes out as it is. */
    cJSON_AddItemToObject(e, "requestHeaders", headers_json(s[S_REQ_HEADERS]));
    cJSON *r = cJSON_AddObjectToObject(e, "response");
    cJSON_AddNumberToObject(r, "status", h->status);
    cJSON_AddItemToObject(r, "headers", headers_json(s[S_RESP_HEADERS]));
    add_body(r, s[S_RESP_BODY], h->len[S_RESP_BODY], h->resp_json, h->resp_bytes,
             h->resp_truncated);
    json_add_str_or_null(r, "fault", s[S_FAULT]);
    cJSON_AddNumberToObject(r, "delayMs", (double)h->delay_ms);
    cJSON_AddItemToObject(e, "match",
                          s[S_MATCH] ? cJSON_CreateRaw(s[S_MATCH]) : cJSON_CreateNull());
    return e;
}

cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before)
{
    struct journal *j = app->journal;
    cJSON *list = cJSON_CreateArray();
    *next_before = 0;
    if (!j || f->limit <= 0)
        return list;
    size_t *lens = malloc((size_t)f->limit * sizeof *lens);
    if (!lens)
        return list;
    /* The matching records are copied out under the lock and rendered after it.
     * A first pass only measures them: the buffer is allocated and its pages
     * touched outside the lock, since faulting in megabytes of fresh pages would
     * hold up every request for milliseconds. The journal may change in
     * between, so the copying pass selects again, and measures again should the
     * selection have grown. */
    size_t prefix = prefix_of(f), n = 0, have = 0;
    char *copy = NULL;
    for (;;) {
        size_t total = 0;
        n = 0;
        pthread_mutex_lock(&j->lock);
        for (size_t i = j->count; i-- > 0 && n < (size_t)f->limit;) {
            const struct slot *s = &j->slots[(j->head + i) % j->cap];
            if (f->after > 0 && s->id <= f->after)
                break; /* ids only grow toward the tail: the rest are older */
            if (!matches((const struct rec *)(j->ring + s->off), f, prefix))
                continue;
            if (total + s->len <= have)
                memcpy(copy + total, j->ring + s->off, s->len);
            lens[n++] = s->len;
            total += s->len;
        }
        pthread_mutex_unlock(&j->lock);
        if (total <= have)
            break;
        size_t want = have ? 2 * total : total;
        free(copy);
        copy = malloc(want);
        if (!copy) {
            n = 0;
            break;
        }
        for (size_t at = 0; at < want; at += 4096)
            copy[at] = 0;
        have = want;
    }
    /* Lengths are multiples of REC_ALIGN, so each copied header stays aligned. */
    const char *p = copy;
    for (size_t k = 0; k < n; k++) {
        const struct rec *h = (const struct rec *)p;
        cJSON_AddItemToArray(list, entry_json(h));
        if (k + 1 == n && n == (size_t)f->limit)
            *next_before = h->id;
        p += lens[k];
    }
    free(copy);
    free(lens);
    return list;
}

long journal_count(struct app *app, const struct journal_filter *f)
{
    struct journal *j = app->journal;
    if (!j)
        return 0;
    size_t prefix = prefix_of(f);
    long n = 0;
    pthread_mutex_lock(&j->lock);
    for (size_t i = 0; i < j->count; i++)
        n += matches(rec_at(j, i), f, prefix);
    pthread_mutex_unlock(&j->lock);
    return n;
}

cJSON *journal_get(struct app *app, long id)
{
    struct journal *j = app->journal;
    if (!j || id <= 0)
        return NULL;
    char *copy = NULL;
    /* Ids grow from the head to the tail: a binary search finds the slot. The
     * record is copied under the lock (a few KiB at most) and rendered after. */
    pthread_mutex_lock(&j->lock);
    size_t lo = 0, hi = j->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        long at = j->slots[(j->head + mid) % j->cap].id;
        if (at == id) {
            const struct slot *sl = &j->slots[(j->head + mid) % j->cap];
            copy = malloc(sl->len);
            if (copy)
                memcpy(copy, j->ring + sl->off, sl->len);
            break;
        }
        if (at < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    pthread_mutex_unlock(&j->lock);
    if (!copy)
        return NULL;
    cJSON *e = entry_json((const struct rec *)copy);
    free(copy);
    return e;
}

/* Takes one namespace's records out, packing the others toward the head in
 * place, oldest first, by the rule records are appended with (wrapping to the
 * start when one does not fit before the end). A kept record never moves
 * forward in ring order: where it lands is at most where it was, so it
 * overwrites only space already vacated or its own old bytes (memmove), and
 * the ring's pages, already present, take no faults under the lock. Call
 * with the lock. */
static void compact_without(struct journal *j, const char *ns)
{
    size_t kept = 0, cursor = j->count ? j->slots[j->head].off : 0;
    for (size_t i = 0; i < j->count; i++) {
        struct slot s = j->slots[(j->head + i) % j->cap];
        const char *strs[NSTR];
        strings_of((const struct rec *)(j->ring + s.off), strs);
        if (str_eq(strs[S_NS], ns))
            continue;
        size_t dst = cursor + s.len <= j->size ? cursor : 0;
        if (dst != s.off)
            memmove(j->ring + dst, j->ring + s.off, s.len);
        j->slots[(j->head + kept++) % j->cap] = (struct slot){s.id, dst, s.len};
        cursor = dst + s.len;
    }
    j->count = kept;
}

/* Forgets one namespace's entries by compacting the ring, or every entry by
 * swapping in the spare ring, empty, so the lock is held for a few stores;
 * the old ring's pages are then handed back to the system. */
static int forget(struct journal *j, const char *ns)
{
    if (ns) {
        pthread_mutex_lock(&j->lock);
        compact_without(j, ns);
        pthread_mutex_unlock(&j->lock);
        return 0;
    }
    pthread_mutex_lock(&j->clear);
    pthread_mutex_lock(&j->lock);
    char *old = j->ring;
    j->count = 0;
    j->ring = j->spare;
    j->spare = old;
    pthread_mutex_unlock(&j->lock);
    /* The trimmer drops the old ring's pages (now the spare) behind this call;
     * without one, it is done here. */
    if (j->trimmer_started) {
        j->trim_pending = 1;
        pthread_cond_signal(&j->trim_cond);
    } else {
        madvise(old, j->mapped / 2, MADV_DONTNEED);
    }
    pthread_mutex_unlock(&j->clear);
    return 0;
}

int journal_clear(struct app *app, const char *ns)
{
    return app->journal ? forget(app->journal, ns) : 0;
}

void journal_reset(struct app *app, const char *ns)
{
    journal_clear(app, ns);
}

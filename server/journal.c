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
enum { S_NS, S_API, S_METHOD, S_PATH, S_QUERY, S_SCENARIO, S_FROM, S_TO, S_USER, S_BODY, NSTR };

/* The length of a string a record does not have (rendered as null). */
#define NO_STR UINT32_MAX
/* Records start on this boundary, so their headers can be read in place. */
#define REC_ALIGN 8

struct rec {
    long id;
    double at; /* mock clock */
    double latency_ms;
    size_t body_bytes; /* the request body's length as received */
    int status;
    unsigned char body_json;      /* the stored body is whole JSON text, rendered as JSON */
    unsigned char body_truncated; /* the stored body is the first JOURNAL_BODY_MAX bytes */
    uint32_t len[NSTR];           /* each string's length, or NO_STR */
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

void journal_redact(cJSON *doc)
{
    /* The next pointer is taken first: replacing an item frees it. */
    for (cJSON *item = doc ? doc->child : NULL, *next; item; item = next) {
        next = item->next;
        if (item->string && log_is_secret_name(item->string, strlen(item->string)) &&
            !cJSON_IsNull(item))
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
        size_t cut = JOURNAL_BODY_MAX;
        /* Back off to the first byte of the character the limit falls in. */
        while (cut > 0 && ((unsigned char)out[cut] & 0xC0) == 0x80)
            cut--;
        *len = cut;
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
    char *body = e->body_len ? stored_body(e->body, e->body_len, e->body_secret, note, &blen, &json,
                                           &truncated)
                             : NULL;
    const char *src[NSTR] = {[S_NS] = e->ns ? e->ns : "",
                             [S_API] = e->api ? e->api : "",
                             [S_METHOD] = e->method,
                             [S_PATH] = e->path,
                             [S_QUERY] = e->query ? e->query : "",
                             [S_SCENARIO] = e->scenario,
                             [S_FROM] = e->state_from,
                             [S_TO] = e->state_to,
                             [S_USER] = e->user,
                             [S_BODY] = body};
    struct rec h = {.at = e->at,
                    .latency_ms = e->latency_ms,
                    .body_bytes = e->body_len,
                    .status = e->status,
                    .body_json = (unsigned char)json,
                    .body_truncated = (unsigned char)truncated};
    size_t len = sizeof h;
    for (int i = 0; i < NSTR; i++) {
        size_t n = i == S_BODY ? blen : src[i] ? strlen(src[i]) : 0;
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
    if (body != note)
        free(body);
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
    size_t off;
    cJSON *parsed = h->body_json && s[S_BODY] ? json_parse(s[S_BODY], h->len[S_BODY], &off) : NULL;
    if (parsed)
        cJSON_AddItemToObject(e, "body", parsed);
    else
        json_add_str_or_null(e, "body", s[S_BODY]);
    cJSON_AddNumberToObject(e, "bodyBytes", (double)h->body_bytes);
    cJSON_AddBoolToObject(e, "bodyTruncated", h->body_truncated);
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

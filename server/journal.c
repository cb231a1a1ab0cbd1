/*
 * journal: an in-memory ring of the newest requests, bounded twice: at most
 * --journal-max entries (a slot array allocated once at start) and at most
 * --journal-max-bytes bytes of stored entries; the oldest go first. Each
 * entry is one allocation holding all its strings, built and redacted before
 * the lock is taken, so the critical section only moves pointers. Entries are
 * reference counted: the ring holds one reference and a reader listing the
 * journal takes one per entry it renders, so an entry evicted while it is
 * being rendered is freed by whoever lets go of it last, outside the lock.
 */
#include "journal.h"
#include "app.h"
#include "clock.h"
#include "jsonutil.h"
#include "log.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hands freed heap memory back to the system. Not under AddressSanitizer,
 * whose allocator is not glibc's: there malloc_trim walks arenas it does not
 * own, and crashed. */
static void trim_heap(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    malloc_trim(0);
#endif
}

/* What a stored entry costs besides its own struct and strings: malloc's
 * header and rounding, charged so the byte bound tracks real memory. */
#define ENTRY_OVERHEAD 32

struct jentry {
    struct jentry *next; /* links evicted entries waiting to be released */
    atomic_int refs;
    long id;
    double at;
    double latency_ms;
    int status;
    int body_json;      /* the stored body is whole JSON text, rendered as JSON */
    int body_truncated; /* the stored body is the first JOURNAL_BODY_MAX bytes */
    size_t body_bytes;  /* the request body's length as received */
    size_t bytes;       /* what this entry counts against --journal-max-bytes */
    const char *ns, *api, *method, *path, *query, *scenario, *state_from, *state_to, *user, *body;
    char text[]; /* the strings above, each NUL-terminated */
};

/* What a clear took out of the journal, for the reaper to free. */
struct batch {
    struct batch *next;
    struct jentry **slots; /* a whole slot array swapped out, or NULL */
    size_t head, count;
    struct jentry *chain; /* entries taken out one by one */
};

struct journal {
    pthread_mutex_t lock;
    struct jentry **slots; /* cap pointers; the ring is slots[(head + i) % cap], oldest first */
    size_t cap, head, count;
    size_t bytes, max_bytes;
    long next_id;
    /* Freeing a full journal and handing the memory back to the system takes
     * tens of milliseconds, so a clear leaves it to this thread and answers at
     * once. */
    pthread_t reaper;
    pthread_cond_t wake;
    struct batch *pending;
    int stopping;
};

void journal_redact(cJSON *doc)
{
    /* The next pointer is taken first: replacing an item frees it. */
    for (cJSON *item = doc ? doc->child : NULL, *next; item; item = next) {
        next = item->next;
        if (item->string && log_is_secret_name(item->string, strlen(item->string)) &&
            !cJSON_IsNull(item))
            cJSON_ReplaceItemInObjectCaseSensitive(doc, item->string, cJSON_CreateString("***"));
        else if (cJSON_IsObject(item) || cJSON_IsArray(item))
            journal_redact(item);
    }
}

static void *reaper_main(void *arg);

int journal_init(struct app *app)
{
    app->journal = NULL;
    if (app->cfg.journal_max <= 0 || app->cfg.journal_max_bytes <= 0)
        return 0; /* no journal */
    struct journal *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->cap = (size_t)app->cfg.journal_max;
    j->slots = calloc(j->cap, sizeof *j->slots);
    if (!j->slots) {
        free(j);
        return -1;
    }
    j->max_bytes = (size_t)app->cfg.journal_max_bytes;
    j->next_id = 1;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->wake, NULL);
    if (pthread_create(&j->reaper, NULL, reaper_main, j)) {
        pthread_cond_destroy(&j->wake);
        pthread_mutex_destroy(&j->lock);
        free(j->slots);
        free(j);
        return -1;
    }
    app->journal = j;
    return 0;
}

static void entry_release(struct jentry *e)
{
    if (atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

/* Releases a chain of entries taken out of the ring. Call without the lock. */
static void release_chain(struct jentry *e)
{
    while (e) {
        struct jentry *next = e->next;
        entry_release(e);
        e = next;
    }
}

/* Releases every entry of a detached slot array. Call without the lock. */
static size_t release_slots(struct jentry **slots, size_t cap, size_t head, size_t count)
{
    for (size_t i = 0; i < count; i++)
        entry_release(slots[(head + i) % cap]);
    return count;
}

/* Frees what clears took out, then returns the memory to the system. */
static void reap(struct journal *j, struct batch *b)
{
    while (b) {
        struct batch *next = b->next;
        if (b->slots) {
            release_slots(b->slots, j->cap, b->head, b->count);
            free(b->slots);
        }
        release_chain(b->chain);
        free(b);
        b = next;
    }
    trim_heap();
}

static void *reaper_main(void *arg)
{
    struct journal *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->pending && !j->stopping)
            pthread_cond_wait(&j->wake, &j->lock);
        struct batch *b = j->pending;
        j->pending = NULL;
        if (!b && j->stopping)
            break;
        pthread_mutex_unlock(&j->lock);
        reap(j, b);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

void journal_free(struct app *app)
{
    struct journal *j = app->journal;
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->stopping = 1;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->reaper, NULL); /* it frees what is pending first */
    release_slots(j->slots, j->cap, j->head, j->count);
    free(j->slots);
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->lock);
    free(j);
    app->journal = NULL;
}

/* The stored form of a body: redacted JSON cut to JOURNAL_BODY_MAX bytes on a
 * UTF-8 boundary, or a note of its size. Secrets are masked before the cut, so
 * the cut never exposes a secret a whole body would have hidden. Returns the
 * text (malloc'd, or `note` itself) and its length in *len. */
static char *stored_body(const char *body, size_t blen, char note[64], size_t *len, int *json,
                         int *truncated)
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

/* Copies `s` (or nothing when NULL) to *cursor and returns the copy. */
static const char *put(char **cursor, const char *s, size_t len)
{
    if (!s)
        return NULL;
    char *dst = *cursor;
    memcpy(dst, s, len);
    dst[len] = '\0';
    *cursor = dst + len + 1;
    return dst;
}

/* Builds the entry, with every string in one allocation. */
static struct jentry *entry_new(const struct journal_entry *e)
{
    char note[64];
    size_t blen = 0;
    int json = 0, truncated = 0;
    char *body =
        e->body_len ? stored_body(e->body, e->body_len, note, &blen, &json, &truncated) : NULL;
    const char *src[] = {
        e->ns ? e->ns : "", e->api ? e->api : "", e->method,   e->path, e->query ? e->query : "",
        e->scenario,        e->state_from,        e->state_to, e->user, body};
    enum { NSTR = sizeof src / sizeof src[0] };
    size_t lens[NSTR], total = 0;
    for (size_t i = 0; i < NSTR; i++) {
        lens[i] = i == NSTR - 1 ? blen : src[i] ? strlen(src[i]) : 0;
        total += src[i] ? lens[i] + 1 : 0;
    }
    struct jentry *x = malloc(sizeof *x + total);
    if (x) {
        char *cursor = x->text;
        const char **dst[NSTR] = {&x->ns,       &x->api,        &x->method,   &x->path, &x->query,
                                  &x->scenario, &x->state_from, &x->state_to, &x->user, &x->body};
        for (size_t i = 0; i < NSTR; i++)
            *dst[i] = put(&cursor, src[i], lens[i]);
        x->next = NULL;
        atomic_init(&x->refs, 1);
        x->id = 0;
        x->at = e->at;
        x->latency_ms = e->latency_ms;
        x->status = e->status;
        x->body_json = json;
        x->body_truncated = truncated;
        x->body_bytes = e->body_len;
        x->bytes = sizeof *x + total + ENTRY_OVERHEAD;
    }
    if (body != note)
        free(body);
    return x;
}

/* Takes the oldest entry out of the ring onto *evicted. Call with the lock. */
static void evict_oldest(struct journal *j, struct jentry **evicted)
{
    struct jentry *old = j->slots[j->head];
    j->slots[j->head] = NULL;
    j->head = (j->head + 1) % j->cap;
    j->count--;
    j->bytes -= old->bytes;
    old->next = *evicted;
    *evicted = old;
}

void journal_record(struct app *app, const struct journal_entry *e)
{
    struct journal *j = app->journal;
    if (!j)
        return;
    struct jentry *x = entry_new(e);
    if (!x)
        return;
    if (x->bytes > j->max_bytes) {
        free(x); /* could never fit: keeping it would empty the journal for nothing */
        return;
    }
    struct jentry *evicted = NULL;
    pthread_mutex_lock(&j->lock);
    x->id = j->next_id++;
    while (j->count && (j->count == j->cap || j->bytes + x->bytes > j->max_bytes))
        evict_oldest(j, &evicted);
    j->slots[(j->head + j->count) % j->cap] = x;
    j->count++;
    j->bytes += x->bytes;
    pthread_mutex_unlock(&j->lock);
    release_chain(evicted);
}

static int str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* The filter of GET /__admin/requests: every given criterion must hold; a path
 * ending in '*' matches by prefix. An entry without a user never matches a
 * user filter. */
static int matches(const struct jentry *x, const struct journal_filter *f, size_t path_prefix)
{
    if (f->before > 0 && x->id >= f->before)
        return 0;
    if (f->ns && !str_eq(x->ns, f->ns))
        return 0;
    if (f->api && !str_eq(x->api, f->api))
        return 0;
    if (f->path && !str_eq(x->path, f->path) &&
        !(path_prefix != (size_t)-1 && x->path && strncmp(x->path, f->path, path_prefix) == 0))
        return 0;
    if (f->user && !str_eq(x->user, f->user))
        return 0;
    if (f->since >= 0 && !(x->at >= f->since))
        return 0;
    if (f->method && !str_eq(x->method, f->method))
        return 0;
    if (f->status > 0 && x->status != f->status)
        return 0;
    return 1;
}

/* The length of the prefix a path filter asks for, or (size_t)-1 for an exact match. */
static size_t prefix_of(const struct journal_filter *f)
{
    size_t n = f->path ? strlen(f->path) : 0;
    return n && f->path[n - 1] == '*' ? n - 1 : (size_t)-1;
}

static cJSON *entry_json(const struct jentry *x)
{
    cJSON *e = cJSON_CreateObject();
    char when[32];
    cJSON_AddNumberToObject(e, "id", (double)x->id);
    clock_format(x->at, when);
    cJSON_AddStringToObject(e, "time", when);
    json_add_str_or_null(e, "namespace", x->ns);
    json_add_str_or_null(e, "api", x->api);
    json_add_str_or_null(e, "method", x->method);
    json_add_str_or_null(e, "path", x->path);
    json_add_str_or_null(e, "query", x->query);
    cJSON_AddNumberToObject(e, "status", x->status);
    cJSON_AddNumberToObject(e, "latencyMs", x->latency_ms);
    json_add_str_or_null(e, "scenario", x->scenario);
    json_add_str_or_null(e, "stateFrom", x->state_from);
    json_add_str_or_null(e, "stateTo", x->state_to);
    json_add_str_or_null(e, "user", x->user);
    size_t off;
    cJSON *parsed = x->body_json ? json_parse(x->body, strlen(x->body), &off) : NULL;
    if (parsed)
        cJSON_AddItemToObject(e, "body", parsed);
    else
        json_add_str_or_null(e, "body", x->body);
    cJSON_AddNumberToObject(e, "bodyBytes", (double)x->body_bytes);
    cJSON_AddBoolToObject(e, "bodyTruncated", x->body_truncated);
    return e;
}

cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before)
{
    struct journal *j = app->journal;
    cJSON *list = cJSON_CreateArray();
    *next_before = 0;
    if (!j || f->limit <= 0)
        return list;
    /* The matching entries are picked under the lock and rendered after it. */
    struct jentry **picked = malloc((size_t)f->limit * sizeof *picked);
    if (!picked)
        return list;
    size_t prefix = prefix_of(f), n = 0;
    pthread_mutex_lock(&j->lock);
    for (size_t i = j->count; i-- > 0 && n < (size_t)f->limit;) {
        struct jentry *x = j->slots[(j->head + i) % j->cap];
        if (matches(x, f, prefix)) {
            atomic_fetch_add(&x->refs, 1);
            picked[n++] = x;
        }
    }
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(list, entry_json(picked[i]));
        if (i + 1 == n && n == (size_t)f->limit)
            *next_before = picked[i]->id;
        entry_release(picked[i]);
    }
    free(picked);
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
        n += matches(j->slots[(j->head + i) % j->cap], f, prefix);
    pthread_mutex_unlock(&j->lock);
    return n;
}

/* Forgets every entry, or one namespace's. Forgetting all swaps in an empty
 * slot array, so the lock is held for a few stores whatever the journal holds;
 * a namespace is taken out by one pass that closes the gaps. Either way the
 * entries are freed, and the memory handed back, by the reaper thread. */
static int forget(struct journal *j, const char *ns)
{
    struct batch *b = calloc(1, sizeof *b);
    struct jentry **fresh = ns || !b ? NULL : calloc(j->cap, sizeof *fresh);
    struct jentry *evicted = NULL;
    pthread_mutex_lock(&j->lock);
    if (fresh) {
        b->slots = j->slots;
        b->head = j->head;
        b->count = j->count;
        j->slots = fresh;
        j->head = j->count = j->bytes = 0;
    } else {
        /* A namespace, or no memory for a fresh array: keep what does not match. */
        size_t kept = 0;
        for (size_t i = 0; i < j->count; i++) {
            struct jentry *x = j->slots[(j->head + i) % j->cap];
            j->slots[(j->head + i) % j->cap] = NULL;
            if (!ns || str_eq(x->ns, ns)) {
                j->bytes -= x->bytes;
                x->next = evicted;
                evicted = x;
            } else {
                j->slots[(j->head + kept++) % j->cap] = x;
            }
        }
        j->count = kept;
    }
    if (b && (b->count || evicted)) {
        b->chain = evicted;
        b->next = j->pending;
        j->pending = b;
        pthread_cond_signal(&j->wake);
        b = NULL;
        evicted = NULL;
    }
    pthread_mutex_unlock(&j->lock);
    if (b)
        free(b->slots); /* an empty journal swapped for an empty one */
    free(b);
    release_chain(evicted); /* only when there was no memory for a batch */
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

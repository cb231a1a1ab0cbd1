/*
 * state: striped, bounded hash maps of records, reset marks, the sweeper
 * that frees what a reset hid, and the writer that keeps a file database up
 * to date behind the request path.
 *
 * Each map has up to STATE_SHARDS shards (fewer for a small bound, so that
 * least-recently-used order stays close to exact); a shard is a mutex, a power-of-two
 * bucket array, a least-recently-used list and a list of records changed
 * since the writer last looked. A record is found by the 64-bit FNV-1a hash
 * of its key: the top bits pick the shard, the low bits the bucket.
 *
 * Resets never walk the maps on the caller's thread. Every record carries the
 * sequence number of its creation; a reset of everything raises `reset_all`
 * to the current sequence, a reset of one namespace adds a mark (namespace,
 * sequence). A record at or below a mark is dead: lookups drop it, and the
 * sweeper thread, woken by the reset, walks the shards and frees the dead.
 * Once a sweep that began after a mark has finished, no record under it is
 * left and the mark goes.
 */
#include "state.h"
#include "clock.h"
#include "jsonutil.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_SHARDS 64
#define SHARD_BITS   6

struct shard {
    pthread_mutex_t lock;
    struct state_rec **buckets;
    size_t nbuckets, count;
    struct state_rec lru;   /* sentinel: lru.lnext is the most recent */
    struct state_rec dirty; /* sentinel of the changed records */
    struct pending *deleted;
};

/* A deletion or reset the writer still has to apply to the store. */
struct pending {
    struct pending *next;
    int kind; /* -1: a reset */
    char *key;
    char *ns; /* a reset's namespace; NULL: everything */
};

/* A value for the store's meta table (the mock clock) the writer still has
 * to store; one per key, the newest. */
struct meta {
    struct meta *next;
    char *key, *value;
};

struct map {
    enum state_kind kind;
    size_t rec_size;
    size_t max_per_shard;
    unsigned bits; /* log2 of the shards in use */
    int by_change; /* the list is in order of change, not of use (sessions: listed by it) */
    struct shard shards[STATE_SHARDS];
};

struct mark {
    char *ns;
    uint64_t seq;
};

struct state {
    struct map maps[SK_COUNT];
    _Atomic uint64_t seq;
    _Atomic uint64_t reset_all;
    pthread_rwlock_t marks_lock;
    struct mark *marks;
    size_t nmarks, cmarks;
    _Atomic size_t nmarks_hint; /* lets lookups skip the lock when there is no mark */

    pthread_mutex_t bg_lock;
    pthread_cond_t bg_cond;
    int stopping;
    int sweep_wanted;
    pthread_t sweeper;
    int sweeper_started;

    struct store *store; /* NULL: nothing is written behind */
    int loading;         /* records read from the store are not written back */
    pthread_t writer;
    int writer_started;
    struct pending *resets; /* under bg_lock, newest first */
    struct meta *metas;     /* under bg_lock */
    pthread_mutex_t degraded_lock;
    char degraded[256];
    _Atomic int is_degraded;
};

static const size_t rec_sizes[SK_COUNT] = {
    [SK_SESSION] = sizeof(struct state_session),
    [SK_MESH_CONN] = sizeof(struct state_mesh_conn),
    [SK_MESH_ACCESS] = sizeof(struct state_link),
    [SK_MESH_REFRESH] = sizeof(struct state_link),
    [SK_OO_TOKEN] = sizeof(struct state_oo_token),
    [SK_OO_USER] = sizeof(struct state_oo_user),
    [SK_OO_SMS] = sizeof(struct state_oo_sms),
    [SK_OO_CONFIRM] = sizeof(struct state_oo_confirm),
};

/* ---- records ------------------------------------------------------------ */

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    /* FNV's high bits mix poorly for short keys; fold the low ones in. */
    return h ^ (h << 37);
}

static void rec_free(struct state_rec *r)
{
    if (!r)
        return;
    switch ((enum state_kind)r->kind) {
    case SK_SESSION: {
        struct state_session *s = (struct state_session *)r;
        cJSON_Delete(s->vars);
        for (size_t i = 0; i < s->nctrs; i++)
            free(s->ctrs[i].t);
        free(s->ctrs);
        break;
    }
    case SK_MESH_CONN:
        free(((struct state_mesh_conn *)r)->username);
        free(((struct state_mesh_conn *)r)->pairs);
        break;
    case SK_OO_USER:
        free(((struct state_oo_user *)r)->used_codes);
        break;
    case SK_OO_SMS:
        free(((struct state_oo_sms *)r)->msgs);
        break;
    default:
        break;
    }
    free(r);
}

static void list_unlink(struct state_rec *r)
{
    r->lprev->lnext = r->lnext;
    r->lnext->lprev = r->lprev;
}

static void list_push_front(struct state_rec *head, struct state_rec *r)
{
    r->lnext = head->lnext;
    r->lprev = head;
    head->lnext->lprev = r;
    head->lnext = r;
}

static void dirty_unlink(struct state_rec *r)
{
    if (!r->dirty)
        return;
    r->dprev->dnext = r->dnext;
    r->dnext->dprev = r->dprev;
    r->dirty = 0;
}

static void dirty_mark(struct shard *sh, struct state_rec *r)
{
    if (r->dirty)
        return;
    r->dnext = sh->dirty.dnext;
    r->dprev = &sh->dirty;
    sh->dirty.dnext->dprev = r;
    sh->dirty.dnext = r;
    r->dirty = 1;
}

static int is_dead(struct state *st, const struct state_rec *r)
{
    if (r->seq <= atomic_load(&st->reset_all))
        return 1;
    if (atomic_load(&st->nmarks_hint) == 0)
        return 0;
    int dead = 0;
    pthread_rwlock_rdlock(&st->marks_lock);
    for (size_t i = 0; i < st->nmarks && !dead; i++)
        dead = r->seq <= st->marks[i].seq && strlen(st->marks[i].ns) == r->nslen &&
               memcmp(st->marks[i].ns, r->key, r->nslen) == 0;
    pthread_rwlock_unlock(&st->marks_lock);
    return dead;
}

/* Takes a record out of its shard (lock held); the caller frees it. */
static void shard_unlink(struct shard *sh, struct state_rec *r)
{
    struct state_rec **pp = &sh->buckets[r->hash & (sh->nbuckets - 1)];
    while (*pp && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = r->hnext;
    list_unlink(r);
    dirty_unlink(r);
    sh->count--;
}

static void shard_grow(struct shard *sh)
{
    size_t n = sh->nbuckets * 2;
    struct state_rec **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < sh->nbuckets; i++) {
        for (struct state_rec *r = sh->buckets[i], *next; r; r = next) {
            next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = n;
}

/* Notes a record's removal for the store (lock held). */
static void note_deleted(struct state *st, struct shard *sh, const struct state_rec *r)
{
    if (!st->store)
        return;
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->kind = r->kind;
    p->key = strdup(r->key);
    p->next = sh->deleted;
    sh->deleted = p;
}

int state_key(char *buf, size_t cap, const char *ns, const char *const *parts, size_t nparts)
{
    size_t len = strlen(ns);
    if (len + 1 > cap)
        return -1;
    memcpy(buf, ns, len);
    for (size_t i = 0; i < nparts; i++) {
        size_t n = strlen(parts[i]);
        if (len + 1 + n + 1 > cap)
            return -1;
        buf[len++] = STATE_KEY_SEP;
        memcpy(buf + len, parts[i], n);
        len += n;
    }
    buf[len] = '\0';
    return (int)len;
}

int state_ns_key(const char *ns, const char *name, char *out, size_t cap)
{
    return state_key(out, cap, ns, &name, 1) < 0 ? -1 : 0;
}

static struct shard *shard_of(struct state *st, enum state_kind kind, uint64_t h)
{
    const struct map *m = &st->maps[kind];
    return (struct shard *)&m->shards[m->bits ? h >> (64 - m->bits) : 0];
}

/* Finds or (with `create`) makes a record, with `extra` bytes after its key. */
static struct state_rec *get_rec(struct state *st, enum state_kind kind, const char *key,
                                 int create, size_t extra, struct state_lock *held)
{
    uint64_t h = hash_key(key);
    struct shard *sh = shard_of(st, kind, h);
    pthread_mutex_lock(&sh->lock);
    held->shard = sh;
    struct state_rec **pp = &sh->buckets[h & (sh->nbuckets - 1)];
    for (struct state_rec *r = *pp; r; r = r->hnext) {
        if (r->hash != h || strcmp(r->key, key) != 0)
            continue;
        if (is_dead(st, r)) {
            shard_unlink(sh, r);
            rec_free(r);
            break;
        }
        if (!st->maps[kind].by_change) {
            list_unlink(r);
            list_push_front(&sh->lru, r);
        }
        return r;
    }
    if (!create)
        return NULL;
    /* One allocation holds the record, its key and any extra bytes. */
    size_t size = st->maps[kind].rec_size, klen = strlen(key);
    struct state_rec *r = calloc(1, size + klen + 1 + extra);
    if (!r)
        return NULL;
    r->key = (char *)r + size;
    memcpy(r->key, key, klen + 1);
    const char *sep = strchr(key, STATE_KEY_SEP);
    r->nslen = (unsigned short)(sep ? (size_t)(sep - key) : klen);
    r->kind = (unsigned char)kind;
    r->hash = h;
    r->seq = atomic_fetch_add(&st->seq, 1) + 1;
    r->tick = r->seq;
    if (sh->count >= sh->nbuckets)
        shard_grow(sh);
    size_t b = h & (sh->nbuckets - 1);
    r->hnext = sh->buckets[b];
    sh->buckets[b] = r;
    list_push_front(&sh->lru, r);
    sh->count++;
    /* Over the bound: the least recently used record goes. */
    while (sh->count > st->maps[kind].max_per_shard && sh->lru.lprev != r) {
        struct state_rec *old = sh->lru.lprev;
        note_deleted(st, sh, old);
        shard_unlink(sh, old);
        rec_free(old);
    }
    return r;
}

void *state_get(struct state *st, enum state_kind kind, const char *key, int create,
                struct state_lock *held)
{
    return get_rec(st, kind, key, create, 0, held);
}

void state_unlock(struct state_lock *held)
{
    if (held->shard)
        pthread_mutex_unlock(&((struct shard *)held->shard)->lock);
    held->shard = NULL;
}

void state_touch(struct state *st, void *rec)
{
    struct state_rec *r = rec;
    r->tick = atomic_fetch_add(&st->seq, 1) + 1;
    if (st->maps[r->kind].by_change) {
        struct shard *sh = shard_of(st, (enum state_kind)r->kind, r->hash);
        list_unlink(r);
        list_push_front(&sh->lru, r);
    }
    if (st->store && !st->loading)
        dirty_mark(shard_of(st, (enum state_kind)r->kind, r->hash), r);
}

void state_remove(struct state *st, void *rec)
{
    struct state_rec *r = rec;
    struct shard *sh = shard_of(st, (enum state_kind)r->kind, r->hash);
    note_deleted(st, sh, r);
    shard_unlink(sh, r);
    rec_free(r);
}

void state_link_put(struct state *st, enum state_kind kind, const char *key, const char *target)
{
    struct state_lock held;
    struct state_link *l = (struct state_link *)get_rec(st, kind, key, 0, 0, &held);
    if (l && strcmp(l->target, target) != 0) {
        state_remove(st, l);
        l = NULL;
    }
    if (!l) {
        /* The target is stored with the record: it is made afresh. */
        state_unlock(&held);
        size_t n = strlen(target) + 1;
        l = (struct state_link *)get_rec(st, kind, key, 1, n, &held);
        if (l) {
            char *t = l->rec.key + strlen(l->rec.key) + 1;
            memcpy(t, target, n);
            l->target = t;
        }
    }
    if (l)
        state_touch(st, l);
    state_unlock(&held);
}

int state_link_get(struct state *st, enum state_kind kind, const char *key, char *out, size_t cap)
{
    struct state_lock held;
    struct state_link *l = state_get(st, kind, key, 0, &held);
    int rc = l && l->target && (size_t)snprintf(out, cap, "%s", l->target) < cap ? 0 : -1;
    state_unlock(&held);
    return rc;
}

void state_link_drop(struct state *st, enum state_kind kind, const char *key)
{
    struct state_lock held;
    struct state_link *l = state_get(st, kind, key, 0, &held);
    if (l)
        state_remove(st, l);
    state_unlock(&held);
}

void state_each(struct state *st, enum state_kind kind, state_each_fn fn, void *cls)
{
    struct map *m = &st->maps[kind];
    for (size_t i = 0; i < STATE_SHARDS; i++) {
        struct shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (struct state_rec *r = sh->lru.lnext; r != &sh->lru; r = r->lnext)
            if (!is_dead(st, r))
                fn(r, cls);
        pthread_mutex_unlock(&sh->lock);
    }
}

void state_each_recent(struct state *st, enum state_kind kind, state_each_until_fn fn,
                       void (*shard_begin)(void *cls), void *cls)
{
    struct map *m = &st->maps[kind];
    for (size_t i = 0; i < STATE_SHARDS; i++) {
        struct shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
        if (shard_begin)
            shard_begin(cls);
        for (struct state_rec *r = sh->lru.lnext; r != &sh->lru; r = r->lnext)
            if (!is_dead(st, r) && fn(r, cls))
                break;
        pthread_mutex_unlock(&sh->lock);
    }
}

size_t state_count(struct state *st, enum state_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < STATE_SHARDS; i++) {
        struct shard *sh = &st->maps[kind].shards[i];
        pthread_mutex_lock(&sh->lock);
        n += sh->count;
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

/* ---- counters ----------------------------------------------------------- */

struct state_counter *state_counter(struct state_session *ss, const char *name, int create)
{
    for (size_t i = 0; i < ss->nctrs; i++)
        if (strcmp(ss->ctrs[i].name, name) == 0)
            return &ss->ctrs[i];
    if (!create)
        return NULL;
    struct state_counter *c = realloc(ss->ctrs, (ss->nctrs + 1) * sizeof *c);
    if (!c)
        return NULL;
    ss->ctrs = c;
    c = &ss->ctrs[ss->nctrs++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

/* Drops the events that left the window (times are kept oldest first). */
static void counter_prune(struct state_counter *c, double now, double window)
{
    size_t k = 0;
    while (k < c->nt && c->t[k] <= now - window)
        k++;
    if (k) {
        memmove(c->t, c->t + k, (c->nt - k) * sizeof *c->t);
        c->nt -= k;
    }
}

void state_counter_add(struct state_counter *c, double now, double window)
{
    if (!c)
        return;
    if (window <= 0) {
        c->n++;
        return;
    }
    counter_prune(c, now, window);
    if (c->nt == STATE_COUNTER_CAP) {
        memmove(c->t, c->t + 1, (c->nt - 1) * sizeof *c->t);
        c->nt--;
    }
    if (c->nt == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        double *t = realloc(c->t, cap * sizeof *t);
        if (!t)
            return;
        c->t = t;
        c->cap = cap;
    }
    /* The mock clock can be set back: keep the times sorted anyway. */
    size_t i = c->nt;
    while (i > 0 && c->t[i - 1] > now) {
        c->t[i] = c->t[i - 1];
        i--;
    }
    c->t[i] = now;
    c->nt++;
}

long state_counter_count(struct state_counter *c, double now, double window)
{
    if (!c)
        return 0;
    if (window <= 0)
        return c->n + (long)c->nt;
    long n = 0;
    for (size_t i = c->nt; i > 0 && c->t[i - 1] > now - window; i--)
        n++;
    return n;
}

double state_counter_oldest(struct state_counter *c, double now, double window)
{
    if (c)
        for (size_t i = 0; i < c->nt; i++)
            if (c->t[i] > now - window)
                return c->t[i];
    return now;
}

void state_counter_clear(struct state_counter *c)
{
    if (!c)
        return;
    c->n = 0;
    c->nt = 0;
}

void state_counters_clear(struct state_session *ss)
{
    for (size_t i = 0; i < ss->nctrs; i++)
        free(ss->ctrs[i].t);
    free(ss->ctrs);
    ss->ctrs = NULL;
    ss->nctrs = 0;
}

/* ---- resets and the sweeper ----------------------------------------------- */

void state_reset(struct state *st, const char *ns)
{
    uint64_t now = atomic_load(&st->seq);
    if (!ns) {
        atomic_store(&st->reset_all, now);
    } else {
        pthread_rwlock_wrlock(&st->marks_lock);
        int done = 0;
        for (size_t i = 0; i < st->nmarks && !done; i++)
            if (strcmp(st->marks[i].ns, ns) == 0) {
                st->marks[i].seq = now;
                done = 1;
            }
        if (!done && st->nmarks == st->cmarks) {
            size_t cap = st->cmarks ? st->cmarks * 2 : 8;
            struct mark *m = realloc(st->marks, cap * sizeof *m);
            if (m) {
                st->marks = m;
                st->cmarks = cap;
            }
        }
        if (!done && st->nmarks < st->cmarks) {
            st->marks[st->nmarks].ns = strdup(ns);
            st->marks[st->nmarks].seq = now;
            if (st->marks[st->nmarks].ns)
                st->nmarks++;
        }
        atomic_store(&st->nmarks_hint, st->nmarks);
        pthread_rwlock_unlock(&st->marks_lock);
    }
    pthread_mutex_lock(&st->bg_lock);
    if (st->store) {
        struct pending *p = calloc(1, sizeof *p);
        if (p) {
            p->kind = -1;
            p->ns = ns ? strdup(ns) : NULL;
            p->next = st->resets;
            st->resets = p;
        }
    }
    st->sweep_wanted = 1;
    pthread_cond_broadcast(&st->bg_cond);
    pthread_mutex_unlock(&st->bg_lock);
}

/* Frees every dead record, one shard at a time. */
static void sweep(struct state *st)
{
    uint64_t began = atomic_load(&st->seq);
    for (int k = 0; k < SK_COUNT; k++) {
        for (size_t i = 0; i < STATE_SHARDS; i++) {
            struct shard *sh = &st->maps[k].shards[i];
            struct state_rec *dead = NULL;
            pthread_mutex_lock(&sh->lock);
            for (struct state_rec *r = sh->lru.lnext, *next; r != &sh->lru; r = next) {
                next = r->lnext;
                if (!is_dead(st, r))
                    continue;
                shard_unlink(sh, r);
                r->hnext = dead;
                dead = r;
            }
            pthread_mutex_unlock(&sh->lock);
            int freed_some = dead != NULL;
            for (struct state_rec *r = dead, *next; r; r = next) {
                next = r->hnext;
                rec_free(r);
            }
            /* Frees compete with requests for the allocator and, on two
             * cores, for the CPU: pause between shards so a large reset is
             * freed over a fraction of a second instead of stalling traffic. */
            if (freed_some) {
                struct timespec pause = {0, 500 * 1000};
                nanosleep(&pause, NULL);
            }
        }
    }
    /* Marks older than this sweep's start have no record left under them. */
    pthread_rwlock_wrlock(&st->marks_lock);
    size_t kept = 0;
    for (size_t i = 0; i < st->nmarks; i++) {
        if (st->marks[i].seq < began)
            free(st->marks[i].ns);
        else
            st->marks[kept++] = st->marks[i];
    }
    st->nmarks = kept;
    atomic_store(&st->nmarks_hint, kept);
    pthread_rwlock_unlock(&st->marks_lock);
    /* No malloc_trim here: it holds the allocator's lock while it walks the
     * whole heap, and requests waited on it for milliseconds. The freed memory
     * is reused by the records that come next; the bounds cap it. */
}

static void *sweeper_main(void *arg)
{
    struct state *st = arg;
    pthread_mutex_lock(&st->bg_lock);
    while (!st->stopping) {
        if (!st->sweep_wanted) {
            pthread_cond_wait(&st->bg_cond, &st->bg_lock);
            continue;
        }
        st->sweep_wanted = 0;
        pthread_mutex_unlock(&st->bg_lock);
        sweep(st);
        pthread_mutex_lock(&st->bg_lock);
    }
    pthread_mutex_unlock(&st->bg_lock);
    return NULL;
}

/* ---- writing behind ------------------------------------------------------- */

static void add_num(cJSON *o, const char *k, double v)
{
    cJSON_AddNumberToObject(o, k, v);
}

/* A record as the JSON text the store keeps. */
static char *rec_encode(const struct state_rec *r)
{
    cJSON *o = cJSON_CreateObject();
    switch ((enum state_kind)r->kind) {
    case SK_SESSION: {
        const struct state_session *s = (const void *)r;
        cJSON_AddStringToObject(o, "scenario", s->scenario);
        cJSON_AddStringToObject(o, "state", s->state);
        add_num(o, "enteredAt", s->entered_at);
        add_num(o, "blockedUntil", s->blocked_until);
        add_num(o, "updatedAt", s->updated_at);
        add_num(o, "blockLimit", s->block_limit);
        if (s->vars)
            cJSON_AddItemToObject(o, "vars", cJSON_Duplicate(s->vars, 1));
        cJSON *ctrs = cJSON_AddArrayToObject(o, "counters");
        for (size_t i = 0; i < s->nctrs; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "name", s->ctrs[i].name);
            add_num(c, "n", (double)s->ctrs[i].n);
            cJSON *t = cJSON_AddArrayToObject(c, "t");
            for (size_t j = 0; j < s->ctrs[i].nt; j++)
                cJSON_AddItemToArray(t, cJSON_CreateNumber(s->ctrs[i].t[j]));
            cJSON_AddItemToArray(ctrs, c);
        }
        break;
    }
    case SK_MESH_CONN: {
        const struct state_mesh_conn *c = (const void *)r;
        json_add_str_or_null(o, "username", c->username);
        add_num(o, "accountIndex", c->account_index);
        cJSON *pairs = cJSON_AddArrayToObject(o, "pairs");
        for (int i = 0; i < c->npairs; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "access", c->pairs[i].access);
            cJSON_AddStringToObject(p, "refresh", c->pairs[i].refresh);
            add_num(p, "issued", c->pairs[i].issued);
            add_num(p, "expires", c->pairs[i].expires);
            add_num(p, "refreshExpires", c->pairs[i].refresh_expires);
            add_num(p, "revoked", c->pairs[i].revoked);
            cJSON_AddItemToArray(pairs, p);
        }
        break;
    }
    case SK_MESH_ACCESS:
    case SK_MESH_REFRESH:
        cJSON_AddStringToObject(o, "target", ((const struct state_link *)r)->target);
        break;
    case SK_OO_TOKEN: {
        const struct state_oo_token *t = (const void *)r;
        cJSON_AddStringToObject(o, "userId", t->user_id);
        add_num(o, "expires", t->expires);
        add_num(o, "session", t->session);
        add_num(o, "revoked", t->revoked);
        break;
    }
    case SK_OO_USER: {
        const struct state_oo_user *u = (const void *)r;
        add_num(o, "appConnected", u->app_connected);
        add_num(o, "phoneActivated", u->phone_activated);
        cJSON_AddStringToObject(o, "phone", u->phone);
        cJSON_AddStringToObject(o, "usedCodes", u->used_codes ? u->used_codes : ",");
        break;
    }
    case SK_OO_SMS: {
        const struct state_oo_sms *s = (const void *)r;
        cJSON_AddStringToObject(o, "phone", s->phone);
        cJSON *msgs = cJSON_AddArrayToObject(o, "msgs");
        for (int i = 0; i < s->nmsgs; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "code", s->msgs[i].code);
            add_num(m, "sent", s->msgs[i].sent);
            add_num(m, "expires", s->msgs[i].expires);
            add_num(m, "used", s->msgs[i].used);
            cJSON_AddItemToArray(msgs, m);
        }
        break;
    }
    case SK_OO_CONFIRM: {
        const struct state_oo_confirm *c = (const void *)r;
        cJSON_AddStringToObject(o, "userId", c->user_id);
        cJSON_AddStringToObject(o, "type", c->type);
        add_num(o, "expires", c->expires);
        break;
    }
    default:
        break;
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void str(const cJSON *o, const char *k, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* Fills a fresh record from its stored JSON. */
static void rec_decode(struct state_rec *r, const cJSON *o)
{
    switch ((enum state_kind)r->kind) {
    case SK_SESSION: {
        struct state_session *s = (void *)r;
        str(o, "scenario", s->scenario, sizeof s->scenario);
        str(o, "state", s->state, sizeof s->state);
        s->entered_at = num(o, "enteredAt");
        s->blocked_until = num(o, "blockedUntil");
        s->updated_at = num(o, "updatedAt");
        s->block_limit = (int)num(o, "blockLimit");
        const cJSON *vars = cJSON_GetObjectItemCaseSensitive(o, "vars");
        if (cJSON_IsObject(vars))
            s->vars = cJSON_Duplicate(vars, 1);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "counters"))
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
            struct state_counter *ctr =
                cJSON_IsString(name) ? state_counter(s, name->valuestring, 1) : NULL;
            if (!ctr)
                continue;
            ctr->n = (long)num(c, "n");
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(c, "t"))
            {
                if (ctr->nt == ctr->cap) {
                    size_t cap = ctr->cap ? ctr->cap * 2 : 4;
                    double *nt = realloc(ctr->t, cap * sizeof *nt);
                    if (!nt)
                        break;
                    ctr->t = nt;
                    ctr->cap = cap;
                }
                if (ctr->nt < STATE_COUNTER_CAP)
                    ctr->t[ctr->nt++] = cJSON_IsNumber(t) ? t->valuedouble : 0;
            }
        }
        break;
    }
    case SK_MESH_CONN: {
        struct state_mesh_conn *c = (void *)r;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "username");
        c->username = cJSON_IsString(u) ? strdup(u->valuestring) : NULL;
        c->account_index = (int)num(o, "accountIndex");
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(o, "pairs"))
        {
            if (c->npairs == MESH_CONN_TOKENS)
                break;
            struct mesh_pair *grown = realloc(c->pairs, (size_t)(c->npairs + 1) * sizeof *grown);
            if (!grown)
                break;
            c->pairs = grown;
            struct mesh_pair *mp = &c->pairs[c->npairs++];
            str(p, "access", mp->access, sizeof mp->access);
            str(p, "refresh", mp->refresh, sizeof mp->refresh);
            mp->issued = num(p, "issued");
            mp->expires = num(p, "expires");
            mp->refresh_expires = num(p, "refreshExpires");
            mp->revoked = (int)num(p, "revoked");
        }
        break;
    }
    case SK_OO_TOKEN: {
        struct state_oo_token *t = (void *)r;
        str(o, "userId", t->user_id, sizeof t->user_id);
        t->expires = num(o, "expires");
        t->session = (int)num(o, "session");
        t->revoked = (int)num(o, "revoked");
        break;
    }
    case SK_OO_USER: {
        struct state_oo_user *u = (void *)r;
        u->app_connected = (int)num(o, "appConnected");
        u->phone_activated = (int)num(o, "phoneActivated");
        str(o, "phone", u->phone, sizeof u->phone);
        const cJSON *codes = cJSON_GetObjectItemCaseSensitive(o, "usedCodes");
        if (cJSON_IsString(codes) && strcmp(codes->valuestring, ",") != 0)
            u->used_codes = strdup(codes->valuestring);
        break;
    }
    case SK_OO_SMS: {
        struct state_oo_sms *s = (void *)r;
        str(o, "phone", s->phone, sizeof s->phone);
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(o, "msgs"))
        {
            if (s->nmsgs == OO_SMS_KEEP)
                break;
            struct oo_sms_msg *grown = realloc(s->msgs, (size_t)(s->nmsgs + 1) * sizeof *grown);
            if (!grown)
                break;
            s->msgs = grown;
            struct oo_sms_msg *msg = &s->msgs[s->nmsgs++];
            str(m, "code", msg->code, sizeof msg->code);
            msg->sent = num(m, "sent");
            msg->expires = num(m, "expires");
            msg->used = (int)num(m, "used");
        }
        break;
    }
    case SK_OO_CONFIRM: {
        struct state_oo_confirm *c = (void *)r;
        str(o, "userId", c->user_id, sizeof c->user_id);
        str(o, "type", c->type, sizeof c->type);
        c->expires = num(o, "expires");
        break;
    }
    default:
        break;
    }
}

struct row {
    int kind;
    char *key, *ns, *json;
};

struct batch {
    struct row *rows;
    size_t n, cap;
};

static void batch_add(struct batch *b, int kind, const struct state_rec *r, char *json)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct row *rows = realloc(b->rows, cap * sizeof *rows);
        if (!rows) {
            free(json);
            return;
        }
        b->rows = rows;
        b->cap = cap;
    }
    struct row *row = &b->rows[b->n++];
    row->kind = kind;
    row->key = strdup(r->key);
    row->ns = strndup(r->key, r->nslen);
    row->json = json;
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->rows[i].key);
        free(b->rows[i].ns);
        free(b->rows[i].json);
    }
    free(b->rows);
    memset(b, 0, sizeof *b);
}

static void set_degraded(struct state *st, const char *why)
{
    pthread_mutex_lock(&st->degraded_lock);
    if (why)
        snprintf(st->degraded, sizeof st->degraded, "%s", why);
    else
        st->degraded[0] = '\0';
    atomic_store(&st->is_degraded, why != NULL);
    pthread_mutex_unlock(&st->degraded_lock);
}

const char *state_degraded(struct state *st)
{
    if (!st || !atomic_load(&st->is_degraded))
        return NULL;
    /* The text changes only between failures; a racing reader sees one of them. */
    return st->degraded;
}

void state_error_message(struct state *st, char *out, size_t cap)
{
    const char *why = state_degraded(st);
    snprintf(out, cap, "authmock: cannot store state: %s", why ? why : "out of memory");
}

static struct pending *reverse(struct pending *p)
{
    struct pending *out = NULL;
    while (p) {
        struct pending *next = p->next;
        p->next = out;
        out = p;
        p = next;
    }
    return out;
}

static void pending_free(struct pending *p)
{
    while (p) {
        struct pending *next = p->next;
        free(p->key);
        free(p->ns);
        free(p);
        p = next;
    }
}

static void metas_free(struct meta *m)
{
    while (m) {
        struct meta *next = m->next;
        free(m->key);
        free(m->value);
        free(m);
        m = next;
    }
}

int state_put_meta(struct state *st, const char *key, const char *value)
{
    if (!st || !st->store)
        return 0;
    char *v = strdup(value);
    if (!v)
        return -1;
    pthread_mutex_lock(&st->bg_lock);
    struct meta *m = st->metas;
    while (m && strcmp(m->key, key) != 0)
        m = m->next;
    if (!m) {
        m = calloc(1, sizeof *m);
        char *k = m ? strdup(key) : NULL;
        if (k) {
            m->key = k;
            m->next = st->metas;
            st->metas = m;
        } else {
            free(m);
            m = NULL;
        }
    }
    if (m) {
        free(m->value);
        m->value = v;
        v = NULL;
    }
    pthread_mutex_unlock(&st->bg_lock);
    int err = v ? -1 : 0;
    free(v);
    return err;
}

/* The rows of a batch whose write failed go back to being dirty. */
static void redirty(struct state *st, const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct state_lock held;
        struct state_rec *r =
            state_get(st, (enum state_kind)b->rows[i].kind, b->rows[i].key, 0, &held);
        if (r)
            dirty_mark(held.shard, r);
        state_unlock(&held);
    }
}

/* One round of the writer: resets, deletions and changed records in one transaction. */
static void write_round(struct state *st)
{
    pthread_mutex_lock(&st->bg_lock);
    struct pending *resets = reverse(st->resets);
    st->resets = NULL;
    struct meta *metas = st->metas;
    st->metas = NULL;
    pthread_mutex_unlock(&st->bg_lock);

    struct pending *deleted = NULL;
    struct batch b = {0};
    for (int k = 0; k < SK_COUNT; k++) {
        for (size_t i = 0; i < STATE_SHARDS; i++) {
            struct shard *sh = &st->maps[k].shards[i];
            pthread_mutex_lock(&sh->lock);
            if (sh->deleted) {
                struct pending *d = sh->deleted;
                while (d->next)
                    d = d->next;
                d->next = deleted;
                deleted = sh->deleted;
                sh->deleted = NULL;
            }
            while (sh->dirty.dnext != &sh->dirty) {
                struct state_rec *r = sh->dirty.dnext;
                dirty_unlink(r);
                if (!is_dead(st, r))
                    batch_add(&b, k, r, rec_encode(r));
            }
            pthread_mutex_unlock(&sh->lock);
        }
    }
    if (!resets && !deleted && b.n == 0 && !metas)
        return;

    struct store *s = st->store;
    int err = 0;
    store_lock(s);
    err |= store_exec(s, store_stmt(s, ST_BEGIN));
    for (struct pending *p = resets; p && !err; p = p->next) {
        sqlite3_stmt *q = store_stmt(s, p->ns ? ST_STATE_CLEAR_NS : ST_STATE_CLEAR);
        if (p->ns)
            store_bind_text(q, 1, p->ns);
        err |= store_exec(s, q);
    }
    for (struct pending *p = deleted; p && !err; p = p->next) {
        sqlite3_stmt *q = store_stmt(s, ST_STATE_DELETE);
        sqlite3_bind_int(q, 1, p->kind);
        store_bind_text(q, 2, p->key);
        err |= store_exec(s, q);
    }
    for (struct meta *m = metas; m && !err; m = m->next) {
        sqlite3_stmt *q = store_stmt(s, ST_META_PUT);
        store_bind_text(q, 1, m->key);
        store_bind_text(q, 2, m->value);
        err |= store_exec(s, q);
    }
    for (size_t i = 0; i < b.n && !err; i++) {
        if (!b.rows[i].json)
            continue;
        sqlite3_stmt *q = store_stmt(s, ST_STATE_PUT);
        sqlite3_bind_int(q, 1, b.rows[i].kind);
        store_bind_text(q, 2, b.rows[i].key);
        store_bind_text(q, 3, b.rows[i].ns);
        store_bind_text(q, 4, b.rows[i].json);
        err |= store_exec(s, q);
    }
    if (!err)
        err |= store_exec(s, store_stmt(s, ST_COMMIT));
    char why[200] = "";
    if (err) {
        snprintf(why, sizeof why, "%s", store_errmsg(s));
        store_exec(s, store_stmt(s, ST_ROLLBACK));
    }
    store_unlock(s);
    if (err) {
        if (!state_degraded(st))
            log_error("cannot store state: %s", why);
        set_degraded(st, why);
        /* Nothing is lost: the same work is tried again next round. */
        redirty(st, &b);
        /* The resets go back behind any that came in meanwhile (the list is newest first). */
        pthread_mutex_lock(&st->bg_lock);
        struct pending **tail = &st->resets;
        while (*tail)
            tail = &(*tail)->next;
        *tail = reverse(resets);
        resets = NULL;
        /* A meta value goes back unless a newer one for its key came meanwhile. */
        for (struct meta *m = metas, *next; m; m = next) {
            next = m->next;
            struct meta *newer = st->metas;
            while (newer && strcmp(newer->key, m->key) != 0)
                newer = newer->next;
            m->next = NULL;
            if (newer) {
                metas_free(m);
            } else {
                m->next = st->metas;
                st->metas = m;
            }
        }
        metas = NULL;
        pthread_mutex_unlock(&st->bg_lock);
        /* Deletions go back to the first shard of their map. */
        for (struct pending *p = deleted, *next; p; p = next) {
            next = p->next;
            struct shard *sh = &st->maps[p->kind].shards[0];
            pthread_mutex_lock(&sh->lock);
            p->next = sh->deleted;
            sh->deleted = p;
            pthread_mutex_unlock(&sh->lock);
        }
        deleted = NULL;
    } else if (state_degraded(st)) {
        log_info("state writes succeed again");
        set_degraded(st, NULL);
    }
    pending_free(resets);
    pending_free(deleted);
    metas_free(metas);
    batch_free(&b);
}

static void *writer_main(void *arg)
{
    struct state *st = arg;
    pthread_mutex_lock(&st->bg_lock);
    while (!st->stopping) {
        struct timespec ts;
        clock_deadline(&ts, STATE_FLUSH_MS / 1000.0);
        pthread_cond_timedwait(&st->bg_cond, &st->bg_lock, &ts);
        pthread_mutex_unlock(&st->bg_lock);
        write_round(st);
        pthread_mutex_lock(&st->bg_lock);
    }
    pthread_mutex_unlock(&st->bg_lock);
    return NULL;
}

void state_flush(struct state *st)
{
    if (st && st->store)
        write_round(st);
}

/* Loads the records a file database holds. */
static int state_load(struct state *st, char *err, size_t errlen)
{
    struct store *s = st->store;
    int rc = 0;
    store_lock(s);
    sqlite3_stmt *q = store_stmt(s, ST_STATE_LOAD);
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        int kind = sqlite3_column_int(q, 0);
        const char *key = (const char *)sqlite3_column_text(q, 1);
        const char *json = (const char *)sqlite3_column_text(q, 2);
        if (kind < 0 || kind >= SK_COUNT || !key || !json)
            continue;
        cJSON *o = cJSON_Parse(json);
        if (o && (kind == SK_MESH_ACCESS || kind == SK_MESH_REFRESH)) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "target");
            if (cJSON_IsString(t))
                state_link_put(st, (enum state_kind)kind, key, t->valuestring);
        } else if (o) {
            struct state_lock held;
            struct state_rec *r = state_get(st, (enum state_kind)kind, key, 1, &held);
            if (r)
                rec_decode(r, o);
            state_unlock(&held);
        }
        cJSON_Delete(o);
    }
    if (step != SQLITE_DONE) {
        snprintf(err, errlen, "reading state: %s", store_errmsg(s));
        rc = -1;
    }
    sqlite3_reset(q);
    store_unlock(s);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------- */

int state_open(struct state **out, const struct state_limits *lim, struct store *store, char *err,
               size_t errlen)
{
    struct state *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_rwlock_init(&st->marks_lock, NULL);
    pthread_mutex_init(&st->bg_lock, NULL);
    pthread_cond_init(&st->bg_cond, NULL);
    pthread_mutex_init(&st->degraded_lock, NULL);
    for (int k = 0; k < SK_COUNT; k++) {
        struct map *m = &st->maps[k];
        /* What a namespace changed on a fixture user, its SMS phones and its
         * confirm keys come with onlyoffice logins, a few per session at most:
         * a quarter of the sessions' bound each keeps the total in budget. */
        long max = k == SK_SESSION ? lim->max_sessions
                   : (k == SK_OO_USER || k == SK_OO_SMS || k == SK_OO_CONFIRM)
                       ? (lim->max_sessions + 3) / 4
                       : lim->max_tokens;
        m->kind = (enum state_kind)k;
        m->rec_size = rec_sizes[k];
        /* Sessions are listed newest change first: their list keeps that order
         * (so a page is read from the front of each shard), and the least
         * recently changed go first. */
        m->by_change = k == SK_SESSION;
        /* A shard per 256 records at least, up to STATE_SHARDS. */
        m->bits = 0;
        while (m->bits < SHARD_BITS && (256L << (m->bits + 1)) <= max)
            m->bits++;
        long nshards = 1L << m->bits;
        m->max_per_shard = (size_t)((max + nshards - 1) / nshards);
        if (m->max_per_shard == 0)
            m->max_per_shard = 1;
        for (size_t i = 0; i < STATE_SHARDS; i++) {
            struct shard *sh = &m->shards[i];
            pthread_mutex_init(&sh->lock, NULL);
            sh->nbuckets = 16;
            sh->buckets = calloc(sh->nbuckets, sizeof *sh->buckets);
            sh->lru.lnext = sh->lru.lprev = &sh->lru;
            sh->dirty.dnext = sh->dirty.dprev = &sh->dirty;
            if (!sh->buckets) {
                snprintf(err, errlen, "out of memory");
                state_close(st);
                return -1;
            }
        }
    }
    st->store = store;
    st->loading = 1;
    int loaded = store ? state_load(st, err, errlen) : 0;
    st->loading = 0;
    if (loaded) {
        state_close(st);
        return -1;
    }
    if (pthread_create(&st->sweeper, NULL, sweeper_main, st) == 0)
        st->sweeper_started = 1;
    if (store && pthread_create(&st->writer, NULL, writer_main, st) == 0)
        st->writer_started = 1;
    *out = st;
    return 0;
}

void state_close(struct state *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->bg_lock);
    st->stopping = 1;
    pthread_cond_broadcast(&st->bg_cond);
    pthread_mutex_unlock(&st->bg_lock);
    if (st->sweeper_started)
        pthread_join(st->sweeper, NULL);
    if (st->writer_started)
        pthread_join(st->writer, NULL);
    if (st->store)
        write_round(st);
    for (int k = 0; k < SK_COUNT; k++) {
        for (size_t i = 0; i < STATE_SHARDS; i++) {
            struct shard *sh = &st->maps[k].shards[i];
            if (sh->lru.lnext)
                for (struct state_rec *r = sh->lru.lnext, *next; r != &sh->lru; r = next) {
                    next = r->lnext;
                    rec_free(r);
                }
            pending_free(sh->deleted);
            free(sh->buckets);
            pthread_mutex_destroy(&sh->lock);
        }
    }
    pending_free(st->resets);
    metas_free(st->metas);
    for (size_t i = 0; i < st->nmarks; i++)
        free(st->marks[i].ns);
    free(st->marks);
    pthread_rwlock_destroy(&st->marks_lock);
    pthread_mutex_destroy(&st->bg_lock);
    pthread_cond_destroy(&st->bg_cond);
    pthread_mutex_destroy(&st->degraded_lock);
    free(st);
}

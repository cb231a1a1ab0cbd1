/*
 * state: everything a running server learns from traffic — each identity's
 * scenario session and counters, the tokens the emulated APIs issue, SMS
 * codes, confirm keys and per-namespace user changes — held in memory.
 *
 * Records live in striped hash maps, one map per kind: a record's shard lock
 * is held while a caller reads or changes it, so transitions of one identity
 * are atomic while other identities go on in parallel. Every map is bounded
 * (least recently used first out). A reset, of everything or of one
 * namespace, only raises a sequence mark: older records stop being seen at
 * once and a background sweeper frees them. With a file database the changed
 * records are written behind to SQLite by one writer thread every
 * STATE_FLUSH_MS milliseconds and loaded back at start.
 */
#ifndef AUTHMOCK_STATE_H
#define AUTHMOCK_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#define STATE_FLUSH_MS    50
#define STATE_KEY_SEP     '\x1f'
#define STATE_COUNTER_CAP 4096 /* events a windowed counter remembers at most */
#define MESH_CONN_TOKENS  8    /* token pairs kept per mesh connection */
#define OO_SMS_KEEP       50   /* messages kept per phone */

struct store;

enum state_kind {
    SK_SESSION,      /* ns|api|identity: a scenario session or an attempts counter */
    SK_MESH_CONN,    /* ns|userId|type|accountId: one broker connection and its tokens */
    SK_MESH_ACCESS,  /* ns|accessToken -> connection key */
    SK_MESH_REFRESH, /* ns|refreshToken -> connection key */
    SK_OO_TOKEN,     /* ns|token */
    SK_OO_USER,      /* ns|userId: what the namespace changed on a fixture user */
    SK_OO_SMS,       /* ns|phone: the messages sent to one phone */
    SK_OO_CONFIRM,   /* ns|key */
    SK_COUNT
};

/* The header every record starts with; the fields are the map's. */
struct state_rec {
    struct state_rec *hnext, *lprev, *lnext, *dprev, *dnext;
    uint64_t hash;
    uint64_t seq;  /* creation: compared with reset marks */
    uint64_t tick; /* last change: the sessions list's order and paging cursor */
    unsigned char kind, dirty;
    unsigned short nslen; /* the namespace is key[0..nslen) */
    char *key;            /* stored with the record */
};

struct state_counter {
    char name[65];
    long n;    /* events of a counter without a window */
    double *t; /* times of the events of a windowed counter, oldest first */
    size_t nt, cap;
};

struct state_session {
    struct state_rec rec;
    char scenario[65];
    char state[65];
    double entered_at, blocked_until, updated_at;
    int block_limit;
    cJSON *vars;
    struct state_counter *ctrs;
    size_t nctrs;
};

struct mesh_pair {
    char access[40], refresh[40];
    double issued, expires, refresh_expires;
    int revoked;
};

struct state_mesh_conn {
    struct state_rec rec; /* key: ns|userId|type|accountId */
    char *username;       /* the fixture user and account the tokens were issued for, */
    int account_index;    /* so a refresh rebuilds the account from the fixtures */
    struct mesh_pair *pairs;
    int npairs; /* newest last; at most MESH_CONN_TOKENS */
};

struct state_link { /* an index record: points at another record's key */
    struct state_rec rec;
    const char *target; /* stored with the record */
};

struct state_oo_token {
    struct state_rec rec;
    char user_id[65];
    double expires;
    int session, revoked;
};

struct state_oo_user {
    struct state_rec rec;
    int app_connected, phone_activated;
    char phone[72];
    char *used_codes; /* backup codes used, ",a,b,"; NULL while none */
};

struct oo_sms_msg {
    char code[8];
    double sent, expires;
    int used;
};

struct state_oo_sms {
    struct state_rec rec;
    char phone[72];
    struct oo_sms_msg *msgs;
    int nmsgs; /* newest last; at most OO_SMS_KEEP */
};

struct state_oo_confirm {
    struct state_rec rec;
    char user_id[65], type[40];
    double expires;
};

struct state_limits {
    long max_sessions; /* sessions, user changes, SMS phones, confirm keys */
    long max_tokens;   /* mesh connections and their indexes, onlyoffice tokens */
};

struct state;
struct state_lock {
    void *shard;
};

/* Opens the state; with `store` (a file database) it loads what the store
 * holds and starts the writer. */
int state_open(struct state **out, const struct state_limits *lim, struct store *store, char *err,
               size_t errlen);
/* Writes what is pending and stops the threads. */
void state_close(struct state *st);

/* Builds "ns<SEP>a<SEP>b..." into buf; returns its length, or -1 when it does not fit. */
int state_key(char *buf, size_t cap, const char *ns, const char *const *parts, size_t nparts);
/* The key of `name` (a token, a user id, a phone...) in one namespace: 0, or -1. */
int state_ns_key(const char *ns, const char *name, char *out, size_t cap);

/* The record of `kind` under `key`, with its shard locked in *held (also when
 * NULL is returned: the caller may then state_put). With `create`, a missing
 * record is created zeroed and returned. Unlock with state_unlock. */
void *state_get(struct state *st, enum state_kind kind, const char *key, int create,
                struct state_lock *held);
void state_unlock(struct state_lock *held);
/* Marks a record changed (written behind; moved to the front of its list). Lock held. */
void state_touch(struct state *st, void *rec);
/* Forgets a record. Lock held. */
void state_remove(struct state *st, void *rec);

/* Index records (SK_MESH_ACCESS, SK_MESH_REFRESH): key -> target key. */
void state_link_put(struct state *st, enum state_kind kind, const char *key, const char *target);
/* Copies the target into out; returns 0, or -1 when there is none (or it does not fit). */
int state_link_get(struct state *st, enum state_kind kind, const char *key, char *out, size_t cap);
void state_link_drop(struct state *st, enum state_kind kind, const char *key);

/* One record of `kind` and key at a time, locked, for admin listings: fn is
 * called with the shard locked and must not call state_get. */
typedef void (*state_each_fn)(void *rec, void *cls);
void state_each(struct state *st, enum state_kind kind, state_each_fn fn, void *cls);
/* Like state_each, from each shard's most recently changed record on (for
 * sessions, whose lists are in order of change); fn returns non-zero to go on
 * to the next shard. */
typedef int (*state_each_until_fn)(void *rec, void *cls);
void state_each_recent(struct state *st, enum state_kind kind, state_each_until_fn fn,
                       void (*shard_begin)(void *cls), void *cls);
size_t state_count(struct state *st, enum state_kind kind);

/* Forgets everything (ns NULL) or one namespace: O(1); memory is freed behind. */
void state_reset(struct state *st, const char *ns);

/* Counters of a session. Lock held. */
struct state_counter *state_counter(struct state_session *ss, const char *name, int create);
void state_counter_add(struct state_counter *c, double now, double window);
long state_counter_count(struct state_counter *c, double now, double window);
double state_counter_oldest(struct state_counter *c, double now, double window);
void state_counter_clear(struct state_counter *c);
void state_counters_clear(struct state_session *ss);

/* NULL while state writes succeed; else why they fail (health answers 503). */
const char *state_degraded(struct state *st);
/* "authmock: cannot store state: REASON" (the degraded reason, else out of memory). */
void state_error_message(struct state *st, char *out, size_t cap);
/* Written-behind changes not yet in the store (for tests and shutdown). */
void state_flush(struct state *st);
/* Stores `value` under `key` in the store's meta table with the writer's next
 * round, in the transaction of the state it goes with (nothing without a
 * file database). 0, or -1 when out of memory. */
int state_put_meta(struct state *st, const char *key, const char *value);

#endif

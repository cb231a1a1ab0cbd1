/*
 * scenario: the scenario engine. A scenario is a JSON state machine bound to
 * requests of one API; each identity (per namespace) walks its own copy. This
 * module parses and validates scenario files, chooses the scenario that owns
 * a request, and performs the transition (counters, windows, lockouts, rate
 * limits, expiries on the mock clock) atomically in the store. It knows no
 * API: it hands back the reply object of the chosen step for the API module
 * to render.
 */
#ifndef AUTHMOCK_SCENARIO_H
#define AUTHMOCK_SCENARIO_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "jsonutil.h"
#include "store.h"

/* What an API tells the engine about itself, for validating scenario files. */
struct scenario_api {
    const char *name;
    /* Facts the API derives rather than reads from the request (mesh schemeType,
     * onlyoffice passwordValid...): a binding on one of them counts less than a
     * binding on a request field, so "username X" beats "schemeType Y". */
    const char *const *derived;
    /* Adds problems found in one reply object (its json-path is `path`). */
    void (*validate_reply)(const cJSON *reply, const char *file, const char *path,
                           struct problems *p);
};

struct scenario;
struct scenario_set;
struct scenario_engine;

/* Parses one scenario document. Returns NULL and adds problems when it is invalid.
 * A parsed scenario is never changed: sets share it, each holding a reference. */
struct scenario *scenario_parse(const char *file, const char *text, size_t len,
                                const struct scenario_api *apis, size_t napis, struct problems *p);
/* Releases a reference (the one scenario_parse returned); the last frees it. */
void scenario_free(struct scenario *s);
const char *scenario_name(const struct scenario *s);
const char *scenario_api_name(const struct scenario *s);
const char *scenario_origin(const struct scenario *s);
const cJSON *scenario_doc(const struct scenario *s);

/* A set of scenarios, sorted by name and indexed by name and by binding.
 * Adding a scenario (taking over the caller's reference) whose name is taken
 * replaces it. A set is changed only before it is published to the engine;
 * after that it is read-only and shared. */
struct scenario_set *scenario_set_new(void);
int scenario_set_add(struct scenario_set *set, struct scenario *s);
size_t scenario_set_count(const struct scenario_set *set);
/* By name, in constant time; _api also requires the scenario's api. */
const struct scenario *scenario_set_find(const struct scenario_set *set, const char *name);
const struct scenario *scenario_set_find_api(const struct scenario_set *set, const char *name,
                                             const char *api);
void scenario_set_release(struct scenario_set *set);

/* Text derived from a set alone (with data that never changes while the
 * server runs), built on first use and kept until the set is freed. One slot
 * per use. */
enum scenario_memo {
    SCENARIO_MEMO_MESH_SCHEMES,
    SCENARIO_MEMO_MESH_SCHEMES_JOURNAL, /* the journal's stored form of the schemes */
    SCENARIO_MEMO_MESH_SCHEMES_GZIP,    /* the schemes gzipped, for clients that take it */
    SCENARIO_MEMO_COUNT
};
typedef char *(*scenario_memo_fn)(const struct scenario_set *set, void *cls, size_t *len);
/* The slot's text, building it with `build` (which returns malloc'd text) when
 * it is the first use; NULL when building fails. Safe from any thread. */
const char *scenario_set_memo(struct scenario_set *set, enum scenario_memo slot,
                              scenario_memo_fn build, void *cls, size_t *len);
/* Loads every *.json file of `dir` into `set`. Returns the number of problems added. */
int scenario_load_dir(struct scenario_set *set, const char *dir, const struct scenario_api *apis,
                      size_t napis, struct problems *p);
/* The same for a live reload while `served` is in use: when two files name
 * one scenario, the problem is reported on the one that did not serve it. */
int scenario_reload_dir(struct scenario_set *set, const char *dir, const struct scenario_api *apis,
                        size_t napis, const struct scenario_set *served, struct problems *p);
/* scenario_reload_dir in two halves, so the caller can do other work while the
 * files are parsed: scenario_load_start lists them and starts parsing on
 * other threads; scenario_load_finish parses what is left on the calling
 * thread, waits for the rest, and adds them to `set` with the same problems,
 * in the same order, as scenario_reload_dir (`served` may be NULL). Every
 * started load is finished. */
struct scenario_load;
struct scenario_load *scenario_load_start(const char *dir, const struct scenario_api *apis,
                                          size_t napis);
int scenario_load_finish(struct scenario_load *load, struct scenario_set *set,
                         const struct scenario_set *served, struct problems *p);

/* Adds to `set` the scenarios a file database kept from admin uploads (they
 * replace files' scenarios of the same name, as the uploads did); one that no
 * longer validates is skipped with a log line. Returns how many were added. */
int scenario_load_uploaded(struct scenario_set *set, struct store *store,
                           const struct scenario_api *apis, size_t napis);

struct state;
struct scenario_engine *scenario_engine_new(struct store *store, struct state *state,
                                            struct scenario_set *set);
void scenario_engine_free(struct scenario_engine *e);
size_t scenario_engine_count(struct scenario_engine *e);

/* What one step of a scenario tells a client: used to describe flows (the mesh
 * authenticationSchemes endpoint) from the same data that drives them. */
struct scenario_step_info {
    const char *scenario;
    const cJSON *reply;
    const char *next_fields[16]; /* request fields the following state's steps test */
    size_t nnext_fields;
};
typedef void (*scenario_step_fn)(const struct scenario_step_info *info, void *cls);
/* Calls fn for every step of every scenario of `api` whose binding does not
 * contradict `facts` (conditions on fields absent from facts are ignored). */
void scenario_engine_describe(struct scenario_engine *e, const char *api, const cJSON *facts,
                              scenario_step_fn fn, void *cls);
void scenario_set_describe(const struct scenario_set *set, const char *api, const cJSON *facts,
                           scenario_step_fn fn, void *cls);

/* The current set, held until scenario_set_release. */
struct scenario_set *scenario_engine_acquire(struct scenario_engine *e);
/* The writers below are serialised: concurrent ones each apply in turn, the
 * last one's change standing. */
/* Replaces the current set (taking over the caller's reference) and rewrites
 * the store's scenarios table from it. */
void scenario_engine_swap(struct scenario_engine *e, struct scenario_set *set);
/* Adds or replaces one scenario (taking over the caller's reference) and
 * writes its row only; *replaced says whether the name was taken. 0 or -1. */
int scenario_engine_put(struct scenario_engine *e, struct scenario *s, int *replaced);
/* Removes one scenario and its row: 0, 1 when there is none, -1 on error. */
int scenario_engine_delete(struct scenario_engine *e, const char *name);
/* Replaces the current set with `files` (taken over) plus the current set's
 * scenarios of origin `keep` that `files` does not name, and rewrites the
 * table. Returns how many scenarios the new set has. */
size_t scenario_engine_reload(struct scenario_engine *e, struct scenario_set *files,
                              const char *keep);
/* A new set sharing every scenario of `set` whose origin is (or, with
 * `invert`, is not) `origin`; NULL origin copies all. apis is unused. */
struct scenario_set *scenario_set_copy(const struct scenario_set *set, const char *origin,
                                       int invert, const struct scenario_api *apis, size_t napis);
int scenario_set_remove(struct scenario_set *set, const char *name);
/* Moves every scenario of `src` whose name `dst` lacks into `dst`; releases `src`. */
void scenario_set_merge(struct scenario_set *dst, struct scenario_set *src);
const struct scenario *scenario_set_at(const struct scenario_set *set, size_t i);
/* Names of the states of `s`, for messages; and whether `state` is one. */
int scenario_has_state(const struct scenario *s, const char *state);
void scenario_state_names(const struct scenario *s, struct buf *out);

/* Sessions, for the admin API: the `limit` most recently changed identities
 * (of a namespace and API when given) whose cursor is below `before` (0: no
 * bound), newest first; *next is the cursor that continues, 0 at the end. */
cJSON *scenario_sessions(struct scenario_engine *e, const char *ns, const char *api, long limit,
                         uint64_t before, uint64_t *next);
/* One identity's session, or NULL. */
cJSON *scenario_session(struct scenario_engine *e, const char *ns, const char *api,
                        const char *identity);
/* Forces an identity into `state` of `scenario` (its current one when NULL):
 * the state's clock and all counters restart, any block ends. Returns 0,
 * SCENARIO_UNBOUND when there is no such session and no scenario was named,
 * SCENARIO_UNKNOWN_FORCED for an unknown scenario, SCENARIO_NO_STEP for an
 * unknown state. */
int scenario_force(struct scenario_engine *e, const char *ns, const char *api, const char *identity,
                   const char *scenario, const char *state);

/* Rewrites the store's scenarios table from the current set (at start). */
int scenario_engine_persist(struct scenario_engine *e);

struct scenario_request {
    const char *api;
    const char *ns;       /* namespace, "" when none */
    const char *identity; /* API-specific identity key */
    const char *forced;   /* X-Authmock-Scenario, or NULL */
    const cJSON *facts;   /* the request fields steps and bindings match against */
    /* The request header `name` (any letter case), or NULL: what "headers"
     * conditions test. May be NULL when the request has no headers. */
    const char *(*header)(const void *cls, const char *name);
    const void *header_cls;
    /* Fact names whose string values the identity remembers as variables, so a
     * later request that leaves them out (an MFA step) still knows them. */
    const char *const *remember;
    size_t nremember;
    /* Fill the outcome's `why` (for the journal): a few counter reads more. */
    int explain;
};

enum scenario_result {
    SCENARIO_OK = 0,
    SCENARIO_UNBOUND = -1,        /* no scenario binds this request */
    SCENARIO_UNKNOWN_FORCED = -2, /* X-Authmock-Scenario names no scenario of this API */
    SCENARIO_NO_STEP = -3,        /* the current state has no step matching the request */
    SCENARIO_STORE_ERROR = -4,
};

/* Why a scenario answered as it did, recorded during the transition as plain
 * numbers (indexes into the scenario) so that explaining costs the request
 * path nothing until the journal renders it. */
enum scenario_bound {
    SCENARIO_BOUND_NONE,
    SCENARIO_BOUND_HEADER,   /* X-Authmock-Scenario */
    SCENARIO_BOUND_BINDING,  /* its binding, with a condition on a request field or header */
    SCENARIO_BOUND_FALLBACK, /* its binding tests derived facts only, or nothing */
    SCENARIO_BOUND_SESSION,  /* the identity's scenario, kept while the request does not
                                contradict its binding */
};
#define SCENARIO_EXPLAIN_COUNTERS 16

struct scenario_explain {
    enum scenario_bound bound_by;
    int fresh;         /* the identity started the scenario with this request */
    int state;         /* the state the steps were tried in, or -1 */
    int step;          /* the index of the step that answered, or -1 */
    int limit;         /* the limit that answered, or -1 */
    int limit_started; /* ... and this request started its block */
    long limit_count;  /* its counter's events when it answered */
    int block_started; /* a limit whose block the step's counting started, or -1 */
    long block_count;
    double age;           /* seconds the identity had been in `state` */
    double blocked_until; /* mock clock */
    size_t ncounters;
    long counters[SCENARIO_EXPLAIN_COUNTERS]; /* after the request, by counter index */
};

struct scenario_outcome {
    struct scenario_set *set; /* held until scenario_outcome_release */
    const struct scenario *scenario;
    const cJSON *reply; /* the chosen step's or limit's reply; owned by the set */
    cJSON *vars;        /* the identity's variables after the step; owned */
    char state_from[64];
    char state_to[64];
    long retry_after;            /* seconds until a block ends, when `limited` */
    int limited;                 /* the reply is a limit's: the identity is blocked */
    struct scenario_explain why; /* filled when the request asked to `explain` */
};

int scenario_step(struct scenario_engine *e, const struct scenario_request *req,
                  struct scenario_outcome *out);
void scenario_outcome_release(struct scenario_outcome *out);

/* Appends the journal's `match` object for a step's result `rc` (before the
 * outcome is released; `req` as it was stepped): the scenario and why it
 * bound, the state before and after, the step or limit that answered, the
 * counters after, and, when no step answered, the nearest candidates with the
 * conditions they failed. Values of secret-looking fields (and of the field
 * `secret`, when given) appear as "***". Returns 0 or -1. */
int scenario_explain_json(const struct scenario_request *req, const struct scenario_outcome *out,
                          int rc, const char *secret, struct buf *b);
/* Whether a condition or header name is one whose values the journal masks. */
int scenario_secret_name(const char *name, const char *secret);

/* Replaces "${name}" in every string of `tree` with the variable `name` of `vars`. */
int scenario_expand(cJSON *tree, const cJSON *vars);

#endif

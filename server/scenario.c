/*
 * scenario: parsing, validation, binding and transitions.
 *
 * A scenario file is compiled once into plain structs (conditions with their
 * regexes compiled, state names turned into indexes); the request path only
 * evaluates them. Per-identity state (the session and its counters) is a
 * record of the state module, read and changed while its shard lock is held,
 * so two concurrent requests for one identity never both win a transition,
 * while other identities step in parallel.
 */
#include "scenario.h"
#include "clock.h"
#include "heap.h"
#include "log.h"
#include "arena.h"
#include "rng.h"
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define REQUESTS_COUNTER "requests"

enum cond_op { COND_EQUALS, COND_PRESENT, COND_ABSENT, COND_REGEX, COND_VAR, COND_ONE_OF };

struct field_cond {
    char *field; /* a fact's dotted name, or a header's name */
    int header;  /* tests the request header `field` (from "headers") */
    enum cond_op op;
    const cJSON *value; /* EQUALS, ONE_OF: points into the scenario document */
    const char *var;    /* VAR */
    regex_t re;         /* REGEX */
};

struct count_cond {
    int counter;
    long at_least; /* -1 when unset */
    long below;    /* -1 when unset */
};

enum gen_kind { GEN_UUID, GEN_CODE6, GEN_TOKEN };

struct generate {
    const char *var;
    enum gen_kind kind;
};

struct step {
    const cJSON *when;       /* the step's "when" as written, for explanations */
    const char *description; /* or NULL */
    struct field_cond *conds;
    size_t nconds;
    struct count_cond *counts;
    size_t ncounts;
    double age_at_least, age_below; /* seconds in the current state; < 0 when unset */
    const cJSON *reply;
    int next; /* state index, or -1 to stay */
    int *incr;
    size_t nincr;
    struct generate *gens;
    size_t ngens;
};

struct state {
    const char *name;
    struct step *steps;
    size_t nsteps;
};

struct limit {
    int counter;
    long max;
    double window;
    double block; /* 0: until the oldest event leaves the window */
    int on_next;  /* "blockOn": "next": the block starts with the request after max events */
    const cJSON *reply;
};

struct scenario {
    char *name;
    char *api;
    char *origin;
    cJSON *doc;
    struct field_cond *bind;
    size_t nbind;
    int initial;
    struct state *states;
    size_t nstates;
    struct limit *limits;
    size_t nlimits;
    char **counters;
    size_t ncounters;
    double *window;       /* per counter: the largest window of a limit on it, 0 if none */
    int requests_counter; /* index of "requests", or -1 */
    int weight;           /* how specific the binding is: 2 per request field, 1 per derived fact */
    int request_conds;    /* conditions on request fields and headers: 0 for a fallback */
    /* Sets share a parsed scenario: each holds a reference, the last frees it. */
    _Atomic int refs;
    uint64_t name_hash;
    /* The binding's equality on an indexed request field (see index_fields),
     * under which sets file the scenario; NULL key_field when it has none. */
    const char *key_field;
    const char *key_value;
    uint64_t key_hash;
};

/* An open-addressing hash table (linear probing, power-of-two size, at most
 * half full) of scenario pointers, hashed by name or by binding key. It holds
 * no references of its own: the set's items array does. */
struct table {
    struct scenario **slots;
    size_t cap, n;
    int by_key;
};

struct memo {
    char *text;
    size_t len;
};

struct scenario_set {
    _Atomic int refs;
    struct scenario **items; /* sorted by name, so ties resolve the same way always */
    size_t n, cap;
    struct table names;      /* every scenario, by name */
    struct table keyed;      /* scenarios with a binding key, by (api, field, value) */
    struct scenario **loose; /* scenarios without one: choose() tries them always */
    size_t nloose, loose_cap;
    /* Built at most once per set (sets are never changed once published). */
    _Atomic(struct memo *) memo[SCENARIO_MEMO_COUNT];
};

struct scenario_engine {
    struct store *store;
    struct state *state;
    pthread_mutex_t set_lock;
    /* Serialises the writers (uploads, deletes, reloads): each copies the set
     * it replaces, so two at once would lose one's change. */
    pthread_mutex_t write_lock;
    struct scenario_set *set;
};

/* ---- parsing ---------------------------------------------------------- */

struct parser {
    const char *file;
    struct problems *p;
    struct scenario *s;
};

static void free_conds(struct field_cond *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].op == COND_REGEX)
            regfree(&c[i].re);
        free(c[i].field);
    }
    free(c);
}

void scenario_free(struct scenario *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    free_conds(s->bind, s->nbind);
    for (size_t i = 0; i < s->nstates; i++) {
        for (size_t j = 0; j < s->states[i].nsteps; j++) {
            struct step *st = &s->states[i].steps[j];
            free_conds(st->conds, st->nconds);
            free(st->counts);
            free(st->incr);
            free(st->gens);
        }
        free(s->states[i].steps);
    }
    free(s->states);
    free(s->limits);
    for (size_t i = 0; i < s->ncounters; i++)
        free(s->counters[i]);
    free(s->counters);
    free(s->window);
    cJSON_Delete(s->doc);
    free(s->name);
    free(s->api);
    free(s->origin);
    free(s);
}

static int counter_index(struct scenario *s, const char *name)
{
    for (size_t i = 0; i < s->ncounters; i++)
        if (strcmp(s->counters[i], name) == 0)
            return (int)i;
    char **c = realloc(s->counters, (s->ncounters + 1) * sizeof *c);
    double *w = realloc(s->window, (s->ncounters + 1) * sizeof *w);
    if (c)
        s->counters = c;
    if (w)
        s->window = w;
    if (!c || !w)
        return -1;
    s->counters[s->ncounters] = strdup(name);
    s->window[s->ncounters] = 0;
    if (strcmp(name, REQUESTS_COUNTER) == 0)
        s->requests_counter = (int)s->ncounters;
    return (int)s->ncounters++;
}

static int state_index(const struct scenario *s, const char *name)
{
    for (size_t i = 0; i < s->nstates; i++)
        if (strcmp(s->states[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64)
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
              *n == '-' || *n == '_' || *n == '.'))
            return 0;
    return 1;
}

static int is_scalar(const cJSON *v)
{
    return cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v) || cJSON_IsNull(v);
}

/* Parses a number member that must be a non-negative whole number. */
static int parse_count(struct parser *ps, const cJSON *v, const char *path, long *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble > 1e9) {
        problems_add(ps->p, ps->file, path, "must be a whole number from 0 to 1000000000");
        return -1;
    }
    *out = (long)v->valuedouble;
    return 0;
}

static int parse_seconds(struct parser *ps, const cJSON *v, const char *path, double *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9) {
        problems_add(ps->p, ps->file, path, "must be a number of seconds from 0 to 1000000000");
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* A field condition: a scalar (equals) or an object with exactly one operator. */
static int parse_field_cond(struct parser *ps, const cJSON *v, const char *path,
                            struct field_cond *c)
{
    memset(c, 0, sizeof *c);
    c->field = strdup(v->string);
    if (is_scalar(v)) {
        c->op = COND_EQUALS;
        c->value = v;
        return 0;
    }
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) != 1) {
        problems_add(ps->p, ps->file, path,
                     "must be a value to equal, or an object with one of equals, present, "
                     "absent, regex, var, oneOf");
        c->op = COND_PRESENT;
        return -1;
    }
    const cJSON *op = v->child;
    char sub[1024];
    json_path_join(sub, sizeof sub, path, 600, op->string, 400);
    if (strcmp(op->string, "equals") == 0) {
        c->op = COND_EQUALS;
        c->value = op;
    } else if (strcmp(op->string, "present") == 0 || strcmp(op->string, "absent") == 0) {
        if (!cJSON_IsTrue(op)) {
            problems_add(ps->p, ps->file, sub, "must be true");
            c->op = COND_PRESENT;
            return -1;
        }
        c->op = op->string[0] == 'p' ? COND_PRESENT : COND_ABSENT;
    } else if (strcmp(op->string, "regex") == 0) {
        c->op = COND_PRESENT; /* until the regex compiles, so free_conds stays safe */
        if (!cJSON_IsString(op)) {
            problems_add(ps->p, ps->file, sub, "must be a string");
            return -1;
        }
        int rc = regcomp(&c->re, op->valuestring, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[200];
            regerror(rc, &c->re, msg, sizeof msg);
            problems_add(ps->p, ps->file, sub, "invalid regular expression: %s", msg);
            return -1;
        }
        c->op = COND_REGEX;
        c->value = op; /* the pattern, for explanations */
    } else if (strcmp(op->string, "var") == 0) {
        if (!cJSON_IsString(op) || !valid_name(op->valuestring)) {
            problems_add(ps->p, ps->file, sub, "must be a variable name");
            c->op = COND_PRESENT;
            return -1;
        }
        c->op = COND_VAR;
        c->var = op->valuestring;
    } else if (strcmp(op->string, "oneOf") == 0) {
        if (!cJSON_IsArray(op) || cJSON_GetArraySize(op) == 0) {
            problems_add(ps->p, ps->file, sub, "must be a non-empty array of values");
            c->op = COND_PRESENT;
            return -1;
        }
        c->op = COND_ONE_OF;
        c->value = op;
    } else {
        problems_add(ps->p, ps->file, sub,
                     "unknown operator (use equals, present, absent, regex, var or oneOf)");
        c->op = COND_PRESENT;
        return -1;
    }
    return 0;
}

/* Adds a problem for every key of `obj` that an earlier key repeats, and
 * returns whether there was one. The parsers size what they keep for an
 * object by its keys, once per key: a step with "count" twice overran its
 * counters, and a key given twice is a mistake in a file anyway. */
static int duplicate_keys(struct parser *ps, const cJSON *obj, const char *path)
{
    int found = 0;
    for (const cJSON *a = obj ? obj->child : NULL; a; a = a->next)
        for (const cJSON *b = obj->child; b != a; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0) {
                char sub[1024];
                json_path_join(sub, sizeof sub, path, 600, a->string, 400);
                problems_add(ps->p, ps->file, sub, "is given twice");
                found = 1;
                break;
            }
    return found;
}

static void parse_counter_conds(struct parser *ps, const cJSON *v, const char *path,
                                struct step *st)
{
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) == 0) {
        problems_add(ps->p, ps->file, path,
                     "must be an object of counter names to {\"atLeast\": N} or {\"below\": N}");
        return;
    }
    if (duplicate_keys(ps, v, path))
        return;
    st->counts = calloc((size_t)cJSON_GetArraySize(v), sizeof *st->counts);
    const cJSON *c;
    cJSON_ArrayForEach(c, v)
    {
        char sub[1024];
        json_path_join(sub, sizeof sub, path, 600, c->string, 400);
        struct count_cond *cc = &st->counts[st->ncounts++];
        cc->counter = counter_index(ps->s, c->string);
        cc->at_least = cc->below = -1;
        if (!cJSON_IsObject(c) || cJSON_GetArraySize(c) == 0) {
            problems_add(ps->p, ps->file, sub, "must be an object with atLeast and/or below");
            continue;
        }
        if (duplicate_keys(ps, c, sub))
            continue;
        const cJSON *b;
        cJSON_ArrayForEach(b, c)
        {
            char sub2[1200];
            json_path_join(sub2, sizeof sub2, sub, 700, b->string, 400);
            if (strcmp(b->string, "atLeast") == 0)
                parse_count(ps, b, sub2, &cc->at_least);
            else if (strcmp(b->string, "below") == 0)
                parse_count(ps, b, sub2, &cc->below);
            else
                problems_add(ps->p, ps->file, sub2, "unknown key (use atLeast or below)");
        }
    }
}

static void parse_age(struct parser *ps, const cJSON *v, const char *path, struct step *st)
{
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) == 0) {
        problems_add(ps->p, ps->file, path, "must be an object with atLeast and/or below seconds");
        return;
    }
    if (duplicate_keys(ps, v, path))
        return;
    const cJSON *b;
    cJSON_ArrayForEach(b, v)
    {
        char sub[1024];
        json_path_join(sub, sizeof sub, path, 600, b->string, 400);
        if (strcmp(b->string, "atLeast") == 0)
            parse_seconds(ps, b, sub, &st->age_at_least);
        else if (strcmp(b->string, "below") == 0)
            parse_seconds(ps, b, sub, &st->age_below);
        else
            problems_add(ps->p, ps->file, sub, "unknown key (use atLeast or below)");
    }
}

/* A header name is an RFC 9110 token. */
static int header_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 128)
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *n)))
            return 0;
    return 1;
}

/* "headers": {"X-Device-Id": condition, ...}: conditions on request headers,
 * with the operators of fields; a header's value is text, so a value to equal
 * (or each of oneOf) must be a string. */
static void parse_header_conds(struct parser *ps, const cJSON *v, const char *path,
                               struct field_cond *conds, size_t *nconds)
{
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) == 0) {
        problems_add(ps->p, ps->file, path, "must be an object of header names to conditions");
        return;
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, v)
    {
        char sub[1024];
        json_path_join(sub, sizeof sub, path, 600, h->string, 400);
        if (!header_name_ok(h->string)) {
            problems_add(ps->p, ps->file, sub,
                         "must be a header name: 1 to 128 letters, digits or !#$%%&'*+-.^_`|~");
            continue;
        }
        struct field_cond *c = &conds[(*nconds)++];
        if (parse_field_cond(ps, h, sub, c))
            continue;
        c->header = 1;
        int strings = 1;
        if (c->op == COND_EQUALS)
            strings = cJSON_IsString(c->value);
        else if (c->op == COND_ONE_OF)
            for (const cJSON *o = c->value->child; o; o = o->next)
                strings &= cJSON_IsString(o);
        if (!strings)
            problems_add(ps->p, ps->file, sub,
                         "a header's value is text: the value to equal (or each of oneOf) must "
                         "be a string");
    }
}

/* Parses an object of field conditions into conds (used by "bind" and "when");
 * "headers" holds conditions on request headers. */
static void parse_when(struct parser *ps, const cJSON *when, const char *path,
                       struct field_cond **conds, size_t *nconds, struct step *st)
{
    if (!cJSON_IsObject(when)) {
        problems_add(ps->p, ps->file, path, "must be an object of conditions");
        return;
    }
    if (duplicate_keys(ps, when, path))
        return;
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(when, "headers");
    size_t room = (size_t)cJSON_GetArraySize(when) + 1 +
                  (cJSON_IsObject(headers) ? (size_t)cJSON_GetArraySize(headers) : 0);
    *conds = calloc(room, sizeof **conds);
    const cJSON *c;
    cJSON_ArrayForEach(c, when)
    {
        char sub[1024];
        json_path_join(sub, sizeof sub, path, 600, c->string, 400);
        if (strcmp(c->string, "headers") == 0) {
            parse_header_conds(ps, c, sub, *conds, nconds);
            continue;
        }
        if (st && strcmp(c->string, "counter") == 0) {
            parse_counter_conds(ps, c, sub, st);
            continue;
        }
        if (st && strcmp(c->string, "stateAge") == 0) {
            parse_age(ps, c, sub, st);
            continue;
        }
        if (c->string[0] == '\0') {
            problems_add(ps->p, ps->file, sub, "a field name must not be empty");
            continue;
        }
        parse_field_cond(ps, c, sub, &(*conds)[*nconds]);
        (*nconds)++;
    }
}

static const char *const gen_names[] = {"uuid", "code6", "token"};

/* Whether a header can go out as written (RFC 9110 5.1, 5.5): a name of token
 * characters and a value without control characters but tab. libmicrohttpd
 * drops a name with white space without a word, and strict clients (Node's)
 * refuse a whole reply with any other break of these rules. */
static int header_sendable(const char *name, const char *value)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (!name[0])
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr(tchar, *c)))
            return 0;
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
            return 0;
    return 1;
}

static void validate_reply_common(struct parser *ps, const cJSON *reply, const char *path,
                                  const struct scenario_api *api)
{
    if (!cJSON_IsObject(reply)) {
        problems_add(ps->p, ps->file, path, "must be an object");
        return;
    }
    const cJSON *v;
    char sub[1024];
    if ((v = cJSON_GetObjectItemCaseSensitive(reply, "http"))) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "http", SIZE_MAX);
        /* A reply is a final answer: 1xx statuses are interim, and a 101 or
         * 103 sent as the answer leaves a client waiting for another. */
        if (!cJSON_IsNumber(v) || v->valuedouble < 200 || v->valuedouble > 599 ||
            v->valuedouble != floor(v->valuedouble))
            problems_add(ps->p, ps->file, sub, "must be an HTTP status from 200 to 599");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(reply, "headers"))) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "headers", SIZE_MAX);
        const cJSON *h;
        if (!cJSON_IsObject(v))
            problems_add(ps->p, ps->file, sub, "must be an object of header names to strings");
        else
            cJSON_ArrayForEach(h, v) if (!cJSON_IsString(h) ||
                                         !header_sendable(h->string, h->valuestring))
            {
                problems_add(ps->p, ps->file, sub,
                             "header '%s' must have a name of letters, digits and "
                             "!#$%%&'*+-.^_`|~ and a string value without control characters",
                             h->string);
            }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(reply, "delayMs"))) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "delayMs", SIZE_MAX);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 60000)
            problems_add(ps->p, ps->file, sub, "must be a number of milliseconds from 0 to 60000");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(reply, "fault"))) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "fault", SIZE_MAX);
        const char *f = cJSON_IsString(v) ? v->valuestring : "";
        if (strcmp(f, "drop") && strcmp(f, "truncate") && strcmp(f, "malformed"))
            problems_add(ps->p, ps->file, sub, "must be drop, truncate or malformed");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(reply, "retryAfter"))) {
        long n;
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "retryAfter", SIZE_MAX);
        parse_count(ps, v, sub, &n);
    }
    if (api && api->validate_reply)
        api->validate_reply(reply, ps->file, path, ps->p);
}

static void parse_step(struct parser *ps, const cJSON *sj, const char *path, struct step *st,
                       const struct scenario_api *api)
{
    st->next = -1;
    st->age_at_least = st->age_below = -1;
    if (!cJSON_IsObject(sj)) {
        problems_add(ps->p, ps->file, path, "a step must be an object");
        return;
    }
    if (duplicate_keys(ps, sj, path))
        return;
    const cJSON *k;
    char sub[1024];
    cJSON_ArrayForEach(k, sj)
    {
        json_path_join(sub, sizeof sub, path, 600, k->string, 400);
        if (strcmp(k->string, "when") == 0) {
            st->when = k;
            parse_when(ps, k, sub, &st->conds, &st->nconds, st);
        } else if (strcmp(k->string, "reply") == 0) {
            st->reply = k;
            validate_reply_common(ps, k, sub, api);
        } else if (strcmp(k->string, "next") == 0) {
            if (!cJSON_IsString(k) || state_index(ps->s, k->valuestring) < 0)
                problems_add(ps->p, ps->file, sub, "must name a state of this scenario");
            else
                st->next = state_index(ps->s, k->valuestring);
        } else if (strcmp(k->string, "count") == 0) {
            int n = cJSON_IsArray(k) ? cJSON_GetArraySize(k) : 1;
            st->incr = calloc((size_t)n, sizeof *st->incr);
            const cJSON *one = cJSON_IsArray(k) ? k->child : k;
            for (; one; one = cJSON_IsArray(k) ? one->next : NULL) {
                if (!cJSON_IsString(one) || !valid_name(one->valuestring)) {
                    problems_add(ps->p, ps->file, sub,
                                 "must be a counter name or an array of counter names");
                    break;
                }
                st->incr[st->nincr++] = counter_index(ps->s, one->valuestring);
            }
        } else if (strcmp(k->string, "generate") == 0) {
            if (!cJSON_IsObject(k)) {
                problems_add(ps->p, ps->file, sub,
                             "must be an object of variable names to uuid, code6 or token");
                continue;
            }
            if (duplicate_keys(ps, k, sub))
                continue;
            st->gens = calloc((size_t)cJSON_GetArraySize(k) + 1, sizeof *st->gens);
            const cJSON *g;
            cJSON_ArrayForEach(g, k)
            {
                int kind = -1;
                for (int i = 0; i < 3; i++)
                    if (cJSON_IsString(g) && strcmp(g->valuestring, gen_names[i]) == 0)
                        kind = i;
                if (kind < 0 || !valid_name(g->string)) {
                    problems_add(ps->p, ps->file, sub,
                                 "'%s' must map a variable name to uuid, code6 or token",
                                 g->string);
                    continue;
                }
                st->gens[st->ngens].var = g->string;
                st->gens[st->ngens++].kind = (enum gen_kind)kind;
            }
        } else if (strcmp(k->string, "description") == 0) {
            if (!cJSON_IsString(k))
                problems_add(ps->p, ps->file, sub, "must be a string");
            else
                st->description = k->valuestring;
        } else {
            problems_add(ps->p, ps->file, sub,
                         "unknown key (a step has when, reply, next, count, generate, "
                         "description)");
        }
    }
    if (!st->reply) {
        json_path_join(sub, sizeof sub, path, SIZE_MAX, "reply", SIZE_MAX);
        problems_add(ps->p, ps->file, sub, "is required");
    }
}

static void parse_limits(struct parser *ps, const cJSON *arr, const struct scenario_api *api)
{
    if (!cJSON_IsArray(arr)) {
        problems_add(ps->p, ps->file, "$.limits", "must be an array");
        return;
    }
    ps->s->limits = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *ps->s->limits);
    const cJSON *l;
    int i = 0;
    cJSON_ArrayForEach(l, arr)
    {
        char path[128], sub[1024];
        snprintf(path, sizeof path, "$.limits[%d]", i++);
        struct limit *lim = &ps->s->limits[ps->s->nlimits++];
        lim->counter = -1;
        if (!cJSON_IsObject(l)) {
            problems_add(ps->p, ps->file, path, "must be an object");
            continue;
        }
        if (duplicate_keys(ps, l, path))
            continue;
        const cJSON *k;
        cJSON_ArrayForEach(k, l)
        {
            json_path_join(sub, sizeof sub, path, 600, k->string, 400);
            if (strcmp(k->string, "counter") == 0) {
                if (!cJSON_IsString(k) || !valid_name(k->valuestring))
                    problems_add(ps->p, ps->file, sub, "must be a counter name");
                else
                    lim->counter = counter_index(ps->s, k->valuestring);
            } else if (strcmp(k->string, "max") == 0) {
                parse_count(ps, k, sub, &lim->max);
                if (lim->max == 0)
                    problems_add(ps->p, ps->file, sub, "must be at least 1");
            } else if (strcmp(k->string, "windowSeconds") == 0) {
                parse_seconds(ps, k, sub, &lim->window);
            } else if (strcmp(k->string, "blockSeconds") == 0) {
                parse_seconds(ps, k, sub, &lim->block);
            } else if (strcmp(k->string, "reply") == 0) {
                lim->reply = k;
                validate_reply_common(ps, k, sub, api);
            } else if (strcmp(k->string, "blockOn") == 0) {
                const char *v = cJSON_IsString(k) ? k->valuestring : "";
                if (strcmp(v, "max") && strcmp(v, "next"))
                    problems_add(ps->p, ps->file, sub, "must be max or next");
                lim->on_next = strcmp(v, "next") == 0;
            } else if (strcmp(k->string, "description") != 0) {
                problems_add(ps->p, ps->file, sub,
                             "unknown key (a limit has counter, max, windowSeconds, "
                             "blockSeconds, blockOn, reply)");
            }
        }
        static const char *const required[] = {"counter", "max", "windowSeconds", "reply"};
        for (size_t r = 0; r < 4; r++)
            if (!cJSON_GetObjectItemCaseSensitive(l, required[r])) {
                json_path_join(sub, sizeof sub, path, 600, required[r], 400);
                problems_add(ps->p, ps->file, sub, "is required");
            }
        if (lim->window <= 0 && cJSON_GetObjectItemCaseSensitive(l, "windowSeconds")) {
            json_path_join(sub, sizeof sub, path, SIZE_MAX, "windowSeconds", SIZE_MAX);
            problems_add(ps->p, ps->file, sub, "must be more than 0");
        }
        if (lim->counter >= 0 && lim->window > ps->s->window[lim->counter])
            ps->s->window[lim->counter] = lim->window;
    }
}

/* FNV-1a over each string and its terminator, so ("ab", "c") and ("a", "bc") differ. */
static uint64_t hash_str(uint64_t h, const char *s)
{
    do {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    } while (*s++);
    return h;
}

#define HASH_SEED 14695981039346656037ULL

static uint64_t key_hash(const char *api, const char *field, const char *value)
{
    return hash_str(hash_str(hash_str(HASH_SEED, api), field), value);
}

/* The request fields bindings are indexed by: the bundled scenarios bind
 * accounts by mesh `username` or onlyoffice `userName`, a few by broker
 * `type`. A binding holding an equality on one of these can only match a
 * request carrying that exact string, so choose() looks it up by the
 * request's value instead of trying every scenario. */
static const char *const index_fields[] = {"username", "userName", "type"};
#define NINDEX_FIELDS (sizeof index_fields / sizeof index_fields[0])

static void index_keys(struct scenario *s)
{
    s->name_hash = hash_str(HASH_SEED, s->name);
    for (size_t f = 0; f < NINDEX_FIELDS && !s->key_field; f++) {
        for (size_t i = 0; i < s->nbind; i++) {
            const struct field_cond *c = &s->bind[i];
            if (!c->header && c->op == COND_EQUALS && cJSON_IsString(c->value) &&
                strcmp(c->field, index_fields[f]) == 0) {
                s->key_field = c->field;
                s->key_value = c->value->valuestring;
                s->key_hash = key_hash(s->api, s->key_field, s->key_value);
                break;
            }
        }
    }
}

struct scenario *scenario_parse(const char *file, const char *text, size_t len,
                                const struct scenario_api *apis, size_t napis, struct problems *p)
{
    int before = p->count;
    size_t off = 0;
    enum json_error why;
    cJSON *doc = json_parse_why(text, len, &off, &why);
    if (!doc) {
        char where[64], what[128];
        snprintf(where, sizeof where, "$ (byte %zu)", off);
        problems_add(p, file, where, "%s", json_file_error(why, what, sizeof what));
        return NULL;
    }
    struct scenario *s = calloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    s->doc = doc;
    s->origin = strdup(file);
    s->requests_counter = -1;
    struct parser ps = {file, p, s};
    const struct scenario_api *api = NULL;

    if (!cJSON_IsObject(doc)) {
        problems_add(p, file, "$", "a scenario must be a JSON object");
        goto done;
    }
    static const char *const known[] = {"name",    "api",    "description", "bind",
                                        "initial", "states", "limits"};
    const cJSON *k;
    cJSON_ArrayForEach(k, doc)
    {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strcmp(k->string, known[i]) == 0;
        if (!ok) {
            char sub[300];
            snprintf(sub, sizeof sub, "$.%s", k->string);
            problems_add(p, file, sub,
                         "unknown key (a scenario has name, api, description, bind, initial, "
                         "states, limits)");
        }
    }
    duplicate_keys(&ps, doc, "$");
    const char *name = json_str(doc, "name");
    if (!name || !valid_name(name))
        problems_add(p, file, "$.name", "is required: 1 to 64 letters, digits, '-', '_' or '.'");
    else
        s->name = strdup(name);
    const char *api_name = json_str(doc, "api");
    for (size_t i = 0; api_name && i < napis; i++)
        if (strcmp(apis[i].name, api_name) == 0)
            api = &apis[i];
    if (!api) {
        struct buf names = {0};
        for (size_t i = 0; i < napis; i++)
            buf_printf(&names, "%s%s", i ? ", " : "", apis[i].name);
        problems_add(p, file, "$.api", "is required: one of %s", names.data ? names.data : "");
        buf_free(&names);
    } else {
        s->api = strdup(api_name);
    }
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(doc, "description");
    if (desc && !cJSON_IsString(desc))
        problems_add(p, file, "$.description", "must be a string");

    const cJSON *bind = cJSON_GetObjectItemCaseSensitive(doc, "bind");
    if (bind)
        parse_when(&ps, bind, "$.bind", &s->bind, &s->nbind, NULL);
    for (size_t i = 0; i < s->nbind; i++) {
        int derived = 0;
        for (const char *const *d = api && api->derived ? api->derived : NULL; d && *d; d++)
            derived |= !s->bind[i].header && strcmp(*d, s->bind[i].field) == 0;
        s->weight += derived ? 1 : 2;
        s->request_conds += !derived;
    }

    const cJSON *states = cJSON_GetObjectItemCaseSensitive(doc, "states");
    if (!cJSON_IsObject(states) || cJSON_GetArraySize(states) == 0) {
        problems_add(p, file, "$.states", "is required: an object of state names to step arrays");
        goto done;
    }
    if (duplicate_keys(&ps, states, "$.states"))
        goto done;
    /* Name every state first so "next" can refer forward. */
    s->states = calloc((size_t)cJSON_GetArraySize(states), sizeof *s->states);
    const cJSON *stj;
    cJSON_ArrayForEach(stj, states) s->states[s->nstates++].name = stj->string;
    size_t si = 0;
    cJSON_ArrayForEach(stj, states)
    {
        struct state *state = &s->states[si++];
        char path[300];
        json_path_join(path, sizeof path, "$.states", SIZE_MAX, stj->string, SIZE_MAX);
        if (!valid_name(stj->string))
            problems_add(p, file, path, "a state name is 1 to 64 letters, digits, '-', '_', '.'");
        if (!cJSON_IsArray(stj) || cJSON_GetArraySize(stj) == 0) {
            problems_add(p, file, path, "must be a non-empty array of steps");
            continue;
        }
        state->steps = calloc((size_t)cJSON_GetArraySize(stj), sizeof *state->steps);
        const cJSON *sj;
        cJSON_ArrayForEach(sj, stj)
        {
            char spath[340];
            json_path_index(spath, sizeof spath, path, state->nsteps);
            parse_step(&ps, sj, spath, &state->steps[state->nsteps++], api);
        }
    }
    const char *initial = json_str(doc, "initial");
    if (!initial || state_index(s, initial) < 0)
        problems_add(p, file, "$.initial", "is required: the name of a state");
    else
        s->initial = state_index(s, initial);

    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(doc, "limits");
    if (limits)
        parse_limits(&ps, limits, api);

done:
    if (p->count > before) {
        scenario_free(s);
        return NULL;
    }
    index_keys(s);
    return s;
}

const char *scenario_name(const struct scenario *s)
{
    return s->name;
}

const char *scenario_api_name(const struct scenario *s)
{
    return s->api;
}

const char *scenario_origin(const struct scenario *s)
{
    return s->origin;
}

const cJSON *scenario_doc(const struct scenario *s)
{
    return s->doc;
}

/* ---- sets ------------------------------------------------------------- */

static uint64_t slot_hash(const struct table *t, const struct scenario *s)
{
    return t->by_key ? s->key_hash : s->name_hash;
}

static void table_place(struct table *t, struct scenario *s)
{
    size_t mask = t->cap - 1, i = (size_t)slot_hash(t, s) & mask;
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = s;
    t->n++;
}

static int table_insert(struct table *t, struct scenario *s)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct scenario **slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        struct table grown = {slots, cap, 0, t->by_key};
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i])
                table_place(&grown, t->slots[i]);
        free(t->slots);
        *t = grown;
    }
    table_place(t, s);
    return 0;
}

/* Removes the slot holding `s`, shifting back the entries after it that
 * probed past it, so no lookup ever stops early at the hole. */
static void table_delete(struct table *t, const struct scenario *s)
{
    if (!t->cap)
        return;
    size_t mask = t->cap - 1, i = (size_t)slot_hash(t, s) & mask;
    while (t->slots[i] && t->slots[i] != s)
        i = (i + 1) & mask;
    if (!t->slots[i])
        return;
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = (size_t)slot_hash(t, t->slots[j]) & mask;
        /* The entry at j stays when its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        t->slots[i] = t->slots[j];
        i = j;
    }
    t->slots[i] = NULL;
    t->n--;
}

static int table_copy(struct table *dst, const struct table *src)
{
    *dst = *src;
    if (!src->cap)
        return 0;
    dst->slots = malloc(src->cap * sizeof *dst->slots);
    if (!dst->slots) {
        dst->cap = dst->n = 0;
        return -1;
    }
    memcpy(dst->slots, src->slots, src->cap * sizeof *dst->slots);
    return 0;
}

struct scenario_set *scenario_set_new(void)
{
    struct scenario_set *set = calloc(1, sizeof *set);
    if (!set)
        return NULL;
    atomic_init(&set->refs, 1);
    set->keyed.by_key = 1;
    for (size_t i = 0; i < SCENARIO_MEMO_COUNT; i++)
        atomic_init(&set->memo[i], NULL);
    return set;
}

static void drop_memos(struct scenario_set *set)
{
    for (size_t i = 0; i < SCENARIO_MEMO_COUNT; i++) {
        struct memo *m = atomic_exchange(&set->memo[i], NULL);
        if (m)
            free(m->text);
        free(m);
    }
}

/* Where `name` is in the sorted items, or where it would go (*found = 0). */
static size_t set_position(const struct scenario_set *set, const char *name, int *found)
{
    size_t lo = 0, hi = set->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(set->items[mid]->name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int index_add(struct scenario_set *set, struct scenario *s)
{
    if (table_insert(&set->names, s))
        return -1;
    if (s->key_field)
        return table_insert(&set->keyed, s);
    if (set->nloose == set->loose_cap) {
        size_t cap = set->loose_cap ? set->loose_cap * 2 : 16;
        struct scenario **loose = realloc(set->loose, cap * sizeof *loose);
        if (!loose)
            return -1;
        set->loose = loose;
        set->loose_cap = cap;
    }
    set->loose[set->nloose++] = s;
    return 0;
}

static void index_remove(struct scenario_set *set, const struct scenario *s)
{
    table_delete(&set->names, s);
    if (s->key_field) {
        table_delete(&set->keyed, s);
        return;
    }
    for (size_t i = 0; i < set->nloose; i++) {
        if (set->loose[i] == s) {
            set->loose[i] = set->loose[--set->nloose];
            return;
        }
    }
}

int scenario_set_add(struct scenario_set *set, struct scenario *s)
{
    int found;
    size_t at = set_position(set, s->name, &found);
    drop_memos(set);
    if (found) {
        index_remove(set, set->items[at]);
        scenario_free(set->items[at]);
        set->items[at] = s;
        return index_add(set, s);
    }
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        struct scenario **items = realloc(set->items, cap * sizeof *items);
        if (!items)
            return -1;
        set->items = items;
        set->cap = cap;
    }
    if (index_add(set, s))
        return -1;
    /* Inserted in place: re-sorting after every add made loading n files O(n² log n). */
    memmove(&set->items[at + 1], &set->items[at], (set->n - at) * sizeof *set->items);
    set->items[at] = s;
    set->n++;
    return 0;
}

const struct scenario *scenario_set_find(const struct scenario_set *set, const char *name)
{
    const struct table *t = &set->names;
    if (!t->cap)
        return NULL;
    uint64_t h = hash_str(HASH_SEED, name);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask; t->slots[i]; i = (i + 1) & mask)
        if (t->slots[i]->name_hash == h && strcmp(t->slots[i]->name, name) == 0)
            return t->slots[i];
    return NULL;
}

const struct scenario *scenario_set_find_api(const struct scenario_set *set, const char *name,
                                             const char *api)
{
    const struct scenario *s = scenario_set_find(set, name);
    return s && strcmp(s->api, api) == 0 ? s : NULL;
}

size_t scenario_set_count(const struct scenario_set *set)
{
    return set->n;
}

void scenario_set_release(struct scenario_set *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    for (size_t i = 0; i < set->n; i++)
        scenario_free(set->items[i]);
    free(set->items);
    free(set->names.slots);
    free(set->keyed.slots);
    free(set->loose);
    drop_memos(set);
    free(set);
}

const char *scenario_set_memo(struct scenario_set *set, enum scenario_memo slot,
                              scenario_memo_fn build, void *cls, size_t *len)
{
    struct memo *m = atomic_load(&set->memo[slot]);
    if (!m) {
        struct memo *mine = calloc(1, sizeof *mine);
        if (!mine)
            return NULL;
        mine->text = build(set, cls, &mine->len);
        if (!mine->text) {
            free(mine);
            return NULL;
        }
        /* Two threads may build at once: the first to publish wins, the other
         * frees its copy and answers with the winner's. */
        struct memo *expected = NULL;
        if (atomic_compare_exchange_strong(&set->memo[slot], &expected, mine)) {
            m = mine;
        } else {
            free(mine->text);
            free(mine);
            m = expected;
        }
    }
    *len = m->len;
    return m->text;
}

/* Loading a directory: the files are listed, then read and parsed on a few
 * threads (start-up with a thousand scenario files is mostly open/read/parse),
 * then added in name order on the caller's thread, so problems and twins come
 * out the same as with one thread. The helper threads start at once, and the
 * first thread to get there lists the directory, so neither the listing nor
 * a thread's start holds up the caller, who meanwhile does other work. Each
 * thread then claims the next unparsed file until none is left: a thread the
 * scheduler holds back (two cores shared with other work) delays the load by
 * at most the file it holds, and the caller's thread joins in as soon as it
 * finishes the load. */
struct load_file {
    char *path;
    struct scenario *s;
    struct problems p;
    int walked_only; /* the walk found it unreadable: p says why */
};

struct scenario_load {
    struct load_file *files;
    size_t n, cap;
    int walk_failed, walk_errno; /* the directory could not be read, and why */
    char *dir;
    const struct scenario_api *apis;
    size_t napis;
    _Atomic int listing; /* a thread has taken on listing the files */
    _Atomic size_t next; /* the next file to claim */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* listed, or done, changed */
    int listed;             /* the files are listed, under lock */
    size_t done;            /* files parsed, under lock */
    /* The caller and each helper hold one; the last to let go frees the
     * load, so the caller never waits for a helper that found no work. */
    _Atomic int refs;
};

static void collect_path(const char *path, const char *problem, void *cls)
{
    struct scenario_load *l = cls;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct load_file *f = realloc(l->files, cap * sizeof *f);
        if (!f)
            return;
        l->files = f;
        l->cap = cap;
    }
    struct load_file *f = &l->files[l->n];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path)
        return;
    /* Not a file to parse: its problem takes its place in name order. */
    if (problem) {
        f->walked_only = 1;
        problems_add(&f->p, path, "$", "%s", problem);
    }
    l->n++;
}

/* Lists the files, unless another thread has taken that on: then waits for
 * its list. */
static void load_list(struct scenario_load *l)
{
    if (atomic_exchange(&l->listing, 1) == 0) {
        int failed = dir_walk_json(l->dir, collect_path, l) != 0;
        int why = errno;
        pthread_mutex_lock(&l->lock);
        l->walk_failed = failed;
        l->walk_errno = why;
        l->listed = 1;
        pthread_cond_broadcast(&l->changed);
    } else {
        pthread_mutex_lock(&l->lock);
        while (!l->listed)
            pthread_cond_wait(&l->changed, &l->lock);
    }
    pthread_mutex_unlock(&l->lock);
}

/* Parses files until none is left to claim. */
static void load_work(struct scenario_load *l)
{
    size_t parsed = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&l->next, 1);
        if (i >= l->n)
            break;
        struct load_file *f = &l->files[i];
        if (f->walked_only) {
            parsed++;
            continue;
        }
        size_t len;
        char *text = file_read_regular(f->path, &len);
        if (text)
            f->s = scenario_parse(f->path, text, len, l->apis, l->napis, &f->p);
        else
            problems_add(&f->p, f->path, "$", "cannot be read: %s", strerror(errno));
        free(text);
        parsed++;
    }
    if (!parsed)
        return;
    pthread_mutex_lock(&l->lock);
    l->done += parsed;
    if (l->done == l->n)
        pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

static void load_release(struct scenario_load *l)
{
    if (atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
    free(l->dir);
    free(l);
}

static void *load_helper(void *arg)
{
    struct scenario_load *l = arg;
    heap_this_thread();
    load_list(l);
    load_work(l);
    load_release(l);
    return NULL;
}

struct scenario_load *scenario_load_start(const char *dir, const struct scenario_api *apis,
                                          size_t napis)
{
    struct scenario_load *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->dir = strdup(dir);
    if (!l->dir) {
        free(l);
        return NULL;
    }
    l->apis = apis;
    l->napis = napis;
    atomic_init(&l->listing, 0);
    atomic_init(&l->next, 0);
    atomic_init(&l->refs, 1);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    /* One thread per CPU, up to four, the caller's included. */
    enum { MAX_THREADS = 4 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nthreads = (size_t)(ncpu > 1 ? (ncpu < MAX_THREADS ? ncpu : MAX_THREADS) : 1);
    pthread_attr_t attr;
    if (nthreads > 1 && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        for (size_t t = 1; t < nthreads; t++) {
            pthread_t helper;
            atomic_fetch_add(&l->refs, 1);
            if (pthread_create(&helper, &attr, load_helper, l) != 0) {
                atomic_fetch_sub(&l->refs, 1); /* no thread: the caller does its share */
                break;
            }
        }
        pthread_attr_destroy(&attr);
    }
    return l;
}

int scenario_load_finish(struct scenario_load *l, struct scenario_set *set,
                         const struct scenario_set *served, struct problems *p)
{
    int before = p->count;
    if (!l) {
        problems_add(p, "scenarios", "$", "cannot read the scenarios directory: %s",
                     strerror(ENOMEM));
        return p->count - before;
    }
    load_list(l);
    if (l->walk_failed)
        problems_add(p, l->dir, "$", "cannot read the scenarios directory: %s",
                     strerror(l->walk_errno));
    load_work(l);
    pthread_mutex_lock(&l->lock);
    while (l->done < l->n)
        pthread_cond_wait(&l->changed, &l->lock);
    pthread_mutex_unlock(&l->lock);
    for (size_t i = 0; i < l->n; i++) {
        struct load_file *f = &l->files[i];
        problems_merge(p, &f->p);
        const struct scenario *twin = f->s ? scenario_set_find(set, f->s->name) : NULL;
        const struct scenario *was = twin && served ? scenario_set_find(served, f->s->name) : NULL;
        if (twin && was && strcmp(was->origin, f->path) == 0) {
            /* The file that served the name is not at fault, even when the
             * file that just took it too sorts before it. */
            problems_add(p, twin->origin, "$.name", "'%s' is also the name of %s", f->s->name,
                         f->path);
            scenario_free(f->s);
        } else if (twin) {
            problems_add(p, f->path, "$.name", "'%s' is also the name of %s", f->s->name,
                         twin->origin);
            scenario_free(f->s);
        } else if (f->s) {
            scenario_set_add(set, f->s);
        }
        problems_free(&f->p);
        free(f->path);
    }
    free(l->files);
    l->files = NULL;
    load_release(l);
    return p->count - before;
}

int scenario_load_dir(struct scenario_set *set, const char *dir, const struct scenario_api *apis,
                      size_t napis, struct problems *p)
{
    return scenario_load_finish(scenario_load_start(dir, apis, napis), set, NULL, p);
}

int scenario_reload_dir(struct scenario_set *set, const char *dir, const struct scenario_api *apis,
                        size_t napis, const struct scenario_set *served, struct problems *p)
{
    return scenario_load_finish(scenario_load_start(dir, apis, napis), set, served, p);
}

/* ---- engine ----------------------------------------------------------- */

struct scenario_engine *scenario_engine_new(struct store *store, struct state *state,
                                            struct scenario_set *set)
{
    struct scenario_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->store = store;
    e->state = state;
    e->set = set;
    pthread_mutex_init(&e->set_lock, NULL);
    pthread_mutex_init(&e->write_lock, NULL);
    return e;
}

void scenario_engine_free(struct scenario_engine *e)
{
    if (!e)
        return;
    scenario_set_release(e->set);
    pthread_mutex_destroy(&e->set_lock);
    pthread_mutex_destroy(&e->write_lock);
    free(e);
}

static int put_row(struct store *st, const struct scenario *s)
{
    char *json = cJSON_PrintUnformatted(s->doc);
    sqlite3_stmt *q = store_stmt(st, ST_SCENARIO_PUT);
    store_bind_text(q, 1, s->name);
    store_bind_text(q, 2, s->api);
    store_bind_text(q, 3, s->origin);
    store_bind_text(q, 4, json);
    int err = store_exec(st, q);
    free(json);
    return err;
}

/* Rewrites the whole table from `set`, which the caller holds a reference to. */
static int persist_all(struct store *st, const struct scenario_set *set)
{
    int err = 0;
    store_lock(st);
    store_exec(st, store_stmt(st, ST_BEGIN));
    err |= store_exec(st, store_stmt(st, ST_SCENARIOS_CLEAR));
    for (size_t i = 0; i < set->n; i++)
        err |= put_row(st, set->items[i]);
    store_exec(st, store_stmt(st, err ? ST_ROLLBACK : ST_COMMIT));
    store_unlock(st);
    return err ? -1 : 0;
}

static struct scenario_set *engine_acquire(struct scenario_engine *e);

int scenario_load_uploaded(struct scenario_set *set, struct store *store,
                           const struct scenario_api *apis, size_t napis)
{
    int added = 0;
    store_lock(store);
    sqlite3_stmt *q = store_stmt(store, ST_SCENARIOS_BY_ORIGIN);
    store_bind_text(q, 1, "admin");
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const char *json = (const char *)sqlite3_column_text(q, 1);
        struct problems p = {0};
        struct scenario *s =
            json ? scenario_parse("admin", json, strlen(json), apis, napis, &p) : NULL;
        if (s && scenario_set_add(set, s) == 0)
            added++;
        else
            log_error("--db: the uploaded scenario '%s' no longer validates; skipped: %s",
                      name ? name : "?", p.text.data ? p.text.data : "");
        problems_free(&p);
    }
    sqlite3_reset(q);
    store_unlock(store);
    return added;
}

int scenario_engine_persist(struct scenario_engine *e)
{
    pthread_mutex_lock(&e->write_lock);
    struct scenario_set *set = engine_acquire(e);
    int err = persist_all(e->store, set);
    scenario_set_release(set);
    pthread_mutex_unlock(&e->write_lock);
    return err;
}

/* Finds a field by dotted path ("countryInfo.countryCode") in the facts. */
static const cJSON *fact(const cJSON *facts, const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot)
        return cJSON_GetObjectItemCaseSensitive(facts, path);
    char head[128];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof head)
        return NULL;
    memcpy(head, path, n);
    head[n] = '\0';
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(facts, head);
    return cJSON_IsObject(sub) ? fact(sub, dot + 1) : NULL;
}

/* The request header a condition tests, or NULL. */
static const char *header_of(const struct scenario_request *req, const char *name)
{
    return req && req->header ? req->header(req->header_cls, name) : NULL;
}

static int header_cond_holds(const struct field_cond *c, const char *h, const cJSON *vars)
{
    switch (c->op) {
    case COND_PRESENT:
        return h != NULL;
    case COND_ABSENT:
        return h == NULL;
    case COND_EQUALS:
        return h && cJSON_IsString(c->value) && strcmp(h, c->value->valuestring) == 0;
    case COND_ONE_OF: {
        const cJSON *opt;
        cJSON_ArrayForEach(opt, c->value) if (h && cJSON_IsString(opt) &&
                                              strcmp(h, opt->valuestring) == 0) return 1;
        return 0;
    }
    case COND_REGEX:
        return h && regexec(&c->re, h, 0, NULL, 0) == 0;
    case COND_VAR: {
        const char *want = vars ? json_str(vars, c->var) : NULL;
        return h && want && strcmp(h, want) == 0;
    }
    }
    return 0;
}

static int cond_holds(const struct field_cond *c, const cJSON *facts,
                      const struct scenario_request *req, const cJSON *vars)
{
    if (c->header)
        return header_cond_holds(c, header_of(req, c->field), vars);
    const cJSON *v = fact(facts, c->field);
    int present = v && !cJSON_IsNull(v);
    switch (c->op) {
    case COND_PRESENT:
        return present;
    case COND_ABSENT:
        return !present;
    case COND_EQUALS:
        if (!v)
            return cJSON_IsNull(c->value);
        return cJSON_Compare(v, c->value, 1);
    case COND_ONE_OF: {
        const cJSON *opt;
        cJSON_ArrayForEach(opt, c->value) if (v && cJSON_Compare(v, opt, 1)) return 1;
        return 0;
    }
    case COND_REGEX:
        return cJSON_IsString(v) && regexec(&c->re, v->valuestring, 0, NULL, 0) == 0;
    case COND_VAR: {
        const cJSON *want = vars ? cJSON_GetObjectItemCaseSensitive(vars, c->var) : NULL;
        return want && v && cJSON_Compare(v, want, 1);
    }
    }
    return 0;
}

/* Whether every bind condition holds; with `lenient`, conditions on fields the
 * request does not carry count as holding (an identity keeps its scenario
 * until a request contradicts the binding). */
static int bind_holds(const struct scenario *s, const cJSON *facts,
                      const struct scenario_request *req, int lenient)
{
    for (size_t i = 0; i < s->nbind; i++) {
        const struct field_cond *c = &s->bind[i];
        if (lenient &&
            !(c->header ? header_of(req, c->field) != NULL : fact(facts, c->field) != NULL))
            continue;
        if (!cond_holds(c, facts, req, NULL))
            return 0;
    }
    return 1;
}

static struct scenario_set *engine_acquire(struct scenario_engine *e)
{
    pthread_mutex_lock(&e->set_lock);
    struct scenario_set *set = e->set;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&e->set_lock);
    return set;
}

/* The scenario of `set` named `name` for `api`, or NULL (through the set's name index). */
static struct scenario *find_for_api(const struct scenario_set *set, const char *name,
                                     const char *api)
{
    return (struct scenario *)scenario_set_find_api(set, name, api);
}

/* The session key of a request: namespace, API and identity. */
static int session_key(const char *ns, const char *api, const char *identity, char *out, size_t cap)
{
    const char *parts[] = {api, identity};
    return state_key(out, cap, ns, parts, 2) < 0 ? -1 : 0;
}

static long count_events(struct state_session *ss, const struct scenario *s, int counter,
                         double now)
{
    return state_counter_count(state_counter(ss, s->counters[counter], 0), now, s->window[counter]);
}

static void add_event(struct state_session *ss, const struct scenario *s, int counter, double now)
{
    state_counter_add(state_counter(ss, s->counters[counter], 1), now, s->window[counter]);
}

static int step_matches(const struct step *st, const struct scenario *s, struct state_session *ss,
                        const struct scenario_request *req, double age, double now)
{
    if (st->age_at_least >= 0 && age < st->age_at_least)
        return 0;
    if (st->age_below >= 0 && age >= st->age_below)
        return 0;
    for (size_t i = 0; i < st->nconds; i++)
        if (!cond_holds(&st->conds[i], req->facts, req, ss->vars))
            return 0;
    for (size_t i = 0; i < st->ncounts; i++) {
        long n = count_events(ss, s, st->counts[i].counter, now);
        if (st->counts[i].at_least >= 0 && n < st->counts[i].at_least)
            return 0;
        if (st->counts[i].below >= 0 && n >= st->counts[i].below)
            return 0;
    }
    return 1;
}

static void generate(cJSON **vars, const struct generate *g)
{
    char value[64];
    if (g->kind == GEN_UUID) {
        rng_uuid(value);
    } else if (g->kind == GEN_CODE6) {
        rng_digits(value, 6);
    } else {
        char *t = rng_token(24);
        snprintf(value, sizeof value, "%s", t ? t : "");
        free(t);
    }
    if (!*vars)
        *vars = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(*vars, g->var);
    cJSON_AddStringToObject(*vars, g->var, value);
}

/* Picks the scenario for a request: the forced one, else the identity's own
 * while no request field contradicts its binding and nothing binds more
 * specifically, else the most specific binding (2 points per condition on a
 * request field, 1 per condition on a derived fact; ties by name). */
static void consider(struct scenario *s, const struct scenario_request *req, struct scenario **best)
{
    if (strcmp(s->api, req->api) != 0 || !bind_holds(s, req->facts, req, 0))
        return;
    /* Candidates come in no particular order: the name breaks ties, as the
     * sorted scan did. */
    if (!*best || s->weight > (*best)->weight ||
        (s->weight == (*best)->weight && strcmp(s->name, (*best)->name) < 0))
        *best = s;
}

static enum scenario_bound bound_kind(const struct scenario *s)
{
    return s->request_conds ? SCENARIO_BOUND_BINDING : SCENARIO_BOUND_FALLBACK;
}

static struct scenario *choose(const struct scenario_set *set, const struct scenario_request *req,
                               struct scenario *stored, int *err, enum scenario_bound *bound)
{
    *err = 0;
    *bound = SCENARIO_BOUND_NONE;
    if (req->forced) {
        const struct scenario *f = scenario_set_find_api(set, req->forced, req->api);
        *bound = f ? SCENARIO_BOUND_HEADER : SCENARIO_BOUND_NONE;
        if (f)
            return (struct scenario *)f;
        *err = SCENARIO_UNKNOWN_FORCED;
        return NULL;
    }
    /* Only the scenarios that can bind: those filed under this request's value
     * of an indexed field, and those with no indexable binding. */
    struct scenario *best = NULL;
    const struct table *t = &set->keyed;
    for (size_t f = 0; f < NINDEX_FIELDS && t->cap; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->facts, index_fields[f]);
        if (!cJSON_IsString(v))
            continue;
        uint64_t h = key_hash(req->api, index_fields[f], v->valuestring);
        size_t mask = t->cap - 1;
        for (size_t i = (size_t)h & mask; t->slots[i]; i = (i + 1) & mask) {
            struct scenario *s = t->slots[i];
            if (s->key_hash == h && strcmp(s->key_field, index_fields[f]) == 0 &&
                strcmp(s->key_value, v->valuestring) == 0)
                consider(s, req, &best);
        }
    }
    for (size_t i = 0; i < set->nloose; i++)
        consider(set->loose[i], req, &best);
    if (stored && bind_holds(stored, req->facts, req, 1) &&
        (!best || stored->weight >= best->weight)) {
        *bound = stored == best ? bound_kind(stored) : SCENARIO_BOUND_SESSION;
        return stored;
    }
    if (!best)
        *err = SCENARIO_UNBOUND;
    else
        *bound = bound_kind(best);
    return best;
}

/* Blocks the identity under limit `l` from now, and clears the limit's counter:
 * the window's events have done their work. */
static void start_block(struct state_session *ss, const struct scenario *s, size_t l, double now)
{
    const struct limit *lim = &s->limits[l];
    struct state_counter *c = state_counter(ss, s->counters[lim->counter], 0);
    double until =
        lim->block > 0 ? now + lim->block : state_counter_oldest(c, now, lim->window) + lim->window;
    if (until > ss->blocked_until) {
        ss->blocked_until = until;
        ss->block_limit = (int)l;
    }
    state_counter_clear(c);
}

static void enter_state(struct state_session *ss, const struct scenario *s, int state, double now)
{
    snprintf(ss->state, sizeof ss->state, "%s", s->states[state].name);
    ss->entered_at = now;
}

/* step_locked's answer when no step matched but the session changed (it was new). */
#define NO_STEP_CHANGED (-100)

/* One step of the identity's machine; the session's shard lock is held.
 * Returns 1 when the session changed, 0 when not, or a scenario_result. */
static int step_locked(struct state_session *ss, const struct scenario_request *req,
                       struct scenario_outcome *out, double now)
{
    int changed = 0, err;
    struct scenario_explain *why = &out->why;
    struct scenario *stored =
        ss->scenario[0] ? find_for_api(out->set, ss->scenario, req->api) : NULL;
    int cur = stored ? state_index(stored, ss->state) : -1;
    struct scenario *s = choose(out->set, req, stored, &err, &why->bound_by);
    if (!s)
        return err;
    out->scenario = s;
    if (s != stored || cur < 0) {
        why->fresh = 1;
        /* A new identity, or one that moved to another scenario: start afresh. */
        state_counters_clear(ss);
        cJSON_Delete(ss->vars);
        ss->vars = NULL;
        snprintf(ss->scenario, sizeof ss->scenario, "%s", s->name);
        cur = s->initial;
        enter_state(ss, s, cur, now);
        ss->blocked_until = 0;
        ss->block_limit = -1;
        changed = 1;
    }
    snprintf(out->state_from, sizeof out->state_from, "%s", s->states[cur].name);
    snprintf(out->state_to, sizeof out->state_to, "%s", s->states[cur].name);
    why->state = cur;
    why->age = now - ss->entered_at;

    if (ss->blocked_until > now && ss->block_limit >= 0 && (size_t)ss->block_limit < s->nlimits) {
        out->reply = s->limits[ss->block_limit].reply;
        out->retry_after = (long)ceil(ss->blocked_until - now);
        out->limited = 1;
        why->limit = ss->block_limit;
        why->limit_count = count_events(ss, s, s->limits[ss->block_limit].counter, now);
        why->blocked_until = ss->blocked_until;
        return changed;
    }
    if (ss->blocked_until != 0) {
        ss->blocked_until = 0;
        ss->block_limit = -1;
        changed = 1;
    }

    /* A "blockOn": "next" limit refuses the request that comes after max events. */
    for (size_t l = 0; l < s->nlimits; l++) {
        const struct limit *lim = &s->limits[l];
        long n = lim->on_next ? count_events(ss, s, lim->counter, now) : 0;
        if (!lim->on_next || n < lim->max)
            continue;
        start_block(ss, s, l, now);
        out->reply = lim->reply;
        out->retry_after = (long)ceil(ss->blocked_until - now);
        out->limited = 1;
        why->limit = (int)l;
        why->limit_started = 1;
        why->limit_count = n;
        why->blocked_until = ss->blocked_until;
        return 1;
    }

    /* Which counters this request adds to, so limits are checked only for those. */
    int touched[64];
    size_t ntouched = 0;
    if (s->requests_counter >= 0) {
        add_event(ss, s, s->requests_counter, now);
        touched[ntouched++] = s->requests_counter;
        changed = 1;
    }
    const struct state *state = &s->states[cur];
    const struct step *chosen = NULL;
    for (size_t i = 0; i < state->nsteps && !chosen; i++)
        if (step_matches(&state->steps[i], s, ss, req, now - ss->entered_at, now)) {
            chosen = &state->steps[i];
            why->step = (int)i;
        }
    if (!chosen)
        return changed ? NO_STEP_CHANGED : SCENARIO_NO_STEP;
    out->reply = chosen->reply;
    for (size_t i = 0; i < req->nremember; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->facts, req->remember[i]);
        const cJSON *old =
            ss->vars ? cJSON_GetObjectItemCaseSensitive(ss->vars, req->remember[i]) : NULL;
        if (!cJSON_IsString(v) || (old && cJSON_Compare(v, old, 1)))
            continue;
        if (!ss->vars)
            ss->vars = cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(ss->vars, req->remember[i]);
        cJSON_AddStringToObject(ss->vars, req->remember[i], v->valuestring);
        changed = 1;
    }
    for (size_t i = 0; i < chosen->ngens; i++) {
        generate(&ss->vars, &chosen->gens[i]);
        changed = 1;
    }
    for (size_t i = 0; i < chosen->nincr; i++) {
        add_event(ss, s, chosen->incr[i], now);
        if (ntouched < sizeof touched / sizeof touched[0])
            touched[ntouched++] = chosen->incr[i];
        changed = 1;
    }
    if (chosen->next >= 0) {
        /* Entering a state (even the same one again) restarts its clock and
         * its counters; windowed counters of limits carry over. */
        cur = chosen->next;
        enter_state(ss, s, cur, now);
        for (size_t c = 0; c < s->ncounters; c++)
            if (s->window[c] <= 0)
                state_counter_clear(state_counter(ss, s->counters[c], 0));
        changed = 1;
        snprintf(out->state_to, sizeof out->state_to, "%s", s->states[cur].name);
    }
    for (size_t l = 0; l < s->nlimits; l++) {
        const struct limit *lim = &s->limits[l];
        int hit = 0;
        for (size_t t = 0; t < ntouched; t++)
            hit |= touched[t] == lim->counter;
        long n = hit && !lim->on_next ? count_events(ss, s, lim->counter, now) : 0;
        if (!hit || lim->on_next || n < lim->max)
            continue;
        start_block(ss, s, l, now);
        why->block_started = (int)l;
        why->block_count = n;
        why->blocked_until = ss->blocked_until;
        changed = 1;
    }
    return changed;
}

static int step(struct scenario_engine *e, const struct scenario_request *req,
                struct scenario_outcome *out);

int scenario_step(struct scenario_engine *e, const struct scenario_request *req,
                  struct scenario_outcome *out)
{
    /* Session variables outlive the request: they must not come from its arena. */
    json_arena_pause();
    int rc = step(e, req, out);
    json_arena_resume();
    return rc;
}

/* The counters of `s` after the request, for the explanation. Lock held. */
static void explain_counters(struct scenario_explain *why, struct state_session *ss,
                             const struct scenario *s, double now)
{
    why->ncounters =
        s->ncounters < SCENARIO_EXPLAIN_COUNTERS ? s->ncounters : SCENARIO_EXPLAIN_COUNTERS;
    for (size_t c = 0; c < why->ncounters; c++)
        why->counters[c] = count_events(ss, s, (int)c, now);
}

static int step(struct scenario_engine *e, const struct scenario_request *req,
                struct scenario_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->why.state = out->why.step = out->why.limit = out->why.block_started = -1;
    out->set = engine_acquire(e);
    /* While state writes fail, no answer may claim a change that is not kept. */
    if (state_degraded(e->state))
        return SCENARIO_STORE_ERROR;
    double now = clock_now_ns(req->ns);
    char key[1024];
    if (session_key(req->ns, req->api, req->identity, key, sizeof key))
        return SCENARIO_STORE_ERROR;
    struct state_lock held;
    struct state_session *ss = state_get(e->state, SK_SESSION, key, 1, &held);
    if (!ss) {
        state_unlock(&held);
        return SCENARIO_STORE_ERROR;
    }
    int fresh = ss->scenario[0] == '\0';
    int rc = step_locked(ss, req, out, now);
    if (rc > 0 || rc == NO_STEP_CHANGED) {
        ss->updated_at = now;
        state_touch(e->state, ss);
        rc = rc > 0 ? SCENARIO_OK : SCENARIO_NO_STEP;
    }
    if (fresh && ss->scenario[0] == '\0') {
        state_remove(e->state, ss); /* nothing bound it: keep no empty session */
        ss = NULL;
    }
    if (ss && ss->vars && out->scenario)
        out->vars = cJSON_Duplicate(ss->vars, 1);
    if (ss && out->scenario && req->explain)
        explain_counters(&out->why, ss, out->scenario, now);
    state_unlock(&held);
    return rc;
}

void scenario_outcome_release(struct scenario_outcome *out)
{
    cJSON_Delete(out->vars);
    scenario_set_release(out->set);
    memset(out, 0, sizeof *out);
}

size_t scenario_engine_count(struct scenario_engine *e)
{
    pthread_mutex_lock(&e->set_lock);
    size_t n = e->set->n;
    pthread_mutex_unlock(&e->set_lock);
    return n;
}

static void add_field(struct scenario_step_info *info, const char *field)
{
    for (size_t i = 0; i < info->nnext_fields; i++)
        if (strcmp(info->next_fields[i], field) == 0)
            return;
    if (info->nnext_fields < sizeof info->next_fields / sizeof info->next_fields[0])
        info->next_fields[info->nnext_fields++] = field;
}

void scenario_set_describe(const struct scenario_set *set, const char *api, const cJSON *facts,
                           scenario_step_fn fn, void *cls)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct scenario *s = set->items[i];
        if (strcmp(s->api, api) != 0 || !bind_holds(s, facts, NULL, 1))
            continue;
        for (size_t si = 0; si < s->nstates; si++) {
            const struct state *state = &s->states[si];
            for (size_t k = 0; k < state->nsteps; k++) {
                const struct step *st = &state->steps[k];
                struct scenario_step_info info = {.scenario = s->name, .reply = st->reply};
                const struct state *after = &s->states[st->next >= 0 ? st->next : (int)si];
                for (size_t a = 0; a < after->nsteps; a++)
                    for (size_t c = 0; c < after->steps[a].nconds; c++)
                        if (!after->steps[a].conds[c].header)
                            add_field(&info, after->steps[a].conds[c].field);
                fn(&info, cls);
            }
        }
    }
}

void scenario_engine_describe(struct scenario_engine *e, const char *api, const cJSON *facts,
                              scenario_step_fn fn, void *cls)
{
    struct scenario_set *set = engine_acquire(e);
    scenario_set_describe(set, api, facts, fn, cls);
    scenario_set_release(set);
}

struct scenario_set *scenario_engine_acquire(struct scenario_engine *e)
{
    return engine_acquire(e);
}

/* Publishes `set` (taking over the caller's reference). Call with write_lock held. */
static void engine_publish(struct scenario_engine *e, struct scenario_set *set)
{
    pthread_mutex_lock(&e->set_lock);
    struct scenario_set *old = e->set;
    e->set = set;
    pthread_mutex_unlock(&e->set_lock);
    /* Requests still holding the old set finish with it; the last one frees it. */
    scenario_set_release(old);
}

void scenario_engine_swap(struct scenario_engine *e, struct scenario_set *set)
{
    pthread_mutex_lock(&e->write_lock);
    atomic_fetch_add(&set->refs, 1); /* persisted below, after another writer may replace it */
    engine_publish(e, set);
    persist_all(e->store, set);
    scenario_set_release(set);
    pthread_mutex_unlock(&e->write_lock);
}

/* A copy sharing every scenario of `set`: pointers with references taken,
 * the indexes copied flat. No scenario is parsed again. */
static struct scenario_set *set_clone(const struct scenario_set *set)
{
    struct scenario_set *copy = scenario_set_new();
    if (!copy)
        return NULL;
    copy->cap = set->n + 1;
    copy->items = malloc(copy->cap * sizeof *copy->items);
    copy->loose_cap = set->nloose + 1;
    copy->loose = malloc(copy->loose_cap * sizeof *copy->loose);
    if (!copy->items || !copy->loose || table_copy(&copy->names, &set->names) ||
        table_copy(&copy->keyed, &set->keyed)) {
        scenario_set_release(copy);
        return NULL;
    }
    for (size_t i = 0; i < set->n; i++) {
        atomic_fetch_add(&set->items[i]->refs, 1);
        copy->items[i] = set->items[i];
    }
    copy->n = set->n;
    memcpy(copy->loose, set->loose, set->nloose * sizeof *copy->loose);
    copy->nloose = set->nloose;
    return copy;
}

int scenario_engine_put(struct scenario_engine *e, struct scenario *s, int *replaced)
{
    pthread_mutex_lock(&e->write_lock);
    struct scenario_set *cur = engine_acquire(e);
    struct scenario_set *next = set_clone(cur);
    scenario_set_release(cur);
    if (!next) {
        pthread_mutex_unlock(&e->write_lock);
        scenario_free(s);
        return -1;
    }
    *replaced = scenario_set_find(next, s->name) != NULL;
    atomic_fetch_add(&s->refs, 1); /* ours, for the row written below */
    int err = scenario_set_add(next, s);
    if (err) {
        scenario_set_release(next);
    } else {
        engine_publish(e, next);
        store_lock(e->store);
        err = put_row(e->store, s);
        store_unlock(e->store);
    }
    scenario_free(s);
    pthread_mutex_unlock(&e->write_lock);
    return err ? -1 : 0;
}

int scenario_engine_delete(struct scenario_engine *e, const char *name)
{
    pthread_mutex_lock(&e->write_lock);
    struct scenario_set *cur = engine_acquire(e);
    int found = scenario_set_find(cur, name) != NULL;
    struct scenario_set *next = found ? set_clone(cur) : NULL;
    scenario_set_release(cur);
    int rc = !found ? 1 : !next ? -1 : 0;
    if (next) {
        scenario_set_remove(next, name);
        engine_publish(e, next);
        store_lock(e->store);
        sqlite3_stmt *q = store_stmt(e->store, ST_SCENARIO_DELETE);
        store_bind_text(q, 1, name);
        if (store_exec(e->store, q))
            rc = -1;
        store_unlock(e->store);
    }
    pthread_mutex_unlock(&e->write_lock);
    return rc;
}

size_t scenario_engine_reload(struct scenario_engine *e, struct scenario_set *files,
                              const char *keep)
{
    pthread_mutex_lock(&e->write_lock);
    struct scenario_set *cur = engine_acquire(e);
    scenario_set_merge(files, scenario_set_copy(cur, keep, 0, NULL, 0));
    scenario_set_release(cur);
    atomic_fetch_add(&files->refs, 1);
    engine_publish(e, files);
    persist_all(e->store, files);
    size_t n = files->n;
    scenario_set_release(files);
    pthread_mutex_unlock(&e->write_lock);
    return n;
}

struct scenario_set *scenario_set_copy(const struct scenario_set *set, const char *origin,
                                       int invert, const struct scenario_api *apis, size_t napis)
{
    (void)apis;
    (void)napis;
    if (!origin && !invert)
        return set_clone(set);
    struct scenario_set *copy = scenario_set_new();
    for (size_t i = 0; copy && i < set->n; i++) {
        struct scenario *s = set->items[i];
        int match = !origin || strcmp(s->origin, origin) == 0;
        if (match == invert)
            continue;
        atomic_fetch_add(&s->refs, 1);
        if (scenario_set_add(copy, s))
            scenario_free(s);
    }
    return copy;
}

int scenario_set_remove(struct scenario_set *set, const char *name)
{
    int found;
    size_t at = set_position(set, name, &found);
    if (!found)
        return -1;
    drop_memos(set);
    struct scenario *s = set->items[at];
    index_remove(set, s);
    memmove(&set->items[at], &set->items[at + 1], (set->n - at - 1) * sizeof *set->items);
    set->n--;
    scenario_free(s);
    return 0;
}

void scenario_set_merge(struct scenario_set *dst, struct scenario_set *src)
{
    for (size_t i = 0; src && i < src->n; i++) {
        struct scenario *s = src->items[i];
        if (scenario_set_find(dst, s->name))
            continue;
        atomic_fetch_add(&s->refs, 1);
        if (scenario_set_add(dst, s))
            scenario_free(s);
    }
    scenario_set_release(src);
}

const struct scenario *scenario_set_at(const struct scenario_set *set, size_t i)
{
    return i < set->n ? set->items[i] : NULL;
}

int scenario_has_state(const struct scenario *s, const char *state)
{
    return state && state_index(s, state) >= 0;
}

void scenario_state_names(const struct scenario *s, struct buf *out)
{
    for (size_t i = 0; i < s->nstates; i++)
        buf_printf(out, "%s%s", i ? ", " : "", s->states[i].name);
}

struct sessions_ctx {
    struct scenario_engine *e;
    const char *ns, *api;
    uint64_t before;
    size_t limit;
    /* The `limit` newest sessions before the cursor: a min-heap on tick. */
    uint64_t *heap; /* ticks only: a record may go (another shard, unlocked) meanwhile */
    size_t n;
    cJSON *list;
    size_t in_shard;    /* sessions taken from the shard being walked */
    uint64_t threshold; /* pass two renders ticks from here up */
};

static void heap_sift_down(uint64_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t m = i, l = 2 * i + 1, r = l + 1;
        if (l < n && h[l] < h[m])
            m = l;
        if (r < n && h[r] < h[m])
            m = r;
        if (m == i)
            return;
        uint64_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_sift_up(uint64_t *h, size_t i)
{
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        uint64_t t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* The namespace, API and identity of a session key. */
static void split_key(const struct state_rec *r, char *ns, size_t nscap, const char **api,
                      size_t *apilen, const char **identity)
{
    snprintf(ns, nscap, "%.*s", (int)r->nslen, r->key);
    *api = r->key + r->nslen + 1;
    const char *sep = strchr(*api, STATE_KEY_SEP);
    *apilen = sep ? (size_t)(sep - *api) : strlen(*api);
    *identity = sep ? sep + 1 : "";
}

static cJSON *session_json(struct state_session *ss)
{
    char ns[128];
    const char *api, *identity;
    size_t apilen;
    split_key(&ss->rec, ns, sizeof ns, &api, &apilen, &identity);
    cJSON *o = cJSON_CreateObject();
    struct buf id = {0};
    buf_printf(&id, "%.*s:%s", (int)apilen, api, identity);
    cJSON_AddStringToObject(o, "id", id.data);
    buf_free(&id);
    cJSON_AddStringToObject(o, "namespace", ns);
    char apiname[64];
    snprintf(apiname, sizeof apiname, "%.*s", (int)apilen, api);
    cJSON_AddStringToObject(o, "api", apiname);
    cJSON_AddStringToObject(o, "identity", identity);
    cJSON_AddStringToObject(o, "scenario", ss->scenario);
    cJSON_AddStringToObject(o, "state", ss->state);
    char when[32];
    clock_format(ss->entered_at, when);
    cJSON_AddStringToObject(o, "enteredAt", when);
    if (ss->blocked_until > clock_now_ns(ns)) {
        clock_format(ss->blocked_until, when);
        cJSON_AddStringToObject(o, "blockedUntil", when);
    } else {
        cJSON_AddNullToObject(o, "blockedUntil");
    }
    cJSON_AddItemToObject(o, "vars",
                          ss->vars ? cJSON_Duplicate(ss->vars, 1) : cJSON_CreateObject());
    clock_format(ss->updated_at, when);
    cJSON_AddStringToObject(o, "updatedAt", when);
    cJSON_AddNumberToObject(o, "cursor", (double)ss->rec.tick);
    return o;
}

/* Whether a session is one the list asks for (its key's namespace and API). */
static int session_wanted(const struct sessions_ctx *c, const struct state_session *ss)
{
    if (!ss->scenario[0])
        return 0;
    char ns[128];
    const char *api, *identity;
    size_t apilen;
    split_key(&ss->rec, ns, sizeof ns, &api, &apilen, &identity);
    if (c->ns && strcmp(c->ns, ns) != 0)
        return 0;
    return !c->api || (strlen(c->api) == apilen && strncmp(c->api, api, apilen) == 0);
}

static void shard_begin(void *cls)
{
    ((struct sessions_ctx *)cls)->in_shard = 0;
}

/* Pass one: the ticks of the `limit` newest wanted sessions. A shard's list
 * is newest first, so a shard is left once it gave `limit` of them. */
static int collect_session(void *rec, void *cls)
{
    struct sessions_ctx *c = cls;
    struct state_session *ss = rec;
    if (c->before && ss->rec.tick >= c->before)
        return 0;
    if (!session_wanted(c, ss))
        return 0;
    uint64_t tick = ss->rec.tick;
    if (c->n < c->limit) {
        c->heap[c->n] = tick;
        heap_sift_up(c->heap, c->n++);
    } else if (tick > c->heap[0]) {
        c->heap[0] = tick;
        heap_sift_down(c->heap, c->n, 0);
    }
    return ++c->in_shard >= c->limit;
}

/* Pass two: render the wanted sessions at or above the threshold tick
 * (records can change between the passes; the list is sorted after). */
static int render_session(void *rec, void *cls)
{
    struct sessions_ctx *c = cls;
    struct state_session *ss = rec;
    if (c->before && ss->rec.tick >= c->before)
        return 0;
    if (ss->rec.tick < c->threshold)
        return 1;
    if (session_wanted(c, ss)) {
        cJSON_AddItemToArray(c->list, session_json(ss));
        if (++c->in_shard >= c->limit)
            return 1;
    }
    return 0;
}

static int by_cursor_desc(const void *a, const void *b)
{
    double x = cJSON_GetObjectItemCaseSensitive(*(const cJSON *const *)a, "cursor")->valuedouble;
    double y = cJSON_GetObjectItemCaseSensitive(*(const cJSON *const *)b, "cursor")->valuedouble;
    return x < y ? 1 : x > y ? -1 : 0;
}

cJSON *scenario_sessions(struct scenario_engine *e, const char *ns, const char *api, long limit,
                         uint64_t before, uint64_t *next)
{
    struct sessions_ctx c = {
        e, ns, api, before, (size_t)(limit > 0 ? limit : 1000), NULL, 0, cJSON_CreateArray(), 0, 0};
    c.heap = calloc(c.limit, sizeof *c.heap);
    *next = 0;
    if (!c.heap)
        return c.list;
    state_each_recent(e->state, SK_SESSION, collect_session, shard_begin, &c);
    c.threshold = c.n == c.limit ? c.heap[0] : 0;
    state_each_recent(e->state, SK_SESSION, render_session, shard_begin, &c);
    free(c.heap);
    size_t n = (size_t)cJSON_GetArraySize(c.list);
    cJSON **items = calloc(n ? n : 1, sizeof *items);
    size_t k = 0;
    for (cJSON *it = c.list->child; it && items; it = it->next)
        items[k++] = it;
    if (items) {
        if (n)
            qsort(items, n, sizeof *items, by_cursor_desc);
        cJSON *sorted = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++) {
            cJSON_DetachItemViaPointer(c.list, items[i]);
            if (i < c.limit)
                cJSON_AddItemToArray(sorted, items[i]);
            else
                cJSON_Delete(items[i]);
        }
        cJSON_Delete(c.list);
        c.list = sorted;
        free(items);
        n = n < c.limit ? n : c.limit;
        /* A full page may have more after it: its last cursor continues. */
        if (n == c.limit && n > 0)
            *next = (uint64_t)cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetArrayItem(c.list, (int)n - 1), "cursor")
                        ->valuedouble;
    }
    return c.list;
}

int scenario_force(struct scenario_engine *e, const char *ns, const char *api, const char *identity,
                   const char *scenario, const char *state)
{
    struct scenario_set *set = engine_acquire(e);
    double now = clock_now_ns(ns);
    char key[1024];
    int rc = 0;
    if (session_key(ns, api, identity, key, sizeof key)) {
        scenario_set_release(set);
        return SCENARIO_UNBOUND;
    }
    struct state_lock held;
    struct state_session *ss = state_get(e->state, SK_SESSION, key, scenario != NULL, &held);
    int fresh = ss && !ss->scenario[0];
    struct scenario *s = ss && ss->scenario[0] ? find_for_api(set, ss->scenario, api) : NULL;
    if (scenario) {
        s = find_for_api(set, scenario, api);
        if (!s)
            rc = SCENARIO_UNKNOWN_FORCED;
    } else if (!ss || !s) {
        rc = SCENARIO_UNBOUND;
    }
    int st = rc == 0 ? state_index(s, state) : -1;
    if (rc == 0 && st < 0)
        rc = SCENARIO_NO_STEP;
    if (rc == 0 && !ss)
        rc = SCENARIO_STORE_ERROR;
    if (rc == 0) {
        snprintf(ss->scenario, sizeof ss->scenario, "%s", s->name);
        state_counters_clear(ss);
        enter_state(ss, s, st, now);
        ss->blocked_until = 0;
        ss->block_limit = -1;
        ss->updated_at = now;
        state_touch(e->state, ss);
    } else if (fresh) {
        state_remove(e->state, ss);
    }
    state_unlock(&held);
    scenario_set_release(set);
    return rc;
}

cJSON *scenario_session(struct scenario_engine *e, const char *ns, const char *api,
                        const char *identity)
{
    char key[1024];
    if (session_key(ns, api, identity, key, sizeof key))
        return NULL;
    struct state_lock held;
    struct state_session *ss = state_get(e->state, SK_SESSION, key, 0, &held);
    cJSON *o = ss && ss->scenario[0] ? session_json(ss) : NULL;
    state_unlock(&held);
    return o;
}

/* ---- explanations -----------------------------------------------------
 *
 * The journal's `match` object, written as JSON text straight from the
 * compiled scenario and the numbers the transition recorded, without a cJSON
 * tree: it is built for every journaled request. Values of secret-looking
 * fields and headers are written as "***"; so are the values a scenario
 * expects of them (its passwords and codes are secrets too).
 */

int scenario_secret_name(const char *name, const char *secret)
{
    return log_is_secret_name(name, strlen(name)) || (secret && strcasecmp(name, secret) == 0);
}

static int cond_secret(const struct field_cond *c, const char *secret)
{
    return c->header ? log_is_secret_header(c->field) : scenario_secret_name(c->field, secret);
}

static const char *const op_names[] = {"equals", "present", "absent", "regex", "var", "oneOf"};
static const char *const bound_names[] = {NULL, "header", "binding", "fallback", "session"};

static void put(struct buf *b, const char *text)
{
    buf_append(b, text, strlen(text));
}

/* A value that may be a secret: "***" when it is, and is there. */
static void put_value(struct buf *b, const cJSON *v, int secret)
{
    if (v && secret && !cJSON_IsNull(v) && !cJSON_IsBool(v))
        put(b, "\"***\"");
    else
        json_append(b, v);
}

static void put_text(struct buf *b, const char *v, int secret)
{
    if (v && secret)
        put(b, "\"***\"");
    else
        json_append_string(b, v);
}

/* The name a condition is listed under: the fact's, or "headers.NAME". */
static void put_cond_name(struct buf *b, const struct field_cond *c)
{
    if (!c->header) {
        json_append_string(b, c->field);
        return;
    }
    char name[160];
    snprintf(name, sizeof name, "headers.%s", c->field);
    json_append_string(b, name);
}

static void put_actual(struct buf *b, const struct field_cond *c,
                       const struct scenario_request *req, int secret)
{
    if (c->header)
        put_text(b, header_of(req, c->field), secret);
    else
        put_value(b, fact(req->facts, c->field), secret);
}

static void put_expected(struct buf *b, const struct field_cond *c, const cJSON *vars, int secret)
{
    if (c->op == COND_PRESENT || c->op == COND_ABSENT)
        put(b, "true");
    else if (c->op == COND_VAR)
        put_value(b, vars ? cJSON_GetObjectItemCaseSensitive(vars, c->var) : NULL,
                  secret || scenario_secret_name(c->var, NULL));
    else
        put_value(b, c->value, secret);
}

static void put_sep(struct buf *b, int *first)
{
    if (!*first)
        put(b, ",");
    *first = 0;
}

/* {"field":…,"condition":…,"expected":…,"actual":…} of a field or header condition. */
static void put_failed_cond(struct buf *b, const struct field_cond *c,
                            const struct scenario_request *req, const cJSON *vars,
                            const char *secret, int *first)
{
    int sec = cond_secret(c, secret);
    put_sep(b, first);
    put(b, "{\"field\":");
    put_cond_name(b, c);
    buf_printf(b, ",\"condition\":\"%s\",\"expected\":", op_names[c->op]);
    put_expected(b, c, vars, sec);
    put(b, ",\"actual\":");
    put_actual(b, c, req, sec);
    if (c->op == COND_VAR) {
        put(b, ",\"var\":");
        json_append_string(b, c->var);
    }
    put(b, "}");
}

static void put_failed_number(struct buf *b, const char *field, const char *cond, double expected,
                              const double *actual, int *first)
{
    put_sep(b, first);
    put(b, "{\"field\":");
    json_append_string(b, field);
    buf_printf(b, ",\"condition\":\"%s\",\"expected\":", cond);
    json_append_number(b, expected);
    put(b, ",\"actual\":");
    if (actual)
        json_append_number(b, round(*actual * 1000.0) / 1000.0);
    else
        put(b, "null");
    put(b, "}");
}

/* The value of a secret-named condition: its operator stays, what it compares with goes. */
static void put_masked_cond(struct buf *b, const cJSON *v)
{
    if (cJSON_IsObject(v) && v->child && !v->child->next) {
        const char *op = v->child->string;
        if (strcmp(op, "present") == 0 || strcmp(op, "absent") == 0 || strcmp(op, "var") == 0) {
            json_append(b, v);
            return;
        }
        put(b, "{");
        json_append_string(b, op);
        put(b, ":\"***\"}");
        return;
    }
    if (cJSON_IsBool(v) || cJSON_IsNull(v))
        json_append(b, v); /* no secret is true or false */
    else
        put(b, "\"***\"");
}

/* A step's "when" (or a binding) as written, secrets masked. */
static void put_when(struct buf *b, const cJSON *when, const char *secret)
{
    int first = 1;
    put(b, "{");
    for (const cJSON *m = cJSON_IsObject(when) ? when->child : NULL; m; m = m->next) {
        put_sep(b, &first);
        json_append_string(b, m->string);
        put(b, ":");
        if (strcmp(m->string, "counter") == 0 || strcmp(m->string, "stateAge") == 0) {
            json_append(b, m);
        } else if (strcmp(m->string, "headers") == 0 && cJSON_IsObject(m)) {
            int hfirst = 1;
            put(b, "{");
            for (const cJSON *h = m->child; h; h = h->next) {
                put_sep(b, &hfirst);
                json_append_string(b, h->string);
                put(b, ":");
                if (log_is_secret_header(h->string))
                    put_masked_cond(b, h);
                else
                    json_append(b, h);
            }
            put(b, "}");
        } else if (scenario_secret_name(m->string, secret)) {
            put_masked_cond(b, m);
        } else {
            json_append(b, m);
        }
    }
    put(b, "}");
}

/* The binding's conditions that hold, each with the value it saw. */
static void put_binding(struct buf *b, const struct scenario *s, const struct scenario_request *req,
                        const char *secret)
{
    int first = 1;
    put(b, "{");
    for (size_t i = 0; i < s->nbind; i++) {
        const struct field_cond *c = &s->bind[i];
        if (!cond_holds(c, req->facts, req, NULL))
            continue;
        put_sep(b, &first);
        put_cond_name(b, c);
        put(b, ":");
        put_actual(b, c, req, cond_secret(c, secret));
    }
    put(b, "}");
}

static void put_limit(struct buf *b, const struct scenario *s, int l, long count, int started,
                      double blocked_until, long retry_after)
{
    const struct limit *lim = &s->limits[l];
    char until[32];
    clock_format(blocked_until, until);
    buf_printf(b, "{\"index\":%d,\"name\":", l);
    json_append_string(b, lim->counter >= 0 ? s->counters[lim->counter] : NULL);
    buf_printf(b, ",\"count\":%ld,\"max\":%ld,\"windowSeconds\":", count, lim->max);
    json_append_number(b, lim->window);
    put(b, ",\"blockSeconds\":");
    json_append_number(b, lim->block);
    buf_printf(b, ",\"blockOn\":\"%s\",\"started\":%s,\"blockedUntil\":\"%s\"",
               lim->on_next ? "next" : "max", started ? "true" : "false", until);
    if (retry_after >= 0)
        buf_printf(b, ",\"retryAfter\":%ld", retry_after);
    put(b, "}");
}

/* NO_STEP: each step of the state, with the conditions it failed. */
static void put_step_candidates(struct buf *b, const struct scenario_request *req,
                                const struct scenario_outcome *out, const char *secret)
{
    const struct scenario *s = out->scenario;
    const struct scenario_explain *w = &out->why;
    if (w->state < 0 || (size_t)w->state >= s->nstates)
        return;
    const struct state *state = &s->states[w->state];
    for (size_t i = 0; i < state->nsteps && i < 8; i++) {
        const struct step *st = &state->steps[i];
        int first = 1;
        if (i)
            put(b, ",");
        put(b, "{\"scenario\":");
        json_append_string(b, s->name);
        put(b, ",\"state\":");
        json_append_string(b, state->name);
        buf_printf(b, ",\"step\":%zu,\"when\":", i);
        put_when(b, st->when, secret);
        put(b, ",\"failed\":[");
        if (st->age_at_least >= 0 && w->age < st->age_at_least)
            put_failed_number(b, "stateAge", "atLeast", st->age_at_least, &w->age, &first);
        if (st->age_below >= 0 && w->age >= st->age_below)
            put_failed_number(b, "stateAge", "below", st->age_below, &w->age, &first);
        for (size_t k = 0; k < st->nconds; k++)
            if (!cond_holds(&st->conds[k], req->facts, req, out->vars))
                put_failed_cond(b, &st->conds[k], req, out->vars, secret, &first);
        for (size_t k = 0; k < st->ncounts; k++) {
            const struct count_cond *cc = &st->counts[k];
            char field[96];
            snprintf(field, sizeof field, "counter.%s",
                     cc->counter >= 0 ? s->counters[cc->counter] : "?");
            int known = cc->counter >= 0 && (size_t)cc->counter < w->ncounters;
            double n = known ? (double)w->counters[cc->counter] : 0;
            if (cc->at_least >= 0 && (!known || n < (double)cc->at_least))
                put_failed_number(b, field, "atLeast", (double)cc->at_least, known ? &n : NULL,
                                  &first);
            if (cc->below >= 0 && (!known || n >= (double)cc->below))
                put_failed_number(b, field, "below", (double)cc->below, known ? &n : NULL, &first);
        }
        put(b, "]}");
    }
}

/* The candidates an explanation lists: the NEAREST scenarios of lowest key,
 * in order. Scenarios are offered in name order and an equal key stays
 * behind, so ties resolve by name. */
enum { NEAREST = 3 };
struct nearest {
    const struct scenario *s[NEAREST];
    long key[NEAREST];
    int n;
};

static void nearest_offer(struct nearest *nr, const struct scenario *s, long key)
{
    int at = nr->n;
    while (at > 0 && key < nr->key[at - 1])
        at--;
    if (at >= NEAREST)
        return;
    for (int k = (nr->n < NEAREST ? nr->n : NEAREST - 1); k > at; k--) {
        nr->s[k] = nr->s[k - 1];
        nr->key[k] = nr->key[k - 1];
    }
    nr->s[at] = s;
    nr->key[at] = key;
    if (nr->n < NEAREST)
        nr->n++;
}

/* UNBOUND: the scenarios of the API whose bindings failed fewest conditions. */
static void put_bind_candidates(struct buf *b, const struct scenario_request *req,
                                const struct scenario_set *set, const char *secret)
{
    struct nearest nr = {.n = 0};
    for (size_t i = 0; i < set->n; i++) {
        const struct scenario *s = set->items[i];
        if (strcmp(s->api, req->api) != 0)
            continue;
        long f = 0;
        for (size_t k = 0; k < s->nbind; k++)
            f += !cond_holds(&s->bind[k], req->facts, req, NULL);
        /* Fewest failures first, then the more specific (an int weight
         * stays below the factor). */
        nearest_offer(&nr, s, f * (1L << 32) - s->weight);
    }
    const struct scenario *const *near = nr.s;
    int n = nr.n;
    for (int i = 0; i < n; i++) {
        int first = 1;
        if (i)
            put(b, ",");
        put(b, "{\"scenario\":");
        json_append_string(b, near[i]->name);
        put(b, ",\"bind\":");
        put_when(b, cJSON_GetObjectItemCaseSensitive(near[i]->doc, "bind"), secret);
        put(b, ",\"failed\":[");
        for (size_t k = 0; k < near[i]->nbind; k++)
            if (!cond_holds(&near[i]->bind[k], req->facts, req, NULL))
                put_failed_cond(b, &near[i]->bind[k], req, NULL, secret, &first);
        put(b, "]}");
    }
}

/* The edit distance of two names, the forced one cut to 128 bytes. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128)
        la = 128;
    if (lb > 128)
        lb = 128;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* UNKNOWN_FORCED: the scenarios of the API whose names are nearest the one asked for. */
static void put_name_candidates(struct buf *b, const struct scenario_request *req,
                                const struct scenario_set *set)
{
    struct nearest nr = {.n = 0};
    for (size_t i = 0; i < set->n; i++) {
        const struct scenario *s = set->items[i];
        if (strcmp(s->api, req->api) == 0)
            nearest_offer(&nr, s, (long)edit_distance(req->forced, s->name));
    }
    const struct scenario *const *near = nr.s;
    int n = nr.n;
    for (int i = 0; i < n; i++) {
        if (i)
            put(b, ",");
        put(b, "{\"scenario\":");
        json_append_string(b, near[i]->name);
        put(b, ",\"failed\":[{\"field\":\"headers.X-Authmock-Scenario\",\"condition\":\"equals\","
               "\"expected\":");
        json_append_string(b, near[i]->name);
        put(b, ",\"actual\":");
        json_append_string(b, req->forced);
        put(b, "}]}");
    }
}

int scenario_explain_json(const struct scenario_request *req, const struct scenario_outcome *out,
                          int rc, const char *secret, struct buf *b)
{
    const struct scenario *s = out->scenario;
    const struct scenario_explain *w = &out->why;
    put(b, "{\"scenario\":");
    json_append_string(b, s ? s->name : NULL);
    put(b, ",\"boundBy\":");
    json_append_string(b, s ? bound_names[w->bound_by] : NULL);
    put(b, ",\"session\":");
    /* "api:identity", as GET /__admin/sessions names it. */
    char session[400];
    size_t la = strlen(req->api), li = strlen(req->identity);
    if (la + 1 + li >= sizeof session)
        li = sizeof session - la - 2;
    memcpy(session, req->api, la);
    session[la] = ':';
    memcpy(session + la + 1, req->identity, li);
    session[la + 1 + li] = '\0';
    json_append_string(b, session);
    put(b, ",\"binding\":");
    if (s)
        put_binding(b, s, req, secret);
    else
        put(b, "null");
    put(b, w->fresh ? ",\"newSession\":true,\"stateBefore\":"
                    : ",\"newSession\":false,\"stateBefore\":");
    json_append_string(b, s ? out->state_from : NULL);
    put(b, ",\"stateAfter\":");
    json_append_string(b, s ? out->state_to : NULL);
    put(b, ",\"step\":");
    if (s && rc == SCENARIO_OK && !out->limited && w->state >= 0 && w->step >= 0) {
        const struct step *st = &s->states[w->state].steps[w->step];
        put(b, "{\"state\":");
        json_append_string(b, s->states[w->state].name);
        put(b, ",\"index\":");
        json_append_number(b, w->step);
        put(b, ",\"when\":");
        put_when(b, st->when, secret);
        put(b, ",\"description\":");
        json_append_string(b, st->description);
        put(b, "}");
    } else {
        put(b, "null");
    }
    put(b, ",\"limit\":");
    if (s && out->limited && w->limit >= 0 && (size_t)w->limit < s->nlimits)
        put_limit(b, s, w->limit, w->limit_count, w->limit_started, w->blocked_until,
                  out->retry_after);
    else
        put(b, "null");
    put(b, ",\"blockStarted\":");
    if (s && w->block_started >= 0 && (size_t)w->block_started < s->nlimits)
        put_limit(b, s, w->block_started, w->block_count, 1, w->blocked_until, -1);
    else
        put(b, "null");
    put(b, ",\"counters\":{");
    for (size_t c = 0; s && c < w->ncounters; c++) {
        if (c)
            put(b, ",");
        json_append_string(b, s->counters[c]);
        put(b, ":");
        json_append_number(b, (double)w->counters[c]);
    }
    put(b, "}");
    if (rc == SCENARIO_NO_STEP || rc == SCENARIO_UNBOUND || rc == SCENARIO_UNKNOWN_FORCED) {
        put(b, ",\"candidates\":[");
        if (rc == SCENARIO_NO_STEP && s)
            put_step_candidates(b, req, out, secret);
        else if (rc == SCENARIO_UNBOUND && out->set)
            put_bind_candidates(b, req, out->set, secret);
        else if (rc == SCENARIO_UNKNOWN_FORCED && out->set && req->forced)
            put_name_candidates(b, req, out->set);
        put(b, "]");
    }
    put(b, "}");
    return b->data ? 0 : -1;
}

/* ---- variable expansion ----------------------------------------------- */

static int expand_string(cJSON *item, const cJSON *vars)
{
    const char *s = item->valuestring;
    if (!strstr(s, "${"))
        return 0;
    struct buf b = {0};
    while (*s) {
        const char *open = strstr(s, "${");
        const char *close = open ? strchr(open, '}') : NULL;
        if (!open || !close) {
            buf_append(&b, s, strlen(s));
            break;
        }
        buf_append(&b, s, (size_t)(open - s));
        char name[128];
        size_t n = (size_t)(close - open - 2);
        const cJSON *v = NULL;
        if (n < sizeof name) {
            memcpy(name, open + 2, n);
            name[n] = '\0';
            v = vars ? cJSON_GetObjectItemCaseSensitive(vars, name) : NULL;
        }
        if (cJSON_IsString(v))
            buf_append(&b, v->valuestring, strlen(v->valuestring));
        else
            buf_append(&b, open, (size_t)(close - open + 1));
        s = close + 1;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    /* The old string came from cJSON's allocator (perhaps the request's
     * arena), so cJSON frees it; the new one is plain malloc, which cJSON's
     * free also takes. */
    char *old = item->valuestring;
    item->valuestring = b.data;
    cJSON_free(old);
    return 0;
}

int scenario_expand(cJSON *tree, const cJSON *vars)
{
    if (cJSON_IsString(tree))
        return expand_string(tree, vars);
    cJSON *c;
    cJSON_ArrayForEach(c, tree) scenario_expand(c, vars);
    return 0;
}

/*
 * config: getopt_long over argv, after the environment has been applied, so
 * each option reads AUTHMOCK_<NAME> too. Values are validated here so the
 * server never starts half-configured.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef AUTHMOCK_SOURCE_DIR
#define AUTHMOCK_SOURCE_DIR "."
#endif
#ifndef AUTHMOCK_DATA_DIR
#define AUTHMOCK_DATA_DIR "/usr/local/share/authmock"
#endif

enum opt_id {
    OPT_BIND = 256,
    OPT_PORT,
    OPT_DB,
    OPT_FIXTURES,
    OPT_SCENARIOS,
    OPT_PROFILE,
    OPT_SEED,
    OPT_ADMIN_TOKEN,
    OPT_LOG_FORMAT,
    OPT_QUIET,
    OPT_JOURNAL_MAX,
    OPT_JOURNAL_MAX_BYTES,
    OPT_CORS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_THREADS,
    OPT_CONN_TIMEOUT,
    OPT_REQ_TIMEOUT,
    OPT_MAX_CONN,
    OPT_MAX_SESSIONS,
    OPT_MAX_TOKENS,
    OPT_HELP,
    OPT_VERSION,
};

struct opt_desc {
    const char *name;
    int has_arg;
    int id;
    const char *env;
    const char *arg;
    const char *help;
};

static const struct opt_desc opts[] = {
    {"bind", 1, OPT_BIND, "AUTHMOCK_BIND", "ADDR",
     "address to listen on, IPv4 or IPv6; :: serves IPv4 too (default 127.0.0.1)"},
    {"port", 1, OPT_PORT, "AUTHMOCK_PORT", "N",
     "port; 0 picks a free one and prints it (default 8080)"},
    {"db", 1, OPT_DB, "AUTHMOCK_DB", "PATH",
     "SQLite database; a file keeps state across restarts (default :memory:)"},
    {"fixtures", 1, OPT_FIXTURES, "AUTHMOCK_FIXTURES", "DIR",
     "fixtures directory (default: the bundled fixtures)"},
    {"scenarios", 1, OPT_SCENARIOS, "AUTHMOCK_SCENARIOS", "DIR",
     "scenarios directory (default: the bundled scenarios)"},
    {"profile", 1, OPT_PROFILE, "AUTHMOCK_PROFILE", "NAME",
     "documented|server: which defaults to follow where docs and servers disagree"},
    {"seed", 1, OPT_SEED, "AUTHMOCK_SEED", "N", "deterministic ids, tokens and codes"},
    {"admin-token", 1, OPT_ADMIN_TOKEN, "AUTHMOCK_ADMIN_TOKEN", "T",
     "require 'Authorization: Bearer T' on /__admin routes"},
    {"log-format", 1, OPT_LOG_FORMAT, "AUTHMOCK_LOG_FORMAT", "FMT", "text|json (default text)"},
    {"quiet", 0, OPT_QUIET, "AUTHMOCK_QUIET", NULL, "log errors only, no request lines"},
    {"journal-max", 1, OPT_JOURNAL_MAX, "AUTHMOCK_JOURNAL_MAX", "N",
     "journal entries kept; 0: no journal (default 10000)"},
    {"journal-max-bytes", 1, OPT_JOURNAL_MAX_BYTES, "AUTHMOCK_JOURNAL_MAX_BYTES", "N",
     "bytes the journal's entries may take, oldest dropped first; bodies are kept to 4096 "
     "bytes; 0: no journal (default 8388608)"},
    {"cors", 1, OPT_CORS, "AUTHMOCK_CORS", "ORIGIN",
     "send CORS headers for ORIGIN and answer preflights"},
    {"tls-cert", 1, OPT_TLS_CERT, "AUTHMOCK_TLS_CERT", "FILE",
     "serve HTTPS with this PEM certificate"},
    {"tls-key", 1, OPT_TLS_KEY, "AUTHMOCK_TLS_KEY", "FILE", "PEM private key for --tls-cert"},
    {"threads", 1, OPT_THREADS, "AUTHMOCK_THREADS", "N",
     "worker threads (default: number of CPUs)"},
    {"connection-timeout", 1, OPT_CONN_TIMEOUT, "AUTHMOCK_CONNECTION_TIMEOUT", "S",
     "close a connection idle for S seconds (default 30)"},
    {"request-timeout", 1, OPT_REQ_TIMEOUT, "AUTHMOCK_REQUEST_TIMEOUT", "S",
     "answer 408 and close when a request has not wholly arrived S seconds after its first "
     "byte (default 10)"},
    {"max-connections", 1, OPT_MAX_CONN, "AUTHMOCK_MAX_CONNECTIONS", "N",
     "concurrent connections accepted; the open-file limit is raised to fit (default: what "
     "the limit allows, up to 10000)"},
    {"max-sessions", 1, OPT_MAX_SESSIONS, "AUTHMOCK_MAX_SESSIONS", "N",
     "identities kept (and a quarter as many SMS phones, confirm keys, user changes); least "
     "recently used go first (default 10000)"},
    {"max-tokens", 1, OPT_MAX_TOKENS, "AUTHMOCK_MAX_TOKENS", "N",
     "mesh connections and onlyoffice tokens kept; least recently used go first "
     "(default 10000)"},
    {"help", 0, OPT_HELP, NULL, NULL, "show this help"},
    {"version", 0, OPT_VERSION, NULL, NULL, "show the version"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

void config_usage(void)
{
    printf("Usage: authmock [OPTION]...        serve the mock APIs\n"
           "       authmock check FILE|DIR...  validate scenario and fixture files\n"
           "       authmock [OPTION]... health ask the server at --bind and --port (with\n"
           "                                   --admin-token) whether it is healthy: exit 0\n"
           "                                   if so\n\n"
           "A local mock of the Mesh account-authentication API and the ONLYOFFICE\n"
           "DocSpace authentication API, for integration tests.\n\nOptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        printf("  %-26s %s", left, opts[i].help);
        if (opts[i].env)
            printf(" [%s]", opts[i].env);
        printf("\n");
    }
}

const char *config_default_dir(const char *name)
{
    static char paths[2][2][512];
    int which = strcmp(name, "fixtures") == 0 ? 0 : 1;
    snprintf(paths[which][0], sizeof paths[which][0], "%s/%s", AUTHMOCK_SOURCE_DIR, name);
    snprintf(paths[which][1], sizeof paths[which][1], "%s/%s", AUTHMOCK_DATA_DIR, name);
    /* An installed binary uses the data directory; a build tree uses the sources. */
    if (access(paths[which][1], R_OK) == 0)
        return paths[which][1];
    return paths[which][0];
}

/* What config_parse found wrong: one line per problem, all of them. */
struct errors {
    char *buf;
    size_t cap, len;
    int count;
    const char *last_word; /* the word of the last unknown short option */
};

static void err_add(struct errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_add(struct errors *e, const char *fmt, ...)
{
    e->count++;
    if (e->len + 1 >= e->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->buf + e->len, e->cap - e->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    e->len += (size_t)n < e->cap - e->len - 1 ? (size_t)n : e->cap - e->len - 2;
    e->buf[e->len++] = '\n';
    e->buf[e->len] = '\0';
}

/* A whole number in [min, max]; otherwise a problem naming the range. */
static int parse_number(const char *origin, const char *text, long min, long max, long *out,
                        struct errors *e)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end) {
        err_add(e, "%s: '%s' is not a whole number (allowed: %ld to %ld)", origin, text, min, max);
        return -1;
    }
    if (errno || v < min || v > max) {
        err_add(e, "%s: %s is out of range (allowed: %ld to %ld)", origin, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int apply(struct config *cfg, int id, const char *val, const char *origin, struct errors *e)
{
    long n;
    switch (id) {
    case OPT_BIND:
        cfg->bind = val;
        return 0;
    case OPT_PORT:
        if (parse_number(origin, val, 0, 65535, &n, e))
            return -1;
        cfg->port = (int)n;
        return 0;
    case OPT_DB:
        cfg->db = val;
        return 0;
    case OPT_FIXTURES:
        cfg->fixtures = val;
        return 0;
    case OPT_SCENARIOS:
        cfg->scenarios = val;
        return 0;
    case OPT_PROFILE:
        if (strcmp(val, "documented") == 0)
            cfg->profile = PROFILE_DOCUMENTED;
        else if (strcmp(val, "server") == 0)
            cfg->profile = PROFILE_SERVER;
        else {
            err_add(e, "%s: '%s' is not a profile (allowed: documented or server)", origin, val);
            return -1;
        }
        return 0;
    case OPT_SEED: {
        char *end;
        errno = 0;
        /* strtoull takes "-1" as a huge number: a seed has no sign. */
        unsigned long long s = strtoull(val, &end, 10);
        if (errno || end == val || *end || strchr(val, '-')) {
            err_add(e, "%s: '%s' is not a whole number (allowed: 0 to %llu)", origin, val,
                    (unsigned long long)UINT64_MAX);
            return -1;
        }
        cfg->seeded = 1;
        cfg->seed = s;
        return 0;
    }
    case OPT_ADMIN_TOKEN:
        if (!*val) {
            err_add(e, "%s: the admin token must not be empty", origin);
            return -1;
        }
        cfg->admin_token = val;
        return 0;
    case OPT_LOG_FORMAT:
        if (strcmp(val, "text") == 0)
            cfg->log_json = 0;
        else if (strcmp(val, "json") == 0)
            cfg->log_json = 1;
        else {
            err_add(e, "%s: '%s' is not a log format (allowed: text or json)", origin, val);
            return -1;
        }
        return 0;
    case OPT_QUIET:
        cfg->quiet = !val || (strcmp(val, "0") != 0 && strcmp(val, "false") != 0 && *val);
        return 0;
    case OPT_JOURNAL_MAX:
        if (parse_number(origin, val, 0, 100000000, &n, e))
            return -1;
        cfg->journal_max = n;
        return 0;
    case OPT_JOURNAL_MAX_BYTES:
        if (parse_number(origin, val, 0, 1L << 40, &n, e))
            return -1;
        cfg->journal_max_bytes = n;
        return 0;
    case OPT_CORS:
        cfg->cors = val;
        return 0;
    case OPT_TLS_CERT:
        cfg->tls_cert = val;
        return 0;
    case OPT_TLS_KEY:
        cfg->tls_key = val;
        return 0;
    case OPT_THREADS:
        if (parse_number(origin, val, 1, 256, &n, e))
            return -1;
        cfg->threads = (int)n;
        return 0;
    case OPT_CONN_TIMEOUT:
        if (parse_number(origin, val, 1, 86400, &n, e))
            return -1;
        cfg->connection_timeout = (int)n;
        return 0;
    case OPT_REQ_TIMEOUT:
        if (parse_number(origin, val, 1, 3600, &n, e))
            return -1;
        cfg->request_timeout = (int)n;
        return 0;
    case OPT_MAX_CONN:
        if (parse_number(origin, val, 1, 1000000, &n, e))
            return -1;
        cfg->max_connections = (int)n;
        return 0;
    case OPT_MAX_SESSIONS:
    case OPT_MAX_TOKENS:
        if (parse_number(origin, val, 1, 100000000, &n, e))
            return -1;
        *(id == OPT_MAX_SESSIONS ? &cfg->max_sessions : &cfg->max_tokens) = n;
        return 0;
    }
    return 0;
}

/* Edit distance with adjacent transpositions (optimal string alignment), so
 * that "prot" is one edit from "port". Long words are not compared. */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
    enum { MAXW = 40 };
    size_t lb = strlen(b);
    if (la >= MAXW || lb >= MAXW)
        return MAXW;
    size_t d[MAXW + 1][MAXW + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The option a misspelt `arg` ("--prot", "-port", "--prot=80") was most
 * likely meant to be, or NULL when none is close. */
static const struct opt_desc *closest_option(const char *arg)
{
    while (*arg == '-')
        arg++;
    size_t len = strcspn(arg, "=");
    const struct opt_desc *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NOPTS; i++) {
        size_t d = edit_distance(arg, len, opts[i].name);
        /* Two edits make another word of a short name ("db" from "to"). */
        if (d < best_d && (d <= 1 || len >= 5)) {
            best = &opts[i];
            best_d = d;
        }
    }
    return best;
}

/* The argument after the refused option `bad`, when it looks like the value
 * that option was meant to take. */
static const char *value_after(const char *bad, int argc, char **argv)
{
    int at = 0;
    while (at < argc && argv[at] != bad)
        at++;
    if (strchr(bad, '=') || at + 1 >= argc || argv[at + 1][0] == '-')
        return NULL;
    return argv[at + 1];
}

/* Reports the option getopt_long refused: unknown (with a likely meant one),
 * ambiguous, missing its value, or given a value it does not take. Returns
 * the next argument when the likely meant option takes it as its value, so
 * that it is not reported again as an unexpected argument. */
static const char *report_bad_option(int c, int argc, char **argv, struct errors *e)
{
    const struct opt_desc *known = NULL;
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].id == optopt)
            known = &opts[i];
    if (known && c == ':') {
        err_add(e, "--%s needs a value (%s)", known->name, known->arg);
        return NULL;
    }
    if (known) {
        err_add(e, "--%s takes no value", known->name);
        return NULL;
    }
    const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    if (optopt > 0 && optopt < 256) {
        /* An unknown short option: the word it is in ("-port" is reported
         * once, not once per letter). */
        if (optind < argc && argv[optind][0] == '-' && argv[optind][1] != '-' &&
            strchr(argv[optind], optopt))
            bad = argv[optind];
        if (bad == e->last_word)
            return NULL;
        e->last_word = bad;
    }
    if (bad[0] == '-' && bad[1] == '-') {
        /* An unambiguous prefix is accepted by getopt_long; list the
         * options an ambiguous one could be. */
        size_t len = strcspn(bad + 2, "=");
        char list[256] = "";
        int matches = 0, valued = 0;
        for (size_t i = 0; len && i < NOPTS; i++) {
            if (strncmp(opts[i].name, bad + 2, len) == 0) {
                size_t n = strlen(list);
                snprintf(list + n, sizeof list - n, "%s--%s", matches ? ", " : "", opts[i].name);
                matches++;
                valued += opts[i].has_arg;
            }
        }
        if (matches > 1) {
            err_add(e, "option '%.*s' is ambiguous: %s", (int)len + 2, bad, list);
            return valued == matches ? value_after(bad, argc, argv) : NULL;
        }
    }
    const struct opt_desc *meant = closest_option(bad);
    if (!meant) {
        err_add(e, "unknown option '%s'; see --help", bad);
        return NULL;
    }
    err_add(e, "unknown option '%s'; did you mean --%s?", bad, meant->name);
    return meant->has_arg ? value_after(bad, argc, argv) : NULL;
}

int config_parse(int argc, char **argv, struct config *cfg, enum config_mode *mode, int *first_arg,
                 char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind = "127.0.0.1";
    cfg->port = 8080;
    cfg->db = ":memory:";
    cfg->profile = PROFILE_DOCUMENTED;
    cfg->journal_max = 10000;
    cfg->journal_max_bytes = 8L << 20;
    cfg->threads = 0;
    cfg->connection_timeout = 30;
    cfg->request_timeout = 10;
    cfg->max_connections = 0;
    cfg->max_sessions = 10000;
    cfg->max_tokens = 10000;
    *mode = CONFIG_SERVE;
    *first_arg = argc;
    struct errors e = {err, errlen, 0, 0, NULL};
    if (errlen)
        err[0] = '\0';

    /* A variable's problem is kept aside: the command line may set the
     * option anyway, and then the variable does not matter. */
    char env_err[NOPTS][200];
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        struct errors one = {env_err[i], sizeof env_err[i], 0, 0, NULL};
        env_err[i][0] = '\0';
        if (v)
            apply(cfg, opts[i].id, v, opts[i].env, &one);
    }

    struct option longopts[NOPTS + 1];
    for (size_t i = 0; i < NOPTS; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg = opts[i].has_arg ? required_argument : no_argument;
        longopts[i].flag = NULL;
        longopts[i].val = opts[i].id;
    }
    memset(&longopts[NOPTS], 0, sizeof longopts[NOPTS]);

    /* Every bad option is reported, not only the first. */
    const char *absorbed[16];
    size_t nabsorbed = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            *mode = CONFIG_HELP;
            return 0;
        }
        if (c == 'V' || c == OPT_VERSION) {
            *mode = CONFIG_VERSION;
            return 0;
        }
        if (c == '?' || c == ':') {
            const char *value = report_bad_option(c, argc, argv, &e);
            if (value && nabsorbed < sizeof absorbed / sizeof absorbed[0])
                absorbed[nabsorbed++] = value;
            continue;
        }
        for (size_t i = 0; i < NOPTS; i++) {
            if (opts[i].id == c) {
                char origin[40];
                snprintf(origin, sizeof origin, "--%s", opts[i].name);
                env_err[i][0] = '\0';
                apply(cfg, c, optarg, origin, &e);
            }
        }
    }
    for (size_t i = 0; i < NOPTS; i++)
        if (env_err[i][0])
            err_add(&e, "%.*s", (int)strcspn(env_err[i], "\n"), env_err[i]);

    /* The value a misspelt option was given is not an argument of its own
     * (there is a problem to report then, so the indexes need not be exact). */
    int arg = optind, rest = argc - optind;
    for (int i = optind; i < argc; i++) {
        for (size_t k = 0; k < nabsorbed; k++) {
            if (argv[i] == absorbed[k]) {
                rest--;
                arg += arg == i;
            }
        }
    }
    if (rest > 0) {
        if (strcmp(argv[arg], "check") == 0) {
            *mode = CONFIG_CHECK;
            *first_arg = arg + 1;
            if (rest == 1)
                err_add(&e, "check needs at least one FILE or DIR");
        } else if (strcmp(argv[arg], "health") == 0 && rest == 1) {
            *mode = CONFIG_HEALTH;
        } else {
            err_add(&e, "unexpected argument '%s'; see --help", argv[arg]);
        }
    }
    if (*mode == CONFIG_SERVE && (cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        err_add(&e, "--tls-cert and --tls-key go together");
    if (e.count)
        return -1;
    if (!cfg->fixtures)
        cfg->fixtures = config_default_dir("fixtures");
    if (!cfg->scenarios)
        cfg->scenarios = config_default_dir("scenarios");
    return 0;
}

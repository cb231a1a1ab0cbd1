/*
 * config: getopt_long over argv, after the environment has been applied, so
 * each option reads AUTHMOCK_<NAME> too. Values are validated here so the
 * server never starts half-configured.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
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
    {"bind", 1, OPT_BIND, "AUTHMOCK_BIND", "ADDR", "address to listen on (default 127.0.0.1)"},
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
           "       authmock [OPTION]... health ask the server at --port (and --admin-token)\n"
           "                                   whether it is healthy: exit 0 if so\n\n"
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

static int parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int apply(struct config *cfg, int id, const char *val, const char *origin, char *err,
                 size_t errlen)
{
    long n;
    switch (id) {
    case OPT_BIND:
        cfg->bind = val;
        return 0;
    case OPT_PORT:
        if (parse_long(val, 0, 65535, &n))
            goto bad_number;
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
            snprintf(err, errlen, "%s: '%s' is not a profile (documented or server)", origin, val);
            return -1;
        }
        return 0;
    case OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(val, &end, 10);
        if (errno || end == val || *end)
            goto bad_number;
        cfg->seeded = 1;
        cfg->seed = s;
        return 0;
    }
    case OPT_ADMIN_TOKEN:
        if (!*val) {
            snprintf(err, errlen, "%s: the admin token must not be empty", origin);
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
            snprintf(err, errlen, "%s: '%s' is not a log format (text or json)", origin, val);
            return -1;
        }
        return 0;
    case OPT_QUIET:
        cfg->quiet = !val || (strcmp(val, "0") != 0 && strcmp(val, "false") != 0 && *val);
        return 0;
    case OPT_JOURNAL_MAX:
        if (parse_long(val, 0, 100000000, &n))
            goto bad_number;
        cfg->journal_max = n;
        return 0;
    case OPT_JOURNAL_MAX_BYTES:
        if (parse_long(val, 0, 1L << 40, &n))
            goto bad_number;
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
        if (parse_long(val, 1, 256, &n))
            goto bad_number;
        cfg->threads = (int)n;
        return 0;
    case OPT_CONN_TIMEOUT:
        if (parse_long(val, 1, 86400, &n))
            goto bad_number;
        cfg->connection_timeout = (int)n;
        return 0;
    case OPT_REQ_TIMEOUT:
        if (parse_long(val, 1, 3600, &n))
            goto bad_number;
        cfg->request_timeout = (int)n;
        return 0;
    case OPT_MAX_CONN:
        if (parse_long(val, 1, 1000000, &n))
            goto bad_number;
        cfg->max_connections = (int)n;
        return 0;
    case OPT_MAX_SESSIONS:
    case OPT_MAX_TOKENS:
        if (parse_long(val, 1, 100000000, &n))
            goto bad_number;
        *(id == OPT_MAX_SESSIONS ? &cfg->max_sessions : &cfg->max_tokens) = n;
        return 0;
    }
    return 0;
bad_number:
    snprintf(err, errlen, "%s: '%s' is not a valid number here", origin, val);
    return -1;
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

    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v && apply(cfg, opts[i].id, v, opts[i].env, err, errlen))
            return -1;
    }

    struct option longopts[NOPTS + 1];
    for (size_t i = 0; i < NOPTS; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg = opts[i].has_arg ? required_argument : no_argument;
        longopts[i].flag = NULL;
        longopts[i].val = opts[i].id;
    }
    memset(&longopts[NOPTS], 0, sizeof longopts[NOPTS]);

    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            *mode = CONFIG_HELP;
            return 0;
        }
        if (c == 'V' || c == OPT_VERSION) {
            *mode = CONFIG_VERSION;
            return 0;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            if (optopt)
                snprintf(err, errlen, "option '%s' needs a value or is unknown; see --help", bad);
            else
                snprintf(err, errlen, "unknown option '%s'; see --help", bad);
            return -1;
        }
        char origin[40];
        for (size_t i = 0; i < NOPTS; i++)
            if (opts[i].id == c)
                snprintf(origin, sizeof origin, "--%s", opts[i].name);
        if (apply(cfg, c, optarg, origin, err, errlen))
            return -1;
    }
    if (optind < argc) {
        if (strcmp(argv[optind], "check") == 0) {
            *mode = CONFIG_CHECK;
            *first_arg = optind + 1;
            if (*first_arg >= argc) {
                snprintf(err, errlen, "check needs at least one FILE or DIR");
                return -1;
            }
            return 0;
        }
        if (strcmp(argv[optind], "health") == 0 && optind + 1 == argc) {
            *mode = CONFIG_HEALTH;
            return 0;
        }
        snprintf(err, errlen, "unexpected argument '%s'; see --help", argv[optind]);
        return -1;
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (!cfg->fixtures)
        cfg->fixtures = config_default_dir("fixtures");
    if (!cfg->scenarios)
        cfg->scenarios = config_default_dir("scenarios");
    return 0;
}

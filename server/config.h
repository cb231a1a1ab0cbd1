/*
 * config: the command line and its environment variables. Every option has
 * an AUTHMOCK_* variable; the command line wins over the environment, which
 * wins over the defaults.
 */
#ifndef AUTHMOCK_CONFIG_H
#define AUTHMOCK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum profile { PROFILE_DOCUMENTED, PROFILE_SERVER };

struct config {
    const char *bind;
    int port;
    const char *db;
    const char *fixtures;
    const char *scenarios;
    enum profile profile;
    int seeded;
    uint64_t seed;
    const char *admin_token;
    int log_json;
    int quiet;
    long journal_max;
    long journal_max_bytes;
    const char *cors;
    const char *tls_cert;
    const char *tls_key;
    int threads;
    int connection_timeout;
    int request_timeout;
    int max_connections; /* 0: as many as the file limit allows, up to 10000 */
    long max_sessions;
    long max_tokens;
};

enum config_mode { CONFIG_SERVE, CONFIG_HELP, CONFIG_VERSION, CONFIG_CHECK, CONFIG_HEALTH };

/* Parses argv and the environment. On success returns 0, sets *mode and, for
 * CONFIG_CHECK, *first_arg to the index of the first path. On error returns -1
 * with every problem in err, one line each (ending in a newline): the option
 * or variable at fault and what it allows. */
int config_parse(int argc, char **argv, struct config *cfg, enum config_mode *mode, int *first_arg,
                 char *err, size_t errlen);
void config_usage(void);
/* The bundled data directory `name` ("fixtures" or "scenarios"). */
const char *config_default_dir(const char *name);

#endif

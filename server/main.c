/*
 * main: parses the command line, loads fixtures and scenarios into the
 * store, and serves until SIGTERM/SIGINT; or, as `authmock check`, only
 * validates files. Any configuration problem ends the process before it
 * serves, with every problem listed as "file: json-path: message".
 */
#include "app.h"
#include "arena.h"
#include "clock.h"
#include "heap.h"
#include "http.h"
#include "journal.h"
#include "log.h"
#include "mesh.h"
#include "onlyoffice.h"
#include "rng.h"
#include "watch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <sys/stat.h>

/* The emulated APIs, for validating scenario files. */
static struct scenario_api api_table[2];
#define NAPIS (sizeof api_table / sizeof api_table[0])

static void init_apis(void)
{
    api_table[0] = mesh_scenario_api;
    api_table[1] = onlyoffice_scenario_api;
}

/* Checks one file: a scenario when it has "states" (or is not JSON at all,
 * so the scenario parser reports where), a fixture file otherwise. */
static int check_file(const char *path, struct scenario_set *set, struct fixtures *fx,
                      struct problems *p)
{
    size_t len, off;
    char *text = file_read(path, &len);
    if (!text) {
        problems_add(p, path, "$", "cannot be read: %s", strerror(errno));
        return 0;
    }
    cJSON *doc = json_parse(text, len, &off);
    /* Outside a fixtures directory (mesh/, onlyoffice/), JSON that is no
     * object is a broken scenario, as start-up reports it. */
    int scenario = !doc || cJSON_GetObjectItemCaseSensitive(doc, "states") != NULL ||
                   (!cJSON_IsObject(doc) && !fixtures_dir_api(path));
    cJSON_Delete(doc);
    int ok = 0;
    if (scenario) {
        struct scenario *s = scenario_parse(path, text, len, api_table, NAPIS, p);
        if (s && scenario_set_find(set, scenario_name(s))) {
            problems_add(p, path, "$.name", "'%s' is also the name of %s", scenario_name(s),
                         scenario_origin(scenario_set_find(set, scenario_name(s))));
            scenario_free(s);
        } else if (s) {
            ok = 1;
            scenario_set_add(set, s);
        }
    } else {
        ok = fixtures_load_file(fx, path, p) == 0;
    }
    free(text);
    return ok;
}

struct check_ctx {
    struct scenario_set *set;
    struct fixtures *fx;
    struct problems *p;
    int files;
};

static void check_one(const char *path, const char *problem, void *cls)
{
    struct check_ctx *cc = cls;
    if (problem)
        problems_add(cc->p, path, "$", "%s", problem);
    else
        cc->files += check_file(path, cc->set, cc->fx, cc->p);
}

static int check_path(const char *path, struct scenario_set *set, struct fixtures *fx,
                      struct problems *p)
{
    struct stat st;
    struct check_ctx cc = {set, fx, p, 0};
    if (stat(path, &st) != 0)
        problems_add(p, path, "$", "cannot be read: %s", strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        check_one(path, NULL, &cc);
    else if (dir_walk_json(path, check_one, &cc))
        problems_add(p, path, "$", "cannot be read: %s", strerror(errno));
    return cc.files;
}

static int run_check(char **paths, int n)
{
    struct problems p = {0};
    struct scenario_set *set = scenario_set_new();
    struct fixtures fx = {0};
    int files = 0;
    for (int i = 0; i < n; i++)
        files += check_path(paths[i], set, &fx, &p);
    mesh_check_fixtures(&fx, &p);
    onlyoffice_check_fixtures(&fx, &p);
    fixtures_free(&fx);
    scenario_set_release(set);
    if (p.count) {
        fputs(p.text.data, stderr);
        fprintf(stderr, "authmock check: %d problem%s\n", p.count, p.count == 1 ? "" : "s");
        problems_free(&p);
        return 1;
    }
    printf("authmock check: %d file%s valid\n", files, files == 1 ? "" : "s");
    return 0;
}

/* Connects to the server `authmock health` asks: --bind itself, or for an
 * any-address the loopback of its family (`::` serves IPv4 too, so 127.0.0.1
 * is tried when ::1 is not there). Returns the socket, -1 with the addresses
 * tried in `tried`, or -2 when --bind is not an address. `where` is the
 * address connected to, as a Host header names it. */
static int health_connect(const struct config *cfg, char *where, size_t cap, char *tried,
                          size_t tcap)
{
    const char *hosts[2] = {cfg->bind, NULL};
    if (strcmp(cfg->bind, "0.0.0.0") == 0) {
        hosts[0] = "127.0.0.1";
    } else if (strcmp(cfg->bind, "::") == 0) {
        hosts[0] = "::1";
        hosts[1] = "127.0.0.1";
    }
    int fd = -1;
    tried[0] = '\0';
    for (int i = 0; i < 2 && hosts[i] && fd < 0; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        socklen_t len;
        int v6 = strchr(hosts[i], ':') != NULL;
        snprintf(where, cap, "%s%s%s:%d", v6 ? "[" : "", hosts[i], v6 ? "]" : "", cfg->port);
        size_t t = strlen(tried);
        snprintf(tried + t, tcap - t, "%s%s", t ? " or " : "", where);
        if (inet_pton(AF_INET, hosts[i], &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)cfg->port);
            len = sizeof *sin;
        } else if (inet_pton(AF_INET6, hosts[i], &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)cfg->port);
            len = sizeof *sin6;
        } else {
            return -2;
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {.tv_sec = 3};
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
                close(fd);
                fd = -1;
            }
        }
    }
    return fd;
}

/* `authmock health`: GET /__admin/health on the configured port, for container
 * health checks where no HTTP client is installed. Exit 0 on 200 "ok"; else
 * exit 1 with one line saying why. */
static int run_health(const struct config *cfg)
{
    char where[80], tried[200];
    int fd = health_connect(cfg, where, sizeof where, tried, sizeof tried);
    if (fd == -2) {
        fprintf(stderr, "authmock health: --bind %s is not an IPv4 or IPv6 address\n", cfg->bind);
        return 1;
    }
    if (fd < 0) {
        fprintf(stderr, "authmock health: nothing listens on %s\n", tried);
        return 1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET /__admin/health HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n",
                     where, cfg->admin_token ? "Authorization: Bearer " : "",
                     cfg->admin_token ? cfg->admin_token : "", cfg->admin_token ? "\r\n" : "");
    char resp[4096];
    size_t got = 0;
    if (n > 0 && n < (int)sizeof req && write(fd, req, (size_t)n) == n) {
        ssize_t r;
        while (got + 1 < sizeof resp && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
            got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    if (got < 12 || memcmp(resp, "HTTP/1.", 7) != 0 || sscanf(resp + 8, " %3d", &status) != 1) {
        fprintf(stderr, "authmock health: no HTTP answer from %s\n", where);
        return 1;
    }
    const char *body = strstr(resp, "\r\n\r\n");
    body = body ? body + 4 : "";
    if (status == 200 && strstr(body, "\"status\":\"ok\""))
        return 0;
    if (status == 401) {
        fprintf(stderr, "authmock health: 401: %s\n",
                cfg->admin_token ? "the server refused this admin token; pass the one it runs "
                                   "with (--admin-token or AUTHMOCK_ADMIN_TOKEN)"
                                 : "pass --admin-token or AUTHMOCK_ADMIN_TOKEN");
        return 1;
    }
    /* The body on one line, whatever it holds. */
    char shown[201];
    size_t k = 0;
    for (const char *c = body; *c && k + 1 < sizeof shown; c++)
        shown[k++] = (unsigned char)*c < 0x20 ? ' ' : *c;
    shown[k] = '\0';
    fprintf(stderr, "authmock health: unhealthy: %d %s\n", status, shown);
    return 1;
}

static int persist_data(struct app *app)
{
    return fixtures_persist(&app->fixtures, app->store) || scenario_engine_persist(app->engine);
}

static void *persist_main(void *arg)
{
    struct app *app = arg;
    if (persist_data(app))
        log_error("cannot write fixtures and scenarios into the database: %s",
                  store_errmsg(app->store));
    return NULL;
}

/* The in-memory store's copy of the fixtures and scenarios is written by a
 * thread started behind the listening line, so on a busy machine it takes
 * no CPU from the start-up. */
static pthread_t persister;
static int persisting;

static void start_persisting(struct app *app)
{
    persisting = pthread_create(&persister, NULL, persist_main, app) == 0;
    if (!persisting)
        persist_main(app);
}

static void on_listening(struct app *app)
{
    heap_serving();
    if (!store_is_file(app->store))
        start_persisting(app);
}

/* Opens the store and the state beside it; a file database also gives back
 * what it kept (the mock clock, and uploaded scenarios into `set`). */
struct opening {
    struct app *app;
    struct scenario_set *set;
    enum { OPENED, STORE_FAILED, STATE_FAILED } result;
    char err[1024];
};

static void *open_state(void *arg)
{
    struct opening *o = arg;
    struct app *app = o->app;
    heap_this_thread();
    if (store_open(app->cfg.db, &app->store, o->err, sizeof o->err)) {
        o->result = STORE_FAILED;
        return NULL;
    }
    int is_file = store_is_file(app->store);
    if (is_file) {
        char *clock = store_meta_get(app->store, "clock");
        clock_load(clock);
        free(clock);
        scenario_load_uploaded(o->set, app->store, api_table, NAPIS);
    }
    struct state_limits limits = {app->cfg.max_sessions, app->cfg.max_tokens};
    if (state_open(&app->state, &limits, is_file ? app->store : NULL, o->err, sizeof o->err))
        o->result = STATE_FAILED;
    return NULL;
}

int main(int argc, char **argv)
{
    struct app app;
    memset(&app, 0, sizeof app);
    app.started = clock_monotonic();
    init_apis();
    enum config_mode mode;
    int first;
    char err[1024];
    char bad[4096];
    if (config_parse(argc, argv, &app.cfg, &mode, &first, bad, sizeof bad)) {
        for (const char *line = bad; *line;) {
            size_t n = strcspn(line, "\n");
            fprintf(stderr, "authmock: %.*s\n", (int)n, line);
            line += n + (line[n] == '\n');
        }
        return 2;
    }
    if (mode == CONFIG_HELP) {
        config_usage();
        return 0;
    }
    if (mode == CONFIG_VERSION) {
        printf("authmock %s\n", AUTHMOCK_VERSION);
        return 0;
    }
    if (mode == CONFIG_CHECK)
        return run_check(argv + first, argc - first);
    if (mode == CONFIG_HEALTH)
        return run_health(&app.cfg);

    log_init(app.cfg.log_json ? LOG_JSON : LOG_TEXT, app.cfg.quiet);
    json_arena_install();
    /* A --db file that reaches the file size limit must fail its writes (and
     * degrade health), not kill the server. */
    signal(SIGXFSZ, SIG_IGN);
    /* SIGTERM and SIGINT are taken by sigwait in http_serve: block them before
     * the first thread starts (the state and journal threads start before
     * the server), or the kernel may deliver one to a thread that lets it
     * kill the process. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    rng_init(app.cfg.seeded, app.cfg.seed);
    heap_start_up();

    struct problems p = {0};
    /* A store in memory, and the state beside it, need no file and fail only
     * for want of memory: a thread opens them while the files load. A file
     * database is opened only once the files are valid. */
    struct opening opening = {&app, NULL, OPENED, ""};
    pthread_t opener;
    int opened_early = store_path_in_memory(app.cfg.db) &&
                       pthread_create(&opener, NULL, open_state, &opening) == 0;
    /* The scenario files are parsed on other threads while this one loads
     * the fixtures; their problems still come after the fixtures'. */
    struct scenario_load *load = scenario_load_start(app.cfg.scenarios, api_table, NAPIS);
    /* Watched from before they are read, so an edit made meanwhile is seen;
     * the watcher thread starts once there is an engine to reload. */
    watch_prepare(app.cfg.scenarios);
    fixtures_load(&app.fixtures, app.cfg.fixtures, &p);
    if (!p.count) {
        mesh_check_fixtures(&app.fixtures, &p);
        onlyoffice_check_fixtures(&app.fixtures, &p);
    }
    if (!p.count && cJSON_GetArraySize(app.fixtures.mesh_clients) == 0)
        problems_add(&p, app.cfg.fixtures, "mesh.clients",
                     "at least one mesh API client is needed");
    struct scenario_set *set = scenario_set_new();
    scenario_load_finish(load, set, NULL, &p);
    if (opened_early)
        pthread_join(opener, NULL);
    int rc = 1;
    if (p.count) {
        fputs(p.text.data, stderr);
        fprintf(stderr, "authmock: not starting: %d problem%s in fixtures or scenarios\n", p.count,
                p.count == 1 ? "" : "s");
        scenario_set_release(set);
        goto out;
    }
    if (!opened_early) {
        opening.set = set;
        open_state(&opening);
    }
    if (opening.result == STORE_FAILED)
        fprintf(stderr, "authmock: %s\n", opening.err);
    else if (opening.result == STATE_FAILED)
        fprintf(stderr, "authmock: --db %s: %s\n", app.cfg.db, opening.err);
    if (opening.result != OPENED) {
        scenario_set_release(set);
        goto out;
    }
    int is_file = store_is_file(app.store);
    app.engine = scenario_engine_new(app.store, app.state, set);
    app.apis = api_table;
    app.napis = NAPIS;
    /* A file database gets the fixtures and scenarios before serving, so a
     * file that cannot take them stops the start. The in-memory one (no
     * reader but this process) gets them behind the listening line: with a
     * thousand scenarios that is a fifth of the start-up's work. */
    if (is_file && persist_data(&app)) {
        fprintf(stderr, "authmock: cannot write fixtures and scenarios into %s: %s\n", app.cfg.db,
                store_errmsg(app.store));
        goto out;
    }
    app.on_listening = on_listening;
    if (journal_init(&app)) {
        fprintf(stderr, "authmock: no memory for a journal of %ld entries and %ld bytes\n",
                app.cfg.journal_max, app.cfg.journal_max_bytes);
        goto out;
    }
    watch_start(&app);
    int served = http_serve(&app, err, sizeof err);
    watch_stop();
    if (served) {
        fprintf(stderr, "authmock: %s\n", err);
        goto out;
    }
    log_info("stopped");
    rc = 0;
out:
    if (persisting)
        pthread_join(persister, NULL);
    problems_free(&p);
    journal_free(&app);
    scenario_engine_free(app.engine);
    state_close(app.state);
    store_close(app.store);
    fixtures_free(&app.fixtures);
    return rc;
}

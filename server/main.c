/*
 * main: parses the command line, loads fixtures and scenarios into the
 * store, and serves until SIGTERM/SIGINT; or, as `authmock check`, only
 * validates files. Any configuration problem ends the process before it
 * serves, with every problem listed as "file: json-path: message".
 */
#include "app.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "mesh.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct scenario_api apis[] = {
    {"mesh", NULL},
};

static struct scenario_api api_table[1];

static void init_apis(void)
{
    api_table[0] = mesh_scenario_api;
    (void)apis;
}

static int is_scenario_doc(const char *path)
{
    /* Scenario files have "states"; fixture files do not. */
    FILE *f = fopen(path, "rb");
    if (!f)
        return 1;
    char head[65536];
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    return strstr(head, "\"states\"") != NULL;
}

static int check_path(const char *path, struct problems *p)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        problems_add(p, path, "$", "cannot be read");
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        /* A directory: fixtures if it has mesh/ or onlyoffice/, else scenarios. */
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/mesh", path);
        struct stat s2;
        if (stat(sub, &s2) == 0 && S_ISDIR(s2.st_mode)) {
            struct fixtures f = {0};
            fixtures_load(&f, path, p);
            mesh_check_fixtures(&f, p);
            int n = (int)fixtures_count(&f);
            fixtures_free(&f);
            return n;
        }
        struct scenario_set *set = scenario_set_new();
        scenario_load_dir(set, path, api_table, 1, p);
        int n = (int)scenario_set_count(set);
        scenario_set_release(set);
        return n;
    }
    if (is_scenario_doc(path)) {
        FILE *f = fopen(path, "rb");
        struct buf b = {0};
        char chunk[8192];
        size_t n;
        while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(&b, chunk, n);
        if (f)
            fclose(f);
        struct scenario *s = scenario_parse(path, b.data ? b.data : "", b.len, api_table, 1, p);
        buf_free(&b);
        scenario_free(s);
        return s ? 1 : 0;
    }
    return fixtures_check_file(path, p) == 0 ? 1 : 0;
}

static int run_check(char **paths, int n)
{
    struct problems p = {0};
    int files = 0;
    for (int i = 0; i < n; i++)
        files += check_path(paths[i], &p);
    if (p.count) {
        fputs(p.text.data, stderr);
        fprintf(stderr, "authmock check: %d problem%s\n", p.count, p.count == 1 ? "" : "s");
        problems_free(&p);
        return 1;
    }
    printf("authmock check: %d item%s valid\n", files, files == 1 ? "" : "s");
    return 0;
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
    if (config_parse(argc, argv, &app.cfg, &mode, &first, err, sizeof err)) {
        fprintf(stderr, "authmock: %s\n", err);
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

    log_init(app.cfg.log_json ? LOG_JSON : LOG_TEXT, app.cfg.quiet);
    rng_init(app.cfg.seeded, app.cfg.seed);

    struct problems p = {0};
    fixtures_load(&app.fixtures, app.cfg.fixtures, &p);
    if (!p.count)
        mesh_check_fixtures(&app.fixtures, &p);
    struct scenario_set *set = scenario_set_new();
    scenario_load_dir(set, app.cfg.scenarios, api_table, 1, &p);
    int rc = 1;
    if (p.count) {
        fputs(p.text.data, stderr);
        fprintf(stderr, "authmock: not starting: %d problem%s in fixtures or scenarios\n", p.count,
                p.count == 1 ? "" : "s");
        scenario_set_release(set);
        goto out;
    }
    if (store_open(app.cfg.db, &app.store, err, sizeof err)) {
        fprintf(stderr, "authmock: %s\n", err);
        scenario_set_release(set);
        goto out;
    }
    app.engine = scenario_engine_new(app.store, set);
    if (fixtures_persist(&app.fixtures, app.store) || scenario_engine_persist(app.engine)) {
        fprintf(stderr, "authmock: cannot write fixtures and scenarios into %s: %s\n", app.cfg.db,
                store_errmsg(app.store));
        goto out;
    }
    if (http_serve(&app, err, sizeof err)) {
        fprintf(stderr, "authmock: %s\n", err);
        goto out;
    }
    log_info("stopped");
    rc = 0;
out:
    problems_free(&p);
    scenario_engine_free(app.engine);
    store_close(app.store);
    fixtures_free(&app.fixtures);
    return rc;
}

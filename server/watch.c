/*
 * watch: inotify on every directory under --scenarios, a stop pipe, and a
 * short settling delay so an editor's write-rename dance or a `cp -r` of many
 * files becomes one reload.
 */
#include "watch.h"
#include "app.h"
#include "clock.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define SETTLE_MS 150

static struct {
    struct app *app;
    int fd;
    int stop[2];
    pthread_t thread;
    int running;
    int prepared, prepare_errno;
} w = {NULL, -1, {-1, -1}, 0, 0, 0, 0};

/* The last reload, for the dashboard (GET /__admin/reload). */
static struct {
    pthread_mutex_t lock;
    double at; /* real time; 0: none yet */
    size_t loaded;
    struct problems problems; /* of a refused reload; empty when it was taken */
} last = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {{NULL, 0, 0}, 0}};

static void remember(size_t loaded, struct problems *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&last.lock);
    problems_free(&last.problems);
    last.problems = *p; /* taken over */
    *p = (struct problems){0};
    last.loaded = loaded;
    last.at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_unlock(&last.lock);
}

static void add_line(const char *line, void *list)
{
    cJSON_AddItemToArray(list, cJSON_CreateString(line));
}

cJSON *watch_last_reload(struct app *app)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "directory", app->cfg.scenarios);
    cJSON_AddBoolToObject(o, "watching", w.running);
    pthread_mutex_lock(&last.lock);
    if (last.at > 0) {
        char when[32];
        clock_format(last.at, when);
        cJSON_AddStringToObject(o, "at", when);
        cJSON_AddBoolToObject(o, "refused", last.problems.count > 0);
        if (last.problems.count == 0)
            cJSON_AddNumberToObject(o, "loaded", (double)last.loaded);
    } else {
        cJSON_AddNullToObject(o, "at");
        cJSON_AddBoolToObject(o, "refused", 0);
    }
    problems_each(&last.problems, add_line, cJSON_AddArrayToObject(o, "problems"));
    pthread_mutex_unlock(&last.lock);
    return o;
}

static void add_watches(const char *dir)
{
    inotify_add_watch(w.fd, dir,
                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE);
    /* In directory order: watches need no sorting, and scandir's sort and
     * copies were 1.1 million instructions of a start-up with a thousand
     * scenario files. */
    DIR *d = opendir(dir);
    if (!d)
        return;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* Only directories are watched: the entry's type says which (a stat
         * per file cost a thousand system calls of start-up with a thousand
         * scenario files); links and unknown types are stat'ed. */
        if (e->d_name[0] != '.' && e->d_type != DT_REG) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (e->d_type == DT_DIR || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
                add_watches(path);
        }
    }
    closedir(d);
}

static void log_refused(const char *line, void *cls)
{
    (void)cls;
    log_error("scenario refused: %s", line);
}

static void reload(void)
{
    struct app *app = w.app;
    struct problems p = {0};
    struct scenario_set *set = scenario_set_new();
    struct scenario_set *served = scenario_engine_acquire(app->engine);
    scenario_reload_dir(set, app->cfg.scenarios, app->apis, app->napis, served, &p);
    scenario_set_release(served);
    if (p.count) {
        problems_each(&p, log_refused, NULL);
        log_error("scenarios in %s not reloaded (%d problem%s); the previous ones keep serving",
                  app->cfg.scenarios, p.count, p.count == 1 ? "" : "s");
        scenario_set_release(set);
        remember(0, &p);
        return;
    }
    /* Scenarios added through the admin API are not in the directory: keep
     * them, including one uploaded while the files were being read. */
    size_t n = scenario_engine_reload(app->engine, set, "admin");
    log_info("reloaded %zu scenario%s from %s", n, n == 1 ? "" : "s", app->cfg.scenarios);
    remember(n, &p);
}

static int drain(void)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    while (read(w.fd, buf, sizeof buf) > 0)
        any = 1;
    return any;
}

static void *watch_main(void *arg)
{
    (void)arg;
    struct pollfd fds[2] = {{w.fd, POLLIN, 0}, {w.stop[0], POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[1].revents)
            break;
        if (!(fds[0].revents & POLLIN))
            continue;
        drain();
        /* Let a burst of changes settle into one reload. */
        struct pollfd one = {w.fd, POLLIN, 0};
        while (poll(&one, 1, SETTLE_MS) > 0 && drain())
            ;
        reload();
        add_watches(w.app->cfg.scenarios); /* new subdirectories */
    }
    return NULL;
}

int watch_prepare(const char *dir)
{
    w.prepared = 1;
    w.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w.fd < 0 || pipe2(w.stop, O_CLOEXEC) != 0) {
        w.prepare_errno = errno;
        if (w.fd >= 0)
            close(w.fd);
        w.fd = -1;
        return -1;
    }
    add_watches(dir);
    return 0;
}

int watch_start(struct app *app)
{
    w.app = app;
    if (!w.prepared)
        watch_prepare(app->cfg.scenarios);
    if (w.fd < 0) {
        log_error("live scenarios are off: inotify: %s", strerror(w.prepare_errno));
        return -1;
    }
    if (pthread_create(&w.thread, NULL, watch_main, NULL) != 0) {
        log_error("live scenarios are off: cannot start the watcher thread");
        close(w.fd);
        close(w.stop[0]);
        close(w.stop[1]);
        w.fd = -1;
        return -1;
    }
    w.running = 1;
    return 0;
}

void watch_stop(void)
{
    if (!w.running)
        return;
    ssize_t r = write(w.stop[1], "x", 1);
    (void)r;
    pthread_join(w.thread, NULL);
    close(w.fd);
    close(w.stop[0]);
    close(w.stop[1]);
    w.running = 0;
    pthread_mutex_lock(&last.lock);
    problems_free(&last.problems);
    pthread_mutex_unlock(&last.lock);
}

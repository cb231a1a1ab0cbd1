/*
 * watch: live scenarios. A thread watches the --scenarios directory (and its
 * subdirectories) with inotify; when files change it reloads the whole
 * directory, validated first. An invalid file is refused with a log line per
 * problem and the previous scenarios keep serving; scenarios added through
 * the admin API survive a reload.
 */
#ifndef AUTHMOCK_WATCH_H
#define AUTHMOCK_WATCH_H

#include <cjson/cJSON.h>

struct app;

/* Puts inotify watches on `dir` and its subdirectories, before the scenarios
 * are read: an edit made while they load is then seen. Returns 0 or -1 (the
 * reason is logged by watch_start). */
int watch_prepare(const char *dir);
/* Starts watching app->cfg.scenarios (preparing first unless watch_prepare
 * was called). Returns 0, or -1 (logged) when inotify is unavailable. */
int watch_start(struct app *app);
void watch_stop(void);
/* The last reload of the directory since start, for GET /__admin/reload:
 * {"directory", "watching", "at" (real time, null before the first),
 * "refused", "loaded" (when taken), "problems": ["file: json-path: message"]}. */
cJSON *watch_last_reload(struct app *app);

#endif

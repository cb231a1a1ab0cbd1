/*
 * store: SQLite schema, prepared statements and the connection lock. A file
 * database runs in WAL mode so state written before a crash or SIGTERM is
 * there after a restart; the default is an in-memory database.
 */
#include "store.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store {
    int owner_fd; /* the flock()ed "<db>.lock" of a file database, else -1 */
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *stmts[ST_COUNT];
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fixtures(kind TEXT NOT NULL, key TEXT NOT NULL, origin TEXT NOT "
    "NULL, json TEXT NOT NULL, PRIMARY KEY(kind, key));"
    "CREATE TABLE IF NOT EXISTS scenarios(name TEXT PRIMARY KEY, api TEXT NOT NULL, origin TEXT "
    "NOT NULL, json TEXT NOT NULL);"
    /* The state module's records: kind, key (namespace first), JSON. */
    "CREATE TABLE IF NOT EXISTS state(kind INTEGER NOT NULL, key TEXT NOT NULL, ns TEXT NOT NULL, "
    "json TEXT NOT NULL, PRIMARY KEY(kind, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS state_ns ON state(ns);";

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_FIXTURE_PUT] = "INSERT OR REPLACE INTO fixtures(kind, key, origin, json) VALUES(?1, ?2, "
                       "?3, ?4)",
    [ST_FIXTURES_CLEAR] = "DELETE FROM fixtures",
    [ST_SCENARIO_PUT] = "INSERT OR REPLACE INTO scenarios(name, api, origin, json) VALUES(?1, ?2, "
                        "?3, ?4)",
    [ST_SCENARIOS_CLEAR] = "DELETE FROM scenarios",
    [ST_SCENARIO_DELETE] = "DELETE FROM scenarios WHERE name = ?1",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_PUT] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    /* The state module's records, written behind when --db is a file. */
    [ST_STATE_PUT] = "INSERT OR REPLACE INTO state(kind, key, ns, json) VALUES(?1, ?2, ?3, ?4)",
    [ST_STATE_DELETE] = "DELETE FROM state WHERE kind = ?1 AND key = ?2",
    [ST_STATE_CLEAR] = "DELETE FROM state",
    [ST_STATE_CLEAR_NS] = "DELETE FROM state WHERE ns = ?1",
    [ST_STATE_LOAD] = "SELECT kind, key, json FROM state",
    [ST_SCENARIOS_BY_ORIGIN] = "SELECT name, json FROM scenarios WHERE origin = ?1",
};

/* A file database has one owner: "<db>.lock" is held with flock() for the
 * server's lifetime and names its pid, so a second server on the same file
 * refuses to start (two writers would silently lose each other's state). */
static int take_ownership(struct store *s, const char *path, char *err, size_t errlen)
{
    char lock[4096];
    if ((size_t)snprintf(lock, sizeof lock, "%s.lock", path) >= sizeof lock) {
        snprintf(err, errlen, "--db %s: the path is too long", path);
        return -1;
    }
    s->owner_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->owner_fd < 0) {
        snprintf(err, errlen, "--db %s: cannot open %s: %s", path, lock, strerror(errno));
        return -1;
    }
    if (flock(s->owner_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(s->owner_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen,
                 "--db %s: already in use by another authmock (pid %s); stop it or pass "
                 "another --db file",
                 path, pid[0] ? pid : "unknown");
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->owner_fd, 0) != 0 || pwrite(s->owner_fd, pid, (size_t)n, 0) != n)
        log_error("--db %s: cannot write the owner's pid into %s", path, lock);
    return 0;
}

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->owner_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    int is_memory = store_path_in_memory(path);
    if (!is_memory && take_ownership(s, path, err, errlen))
        goto fail;
    /* One connection serialised by our own mutex: SQLite's own locking is not needed. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "--db %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 2000);
    char *msg = NULL;
    const char *pragmas = is_memory ? "PRAGMA synchronous=OFF;"
                                    : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "--db %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        goto fail;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "--db %s: preparing statement %d: %s", path, i,
                     sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    store_close(s);
    return -1;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    if (s->db)
        sqlite3_close(s->db);
    if (s->owner_fd >= 0)
        close(s->owner_fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void store_lock(struct store *s)
{
    pthread_mutex_lock(&s->lock);
}

void store_unlock(struct store *s)
{
    pthread_mutex_unlock(&s->lock);
}

sqlite3_stmt *store_stmt(struct store *s, enum store_stmt_id id)
{
    sqlite3_stmt *st = s->stmts[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

int store_exec(struct store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_error("sqlite: %s (in: %s)", sqlite3_errmsg(s->db), sqlite3_sql(st));
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

void store_bind_text(sqlite3_stmt *st, int idx, const char *text)
{
    if (text)
        sqlite3_bind_text(st, idx, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

const char *store_errmsg(struct store *s)
{
    return sqlite3_errmsg(s->db);
}

int store_path_in_memory(const char *path)
{
    return strcmp(path, ":memory:") == 0 || path[0] == '\0';
}

int store_is_file(const struct store *s)
{
    return s->owner_fd >= 0;
}

char *store_meta_get(struct store *s, const char *key)
{
    store_lock(s);
    sqlite3_stmt *q = store_stmt(s, ST_META_GET);
    store_bind_text(q, 1, key);
    char *v = NULL;
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
        v = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_reset(q);
    store_unlock(s);
    return v;
}

int store_meta_put(struct store *s, const char *key, const char *value)
{
    store_lock(s);
    sqlite3_stmt *q = store_stmt(s, ST_META_PUT);
    store_bind_text(q, 1, key);
    store_bind_text(q, 2, value);
    int err = store_exec(s, q);
    store_unlock(s);
    return err;
}

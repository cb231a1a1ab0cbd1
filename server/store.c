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
    "CREATE TABLE IF NOT EXISTS sessions(ns TEXT NOT NULL, api TEXT NOT NULL, identity TEXT NOT "
    "NULL, scenario TEXT NOT NULL, state TEXT NOT NULL, entered_at REAL NOT NULL, blocked_until "
    "REAL NOT NULL, block_limit INTEGER NOT NULL, vars TEXT, updated_at REAL NOT NULL, "
    "PRIMARY KEY(ns, api, identity)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS counter_events(ns TEXT NOT NULL, api TEXT NOT NULL, identity TEXT "
    "NOT NULL, counter TEXT NOT NULL, at REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS counter_events_key ON counter_events(ns, api, identity, counter, "
    "at);"
    "CREATE TABLE IF NOT EXISTS mesh_tokens(access_token TEXT PRIMARY KEY, refresh_token TEXT NOT "
    "NULL UNIQUE, ns TEXT NOT NULL, user_id TEXT NOT NULL, broker_type TEXT NOT NULL, "
    "account_id TEXT NOT NULL, account_json TEXT NOT NULL, issued_at REAL NOT NULL, expires_at "
    "REAL NOT NULL, refresh_expires_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS mesh_tokens_conn ON mesh_tokens(ns, user_id, broker_type, "
    "account_id);"
    "CREATE TABLE IF NOT EXISTS oo_tokens(token TEXT PRIMARY KEY, ns TEXT NOT NULL, user_id TEXT "
    "NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL, session INTEGER NOT NULL, "
    "revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS oo_tokens_user ON oo_tokens(ns, user_id);"
    "CREATE TABLE IF NOT EXISTS oo_users(ns TEXT NOT NULL, user_id TEXT NOT NULL, app_connected "
    "INTEGER NOT NULL, phone TEXT, phone_activated INTEGER NOT NULL, used_codes TEXT NOT NULL, "
    "PRIMARY KEY(ns, user_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS oo_sms(ns TEXT NOT NULL, phone TEXT NOT NULL, code TEXT NOT NULL, "
    "sent_at REAL NOT NULL, expires_at REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS oo_sms_phone ON oo_sms(ns, phone);"
    "CREATE TABLE IF NOT EXISTS journal(id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
    "ns TEXT NOT NULL, api TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, query TEXT "
    "NOT NULL, status INTEGER NOT NULL, latency_ms REAL NOT NULL, scenario TEXT, state_from TEXT, "
    "state_to TEXT, user TEXT, body TEXT);"
    "CREATE INDEX IF NOT EXISTS journal_ns ON journal(ns, id);"
    "CREATE TABLE IF NOT EXISTS oo_confirm(key TEXT PRIMARY KEY, ns TEXT NOT NULL, user_id TEXT "
    "NOT NULL, type TEXT NOT NULL, expires_at REAL NOT NULL);"
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
    [ST_SESSION_GET] = "SELECT scenario, state, entered_at, blocked_until, block_limit, vars FROM "
                       "sessions WHERE ns = ?1 AND api = ?2 AND identity = ?3",
    [ST_SESSION_PUT] = "INSERT OR REPLACE INTO sessions(ns, api, identity, scenario, state, "
                       "entered_at, blocked_until, block_limit, vars, updated_at) VALUES(?1, ?2, "
                       "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_EVENT_ADD] = "INSERT INTO counter_events(ns, api, identity, counter, at) VALUES(?1, ?2, "
                     "?3, ?4, ?5)",
    [ST_EVENT_COUNT] = "SELECT count(*) FROM counter_events WHERE ns = ?1 AND api = ?2 AND "
                       "identity = ?3 AND counter = ?4 AND at > ?5",
    [ST_EVENT_OLDEST] = "SELECT min(at) FROM counter_events WHERE ns = ?1 AND api = ?2 AND "
                        "identity = ?3 AND counter = ?4 AND at > ?5",
    [ST_EVENT_PRUNE] = "DELETE FROM counter_events WHERE ns = ?1 AND api = ?2 AND identity = ?3 "
                       "AND counter = ?4 AND at <= ?5",
    [ST_EVENTS_CLEAR_COUNTER] = "DELETE FROM counter_events WHERE ns = ?1 AND api = ?2 AND "
                                "identity = ?3 AND counter = ?4",
    [ST_EVENTS_CLEAR_ALL] = "DELETE FROM counter_events WHERE ns = ?1 AND api = ?2 AND identity = "
                            "?3",
    [ST_MESH_TOKEN_ADD] = "INSERT INTO mesh_tokens(access_token, refresh_token, ns, user_id, "
                          "broker_type, account_id, account_json, issued_at, expires_at, "
                          "refresh_expires_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_MESH_TOKEN_SEEN] = "SELECT 1 FROM mesh_tokens WHERE ns = ?1 AND user_id = ?2 AND "
                           "broker_type = ?3 AND account_id = ?4 LIMIT 1",
    /* Keeps the newest 8 token pairs of a connection, so repeated logins of one
     * user cannot grow the database without bound. */
    [ST_MESH_TOKEN_PRUNE] = "DELETE FROM mesh_tokens WHERE ns = ?1 AND user_id = ?2 AND "
                            "broker_type = ?3 AND account_id = ?4 AND rowid <= (SELECT rowid FROM "
                            "mesh_tokens WHERE ns = ?1 AND user_id = ?2 AND broker_type = ?3 AND "
                            "account_id = ?4 ORDER BY rowid DESC LIMIT 1 OFFSET 8)",
    [ST_MESH_TOKEN_BY_REFRESH] = "SELECT access_token, user_id, account_id, account_json, "
                                 "refresh_expires_at, revoked FROM mesh_tokens WHERE "
                                 "refresh_token = ?1 AND ns = ?2 AND broker_type = ?3",
    [ST_MESH_TOKEN_BY_ACCESS] = "SELECT user_id, account_id, revoked FROM mesh_tokens WHERE "
                                "access_token = ?1 AND ns = ?2 AND broker_type = ?3",
    [ST_MESH_TOKEN_REVOKE_CONN] = "UPDATE mesh_tokens SET revoked = 1 WHERE ns = ?1 AND user_id "
                                  "= ?2 AND broker_type = ?3 AND account_id = ?4",
    [ST_MESH_TOKEN_REVOKE] = "UPDATE mesh_tokens SET revoked = 1 WHERE access_token = ?1",
    [ST_OO_TOKEN_ADD] = "INSERT INTO oo_tokens(token, ns, user_id, issued_at, expires_at, session) "
                        "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    /* Keeps the newest 64 tokens of a user, so repeated logins cannot grow the database. */
    [ST_OO_TOKEN_PRUNE] = "DELETE FROM oo_tokens WHERE ns = ?1 AND user_id = ?2 AND rowid <= "
                          "(SELECT rowid FROM oo_tokens WHERE ns = ?1 AND user_id = ?2 ORDER BY "
                          "rowid DESC LIMIT 1 OFFSET 64)",
    [ST_OO_TOKEN_GET] = "SELECT user_id, expires_at, revoked FROM oo_tokens WHERE token = ?1 AND "
                        "ns = ?2",
    [ST_OO_TOKEN_REVOKE] = "UPDATE oo_tokens SET revoked = 1 WHERE token = ?1 AND ns = ?2",
    [ST_OO_USER_GET] = "SELECT app_connected, phone, phone_activated, used_codes FROM oo_users "
                       "WHERE ns = ?1 AND user_id = ?2",
    [ST_OO_USER_PUT] = "INSERT OR REPLACE INTO oo_users(ns, user_id, app_connected, phone, "
                       "phone_activated, used_codes) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_OO_SMS_ADD] = "INSERT INTO oo_sms(ns, phone, code, sent_at, expires_at) VALUES(?1, ?2, "
                      "?3, ?4, ?5)",
    /* The outbox keeps the newest 50 messages of a phone. */
    [ST_OO_SMS_PRUNE] = "DELETE FROM oo_sms WHERE ns = ?1 AND phone = ?2 AND rowid <= (SELECT "
                        "rowid FROM oo_sms WHERE ns = ?1 AND phone = ?2 ORDER BY rowid DESC LIMIT "
                        "1 OFFSET 50)",
    [ST_OO_SMS_LIVE] = "SELECT count(*), max(expires_at) FROM oo_sms WHERE ns = ?1 AND phone = ?2 "
                       "AND used = 0 AND expires_at > ?3",
    [ST_OO_SMS_FIND] = "SELECT max(expires_at) FROM oo_sms WHERE ns = ?1 AND phone = ?2 AND used = "
                       "0 AND code = ?3",
    [ST_OO_SMS_CONSUME] = "UPDATE oo_sms SET used = 1 WHERE ns = ?1 AND phone = ?2",
    [ST_OO_SMS_LIST] = "SELECT ns, phone, code, sent_at, expires_at FROM oo_sms WHERE ?1 IS NULL "
                       "OR ns = ?1 ORDER BY rowid DESC LIMIT 500",
    [ST_OO_CONFIRM_ADD] = "INSERT OR REPLACE INTO oo_confirm(key, ns, user_id, type, expires_at) "
                          "VALUES(?1, ?2, ?3, ?4, ?5)",
    [ST_OO_CONFIRM_GET] = "SELECT user_id, type, expires_at FROM oo_confirm WHERE key = ?1 AND "
                          "ns = ?2",
    [ST_RESET_SESSIONS] = "DELETE FROM sessions",
    [ST_RESET_EVENTS] = "DELETE FROM counter_events",
    [ST_RESET_MESH_TOKENS] = "DELETE FROM mesh_tokens",
    [ST_RESET_SESSIONS_NS] = "DELETE FROM sessions WHERE ns = ?1",
    [ST_RESET_EVENTS_NS] = "DELETE FROM counter_events WHERE ns = ?1",
    [ST_RESET_MESH_TOKENS_NS] = "DELETE FROM mesh_tokens WHERE ns = ?1",
    [ST_RESET_OO_TOKENS] = "DELETE FROM oo_tokens",
    [ST_RESET_OO_USERS] = "DELETE FROM oo_users",
    [ST_RESET_OO_SMS] = "DELETE FROM oo_sms",
    [ST_RESET_OO_CONFIRM] = "DELETE FROM oo_confirm",
    [ST_RESET_OO_TOKENS_NS] = "DELETE FROM oo_tokens WHERE ns = ?1",
    [ST_RESET_OO_USERS_NS] = "DELETE FROM oo_users WHERE ns = ?1",
    [ST_RESET_OO_SMS_NS] = "DELETE FROM oo_sms WHERE ns = ?1",
    [ST_RESET_OO_CONFIRM_NS] = "DELETE FROM oo_confirm WHERE ns = ?1",
    [ST_JOURNAL_ADD] = "INSERT INTO journal(at, ns, api, method, path, query, status, latency_ms, "
                       "scenario, state_from, state_to, user, body) VALUES(?1, ?2, ?3, ?4, ?5, "
                       "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    /* The journal is a ring: entries older than the newest --journal-max go. */
    [ST_JOURNAL_TRIM] = "DELETE FROM journal WHERE id <= ?1",
    [ST_JOURNAL_LIST] =
        "SELECT id, at, ns, api, method, path, query, status, latency_ms, "
        "scenario, state_from, state_to, user, body FROM journal WHERE (?1 IS NULL OR ns = ?1) AND "
        "(?2 IS NULL OR api = ?2) AND (?3 IS NULL OR path = ?3 OR "
        "(substr(?3, -1) = '*' AND substr(path, 1, length(?3) - 1) = substr(?3, 1, length(?3) - "
        "1))) "
        "AND (?4 IS NULL OR user = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR id < ?6) "
        "AND "
        "(?7 IS NULL OR method = ?7) AND (?8 IS NULL OR status = ?8) ORDER BY id DESC LIMIT ?9",
    [ST_JOURNAL_COUNT] = "SELECT count(*) FROM journal WHERE (?1 IS NULL OR ns = ?1) AND (?2 IS "
                         "NULL OR api = ?2) AND (?3 IS NULL OR path = ?3 OR "
                         "(substr(?3, -1) = '*' AND substr(path, 1, length(?3) - 1) = substr(?3, "
                         "1, length(?3) - 1))) "
                         "AND (?4 IS NULL OR user = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS "
                         "NULL OR id < ?6) AND "
                         "(?7 IS NULL OR method = ?7) AND (?8 IS NULL OR status = ?8)",
    [ST_JOURNAL_CLEAR] = "DELETE FROM journal WHERE ?1 IS NULL OR ns = ?1",
    [ST_RESET_JOURNAL] = "DELETE FROM journal",
    [ST_RESET_JOURNAL_NS] = "DELETE FROM journal WHERE ns = ?1",
    [ST_SESSIONS_LIST] = "SELECT ns, api, identity, scenario, state, entered_at, blocked_until, "
                         "vars, updated_at FROM sessions WHERE (?1 IS NULL OR ns = ?1) AND (?2 "
                         "IS NULL OR api = ?2) ORDER BY updated_at DESC LIMIT 1000",
    [ST_SESSION_DELETE] = "DELETE FROM sessions WHERE ns = ?1 AND api = ?2 AND identity = ?3",
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
    int is_file = strcmp(path, ":memory:") != 0 && path[0] != '\0';
    if (is_file && take_ownership(s, path, err, errlen))
        goto fail;
    /* One connection serialised by our own mutex: SQLite's own locking is not needed. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "--db %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 2000);
    char *msg = NULL;
    int is_memory = strcmp(path, ":memory:") == 0 || path[0] == '\0';
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

int store_reset(struct store *s, const char *ns)
{
    static const enum store_stmt_id all[] = {
        ST_RESET_SESSIONS, ST_RESET_EVENTS, ST_RESET_MESH_TOKENS, ST_RESET_OO_TOKENS,
        ST_RESET_OO_USERS, ST_RESET_OO_SMS, ST_RESET_OO_CONFIRM,  ST_RESET_JOURNAL};
    static const enum store_stmt_id one[] = {
        ST_RESET_SESSIONS_NS, ST_RESET_EVENTS_NS, ST_RESET_MESH_TOKENS_NS, ST_RESET_OO_TOKENS_NS,
        ST_RESET_OO_USERS_NS, ST_RESET_OO_SMS_NS, ST_RESET_OO_CONFIRM_NS,  ST_RESET_JOURNAL_NS};
    _Static_assert(sizeof all == sizeof one, "every reset has a per-namespace twin");
    int err = 0;
    store_lock(s);
    store_exec(s, store_stmt(s, ST_BEGIN));
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        sqlite3_stmt *st = store_stmt(s, ns ? one[i] : all[i]);
        if (ns)
            store_bind_text(st, 1, ns);
        err |= store_exec(s, st);
    }
    store_exec(s, store_stmt(s, err ? ST_ROLLBACK : ST_COMMIT));
    store_unlock(s);
    return err ? -1 : 0;
}

const char *store_errmsg(struct store *s)
{
    return sqlite3_errmsg(s->db);
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

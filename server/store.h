/*
 * store: the SQLite database that holds everything authmock knows: fixtures,
 * scenarios, per-identity scenario state, counter events, issued tokens and
 * the journal. All SQL lives in this module as prepared statements; other
 * modules name a statement and bind its parameters. One connection is shared
 * by all threads behind store_lock(), which also makes every scenario
 * transition atomic.
 */
#ifndef AUTHMOCK_STORE_H
#define AUTHMOCK_STORE_H

#include <sqlite3.h>
#include <stddef.h>

enum store_stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_FIXTURE_PUT,
    ST_FIXTURES_CLEAR,
    ST_SCENARIO_PUT,
    ST_SCENARIOS_CLEAR,
    ST_SESSION_GET,
    ST_SESSION_PUT,
    ST_EVENT_ADD,
    ST_EVENT_COUNT,
    ST_EVENT_OLDEST,
    ST_EVENT_PRUNE,
    ST_EVENTS_CLEAR_COUNTER,
    ST_EVENTS_CLEAR_ALL,
    ST_MESH_TOKEN_ADD,
    ST_MESH_TOKEN_SEEN,
    ST_MESH_TOKEN_PRUNE,
    ST_MESH_TOKEN_BY_REFRESH,
    ST_MESH_TOKEN_BY_ACCESS,
    ST_MESH_TOKEN_REVOKE_CONN,
    ST_MESH_TOKEN_REVOKE,
    ST_OO_TOKEN_ADD,
    ST_OO_TOKEN_PRUNE,
    ST_OO_TOKEN_GET,
    ST_OO_TOKEN_REVOKE,
    ST_OO_USER_GET,
    ST_OO_USER_PUT,
    ST_OO_SMS_ADD,
    ST_OO_SMS_PRUNE,
    ST_OO_SMS_LIVE,
    ST_OO_SMS_FIND,
    ST_OO_SMS_CONSUME,
    ST_OO_SMS_LIST,
    ST_OO_CONFIRM_ADD,
    ST_OO_CONFIRM_GET,
    ST_RESET_SESSIONS,
    ST_RESET_EVENTS,
    ST_RESET_MESH_TOKENS,
    ST_RESET_SESSIONS_NS,
    ST_RESET_EVENTS_NS,
    ST_RESET_MESH_TOKENS_NS,
    ST_RESET_OO_TOKENS,
    ST_RESET_OO_USERS,
    ST_RESET_OO_SMS,
    ST_RESET_OO_CONFIRM,
    ST_RESET_OO_TOKENS_NS,
    ST_RESET_OO_USERS_NS,
    ST_RESET_OO_SMS_NS,
    ST_RESET_OO_CONFIRM_NS,
    ST_JOURNAL_ADD,
    ST_JOURNAL_TRIM,
    ST_JOURNAL_LIST,
    ST_JOURNAL_COUNT,
    ST_JOURNAL_CLEAR,
    ST_RESET_JOURNAL,
    ST_RESET_JOURNAL_NS,
    ST_SESSIONS_LIST,
    ST_SESSION_DELETE,
    ST_SCENARIO_DELETE,
    ST_META_GET,
    ST_META_PUT,
    ST_STATE_PUT,
    ST_STATE_DELETE,
    ST_STATE_CLEAR,
    ST_STATE_CLEAR_NS,
    ST_STATE_LOAD,
    ST_SCENARIOS_BY_ORIGIN,
    ST_COUNT
};

struct store;

int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
void store_lock(struct store *s);
void store_unlock(struct store *s);
/* The prepared statement `id`, reset and with its bindings cleared. Call with the lock held. */
sqlite3_stmt *store_stmt(struct store *s, enum store_stmt_id id);
/* Runs a statement that returns no rows. Returns 0 or -1 (logged). */
int store_exec(struct store *s, sqlite3_stmt *st);
/* Binds text, or NULL when `text` is NULL. */
void store_bind_text(sqlite3_stmt *st, int idx, const char *text);
/* Forgets state, tokens, counters and journal: everything, or one namespace. */
int store_reset(struct store *s, const char *ns);
const char *store_errmsg(struct store *s);
/* Whether the database is a file (state then survives a restart). */
int store_is_file(const struct store *s);
/* A value of the meta table (malloc'd, NULL when absent), and setting one. */
char *store_meta_get(struct store *s, const char *key);
int store_meta_put(struct store *s, const char *key, const char *value);

#endif

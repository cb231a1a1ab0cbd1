/*
 * store: the SQLite database, authmock's store of record: fixtures,
 * scenarios, the mock clock and (written behind by the state module) what
 * traffic taught the server. All SQL lives in this module as prepared
 * statements; other modules name a statement and bind its parameters. One
 * connection behind store_lock(), off the request path.
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
const char *store_errmsg(struct store *s);
/* Whether the database is a file (state then survives a restart). */
int store_is_file(const struct store *s);
/* Whether store_open(path) opens a database in memory (":memory:" or ""). */
int store_path_in_memory(const char *path);
/* A value of the meta table (malloc'd, NULL when absent), and setting one. */
char *store_meta_get(struct store *s, const char *key);
int store_meta_put(struct store *s, const char *key, const char *value);

#endif

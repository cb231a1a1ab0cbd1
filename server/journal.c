/*
 * journal: one INSERT per request plus a trim that keeps the newest
 * --journal-max entries (by id, so the ring needs no counter of its own).
 */
#include "journal.h"
#include "app.h"
#include "clock.h"
#include "jsonutil.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void journal_redact(cJSON *doc)
{
    /* The next pointer is taken first: replacing an item frees it. */
    for (cJSON *item = doc ? doc->child : NULL, *next; item; item = next) {
        next = item->next;
        if (item->string && log_is_secret_name(item->string, strlen(item->string)) &&
            !cJSON_IsNull(item))
            cJSON_ReplaceItemInObjectCaseSensitive(doc, item->string, cJSON_CreateString("***"));
        else if (cJSON_IsObject(item) || cJSON_IsArray(item))
            journal_redact(item);
    }
}

/* The stored form of a body: redacted JSON, or a note of its size. */
static char *stored_body(const char *body, size_t len)
{
    if (len == 0)
        return NULL;
    size_t off;
    cJSON *doc = json_parse(body, len, &off);
    char *out;
    if (doc) {
        journal_redact(doc);
        out = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
    } else {
        out = malloc(64);
        if (out)
            snprintf(out, 64, "(%zu bytes that are not JSON)", len);
    }
    return out;
}

void journal_record(struct app *app, const struct journal_entry *e)
{
    if (app->cfg.journal_max <= 0)
        return;
    char *body = stored_body(e->body, e->body_len);
    store_lock(app->store);
    sqlite3_stmt *q = store_stmt(app->store, ST_JOURNAL_ADD);
    sqlite3_bind_double(q, 1, e->at);
    store_bind_text(q, 2, e->ns ? e->ns : "");
    store_bind_text(q, 3, e->api ? e->api : "");
    store_bind_text(q, 4, e->method);
    store_bind_text(q, 5, e->path);
    store_bind_text(q, 6, e->query ? e->query : "");
    sqlite3_bind_int(q, 7, e->status);
    sqlite3_bind_double(q, 8, e->latency_ms);
    store_bind_text(q, 9, e->scenario);
    store_bind_text(q, 10, e->state_from);
    store_bind_text(q, 11, e->state_to);
    store_bind_text(q, 12, e->user);
    store_bind_text(q, 13, body);
    if (store_exec(app->store, q) == 0) {
        sqlite3_int64 id = sqlite3_last_insert_rowid(sqlite3_db_handle(q));
        if (id > app->cfg.journal_max) {
            q = store_stmt(app->store, ST_JOURNAL_TRIM);
            sqlite3_bind_int64(q, 1, id - app->cfg.journal_max);
            store_exec(app->store, q);
        }
    }
    store_unlock(app->store);
    free(body);
}

static void bind_filter(sqlite3_stmt *q, const struct journal_filter *f)
{
    store_bind_text(q, 1, f->ns);
    store_bind_text(q, 2, f->api);
    store_bind_text(q, 3, f->path);
    store_bind_text(q, 4, f->user);
    if (f->since >= 0)
        sqlite3_bind_double(q, 5, f->since);
    if (f->before > 0)
        sqlite3_bind_int64(q, 6, f->before);
    store_bind_text(q, 7, f->method);
    if (f->status > 0)
        sqlite3_bind_int(q, 8, f->status);
}

static void add_text(cJSON *o, const char *key, sqlite3_stmt *q, int col)
{
    const char *v = (const char *)sqlite3_column_text(q, col);
    json_add_str_or_null(o, key, v);
}

cJSON *journal_list(struct app *app, const struct journal_filter *f, long *next_before)
{
    cJSON *list = cJSON_CreateArray();
    long last = 0;
    int n = 0;
    store_lock(app->store);
    sqlite3_stmt *q = store_stmt(app->store, ST_JOURNAL_LIST);
    bind_filter(q, f);
    sqlite3_bind_int64(q, 9, f->limit);
    while (sqlite3_step(q) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();
        char when[32];
        last = (long)sqlite3_column_int64(q, 0);
        n++;
        cJSON_AddNumberToObject(e, "id", (double)last);
        clock_format(sqlite3_column_double(q, 1), when);
        cJSON_AddStringToObject(e, "time", when);
        add_text(e, "namespace", q, 2);
        add_text(e, "api", q, 3);
        add_text(e, "method", q, 4);
        add_text(e, "path", q, 5);
        add_text(e, "query", q, 6);
        cJSON_AddNumberToObject(e, "status", sqlite3_column_int(q, 7));
        cJSON_AddNumberToObject(e, "latencyMs", sqlite3_column_double(q, 8));
        add_text(e, "scenario", q, 9);
        add_text(e, "stateFrom", q, 10);
        add_text(e, "stateTo", q, 11);
        add_text(e, "user", q, 12);
        const char *body = (const char *)sqlite3_column_text(q, 13);
        cJSON *parsed = body ? cJSON_Parse(body) : NULL;
        if (parsed)
            cJSON_AddItemToObject(e, "body", parsed);
        else
            json_add_str_or_null(e, "body", body);
        cJSON_AddItemToArray(list, e);
    }
    sqlite3_reset(q);
    store_unlock(app->store);
    *next_before = n == f->limit ? last : 0;
    return list;
}

long journal_count(struct app *app, const struct journal_filter *f)
{
    store_lock(app->store);
    sqlite3_stmt *q = store_stmt(app->store, ST_JOURNAL_COUNT);
    bind_filter(q, f);
    long n = sqlite3_step(q) == SQLITE_ROW ? (long)sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    store_unlock(app->store);
    return n;
}

int journal_clear(struct app *app, const char *ns)
{
    store_lock(app->store);
    sqlite3_stmt *q = store_stmt(app->store, ST_JOURNAL_CLEAR);
    store_bind_text(q, 1, ns);
    int err = store_exec(app->store, q);
    store_unlock(app->store);
    return err;
}

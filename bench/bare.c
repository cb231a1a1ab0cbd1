/*
 * bare: the baseline server of scripts/bench.
 *
 * The least work a JSON-over-HTTP login endpoint can do, with the same
 * libmicrohttpd daemon as authmock (epoll thread pool of one thread per CPU,
 * suspend/resume allowed, turbo, the same connection timeout and limit). For
 * every request it accumulates the body, parses it with cJSON, runs one
 * prepared SELECT on a SQLite connection owned by the worker thread, builds a
 * small reply with cJSON and prints it. authmock's throughput is reported as
 * a ratio against this server's, measured in the same run on the same
 * machine, because absolute figures drift from one machine and one moment to
 * the next while the ratio stays comparable.
 *
 * Each MHD worker thread opens its own in-memory database on its first
 * request (a users table of 20 rows), so the SELECT takes no lock shared
 * with other threads. The lookup key is the body's "username" (or
 * "userName"), else the query's "username" or "userId"; a request without any
 * still runs the SELECT, which then finds no row.
 *
 * It prints "bare handler listening on http://127.0.0.1:PORT" once ready, and
 * stops on SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BARE_MAX_BODY (64 * 1024)
#define BARE_USERS    20

struct bare_request {
    char *body;
    size_t len, cap;
    int too_large;
};

/* One connection and one prepared statement per MHD worker thread. */
struct bare_db {
    sqlite3 *db;
    sqlite3_stmt *select;
};

static pthread_key_t db_key;

static void db_close(void *p)
{
    struct bare_db *t = p;
    sqlite3_finalize(t->select);
    sqlite3_close(t->db);
    free(t);
}

static int db_fill(sqlite3 *db)
{
    static const char *const brokers[] = {"robinhood", "coinbase", "binance", "kraken"};
    sqlite3_stmt *ins = NULL;
    if (sqlite3_exec(db,
                     "CREATE TABLE users (username TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
                     "account_name TEXT NOT NULL, broker TEXT NOT NULL, cash REAL NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, "INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5)", -1, &ins, NULL) !=
        SQLITE_OK)
        return -1;
    for (int i = 0; i < BARE_USERS; i++) {
        char name[64], id[32];
        /* The first three are the accounts the benchmark logs in with. */
        if (i == 0)
            snprintf(name, sizeof name, "ok@example.com");
        else if (i == 1)
            snprintf(name, sizeof name, "mfa.totp@example.com");
        else if (i == 2)
            snprintf(name, sizeof name, "jane@example.com");
        else
            snprintf(name, sizeof name, "user%02d@example.com", i);
        snprintf(id, sizeof id, "RH-%06d", 100001 + i);
        sqlite3_bind_text(ins, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 3, "Individual", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, brokers[i % 4], -1, SQLITE_STATIC);
        sqlite3_bind_double(ins, 5, 1000.0 + 100.0 * i);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            sqlite3_finalize(ins);
            return -1;
        }
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    return 0;
}

/* The calling thread's connection, opened on its first request. */
static struct bare_db *db_for_thread(void)
{
    struct bare_db *t = pthread_getspecific(db_key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    /* No mutex: the connection never leaves its thread. */
    if (sqlite3_open_v2(":memory:", &t->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        goto fail;
    if (db_fill(t->db) < 0)
        goto fail;
    if (sqlite3_prepare_v3(t->db,
                           "SELECT user_id, account_name, broker, cash FROM users "
                           "WHERE username = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &t->select, NULL) != SQLITE_OK)
        goto fail;
    if (pthread_setspecific(db_key, t) != 0)
        goto fail;
    return t;
fail:
    fprintf(stderr, "bare: cannot open the thread's database: %s\n",
            t->db ? sqlite3_errmsg(t->db) : "out of memory");
    db_close(t);
    return NULL;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, char *json)
{
    struct MHD_Response *r;
    if (json)
        r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    else
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Parse, look up, answer: the work every request gets. */
static enum MHD_Result answer(struct MHD_Connection *c, const struct bare_request *req)
{
    cJSON *in = NULL;
    if (req->len) {
        in = cJSON_ParseWithLength(req->body, req->len);
        if (!in)
            return reply(c, 400, strdup("{\"error\":\"request body is not JSON\"}"));
    }
    const char *key = NULL;
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(in, "username");
    if (!cJSON_IsString(field))
        field = cJSON_GetObjectItemCaseSensitive(in, "userName");
    if (cJSON_IsString(field))
        key = field->valuestring;
    if (!key)
        key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "username");
    if (!key)
        key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "userId");

    struct bare_db *t = db_for_thread();
    if (!t) {
        cJSON_Delete(in);
        return reply(c, 500, strdup("{\"error\":\"database unavailable\"}"));
    }
    sqlite3_bind_text(t->select, 1, key ? key : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(t->select);

    cJSON *out = cJSON_CreateObject();
    cJSON *content = cJSON_AddObjectToObject(out, "content");
    if (rc == SQLITE_ROW) {
        cJSON_AddStringToObject(content, "status", "succeeded");
        cJSON_AddStringToObject(content, "accountId",
                                (const char *)sqlite3_column_text(t->select, 0));
        cJSON_AddStringToObject(content, "accountName",
                                (const char *)sqlite3_column_text(t->select, 1));
        cJSON_AddStringToObject(content, "brokerType",
                                (const char *)sqlite3_column_text(t->select, 2));
        cJSON_AddNumberToObject(content, "cash", sqlite3_column_double(t->select, 3));
    } else {
        cJSON_AddStringToObject(content, "status", "failed");
        cJSON_AddStringToObject(content, "errorMessage", "Invalid username or password");
    }
    cJSON_AddStringToObject(out, "status", "ok");
    cJSON_AddStringToObject(out, "message", "");
    /* ?replyBytes=N pads the reply to about N bytes: a floor for endpoints
     * whose answers are large (authenticationSchemes), where the bytes on the
     * wire, not the work, set the pace. */
    const char *rb = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "replyBytes");
    char *end = NULL;
    unsigned long pad = rb ? strtoul(rb, &end, 10) : 0;
    if (pad > 0 && pad <= 1024 * 1024 && end && !*end) {
        char *fill = malloc(pad + 1);
        if (fill) {
            memset(fill, 'x', pad);
            fill[pad] = '\0';
            cJSON_AddStringToObject(out, "pad", fill);
            free(fill);
        }
    }
    sqlite3_reset(t->select);
    sqlite3_clear_bindings(t->select);
    cJSON_Delete(in);

    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (!text)
        return MHD_NO;
    return reply(c, 200, text);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    struct bare_request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*size) {
        if (req->len + *size > BARE_MAX_BODY) {
            req->too_large = 1;
        } else if (!req->too_large) {
            if (req->len + *size > req->cap) {
                size_t cap = req->cap ? req->cap : 256;
                while (cap < req->len + *size)
                    cap *= 2;
                char *body = realloc(req->body, cap);
                if (!body)
                    return MHD_NO;
                req->body = body;
                req->cap = cap;
            }
            memcpy(req->body + req->len, data, *size);
            req->len += *size;
        }
        *size = 0;
        return MHD_YES;
    }
    if (req->too_large)
        return reply(c, 413, strdup("{\"error\":\"request body too large\"}"));
    return answer(c, req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct bare_request *req = *con_cls;
    if (req) {
        free(req->body);
        free(req);
        *con_cls = NULL;
    }
}

int main(void)
{
    if (pthread_key_create(&db_key, db_close) != 0)
        return 1;
    /* Signals are taken by sigwait below: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = 0;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned int threads = (unsigned int)(ncpu > 0 ? ncpu : 2);
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, 0, NULL, NULL, on_access, NULL, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sin, MHD_OPTION_THREAD_POOL_SIZE, threads,
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT, 1024u,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bare: cannot listen on 127.0.0.1\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("bare handler listening on http://127.0.0.1:%u\n", info ? (unsigned)info->port : 0u);
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    return 0;
}

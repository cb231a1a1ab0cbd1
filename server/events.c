/*
 * events: Server-Sent Events over libmicrohttpd's callback responses.
 *
 * A stream is a chunked response whose content reader (on a worker thread)
 * hands libmicrohttpd what the subscriber has rendered; when that is all
 * sent and nothing new is due, the reader suspends the connection and
 * returns 0, which libmicrohttpd 0.9.75 allows from a content reader. The
 * pacer thread wakes every EVENTS_TICK_MS while streams are open and resumes
 * each suspended one that has journal entries past its cursor or a heartbeat
 * due. A subscriber's lock orders the two: the reader suspends under it, and
 * the pacer resumes only a connection it saw suspended under it, so a resume
 * never precedes its suspend.
 *
 * A subscriber lives in the table from its request until libmicrohttpd
 * destroys the response (the connection closed or the stream ended), when
 * the free callback takes it out under the table's lock; the pacer touches
 * connections only under that lock. A suspended connection cannot close
 * (libmicrohttpd does not look at it), so the pacer never resumes a dead one.
 * A closed tab is found out within a tick by peeking at the socket of its
 * suspended stream; a vanished browser by the next heartbeat's failed write.
 */
#include "events.h"
#include "app.h"
#include "clock.h"
#include "http.h"
#include "journal.h"
#include "jsonutil.h"
#include "log.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define EVENTS_TICK_MS 100
/* A subscriber's rendered events are handed out before more are fetched;
 * past this many bytes a fetch stops early and the rest waits a tick. */
#define EVENTS_OUT_MAX (256 * 1024)

struct subscriber {
    pthread_mutex_t lock; /* everything below but conn and the filter */
    struct MHD_Connection *conn;
    struct app *app;
    struct journal_filter filter;
    char ns[64], api[32], user[128];
    long cursor;       /* the newest journal id considered */
    struct buf out;    /* rendered, not yet handed to libmicrohttpd */
    size_t sent;       /* bytes of out handed out */
    double next_beat;  /* monotonic: when a heartbeat is due */
    double last_fetch; /* monotonic: the last look into the journal */
    int suspended;     /* the reader suspended the connection */
    int gone;          /* the browser closed its end: the reader ends the stream */
    int fd;            /* the connection's socket, or -1 */
    int slot;          /* index in ev.subs */
};

static struct {
    pthread_mutex_t lock; /* the table and the pacer's start; taken before a subscriber's */
    pthread_cond_t cond;  /* a first subscriber, or stop */
    struct subscriber *subs[EVENTS_MAX_SUBSCRIBERS];
    int n;
    _Atomic int stop; /* read by readers under their own lock only */
    int running;
    pthread_t pacer;
    double beat;         /* seconds between heartbeats */
    _Atomic long latest; /* the newest journal id recorded */
} ev = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {NULL}, 0, 0, 0, 0, 15.0, 0};

/* The journal's listener: runs on every recording thread, so it only notes. */
static void on_record(void *cls, long id)
{
    (void)cls;
    atomic_store_explicit(&ev.latest, id, memory_order_release);
}

/* Whether the browser closed its end of a suspended stream's socket (a
 * closed tab): libmicrohttpd does not watch a suspended connection, and
 * waiting for the next heartbeat's write would keep its place for seconds.
 * Peeking reads nothing; the socket stays open while its connection is
 * suspended, since only libmicrohttpd closes it. */
static int peer_closed(int fd)
{
    char c;
    if (fd < 0)
        return 0;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void *pacer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ev.lock);
    for (;;) {
        if (ev.n == 0 && !atomic_load(&ev.stop)) {
            pthread_cond_wait(&ev.cond, &ev.lock);
            continue;
        }
        /* A pass that begins after stop was set resumes every stream: a
         * reader that saw no stop suspended under its lock, before this
         * pass takes it; one that saw it never suspends again. */
        int stop = atomic_load(&ev.stop);
        long latest = atomic_load_explicit(&ev.latest, memory_order_acquire);
        double now = clock_monotonic();
        for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
            struct subscriber *s = ev.subs[i];
            if (!s)
                continue;
            pthread_mutex_lock(&s->lock);
            if (s->suspended && !(stop || latest > s->cursor || now >= s->next_beat))
                s->gone = peer_closed(s->fd);
            if (s->suspended && (stop || s->gone || latest > s->cursor || now >= s->next_beat)) {
                s->suspended = 0;
                MHD_resume_connection(s->conn);
            }
            pthread_mutex_unlock(&s->lock);
        }
        if (stop)
            break;
        struct timespec ts;
        clock_deadline(&ts, EVENTS_TICK_MS / 1000.0);
        pthread_cond_timedwait(&ev.cond, &ev.lock, &ts);
    }
    pthread_mutex_unlock(&ev.lock);
    return NULL;
}

/* Appends the entries past the cursor, oldest first, one event each. Call
 * with the subscriber's lock. */
static void fetch(struct subscriber *s)
{
    long upto = atomic_load_explicit(&ev.latest, memory_order_acquire);
    s->last_fetch = clock_monotonic();
    if (upto <= s->cursor)
        return;
    struct journal_filter f = s->filter;
    f.after = s->cursor;
    f.limit = EVENTS_BATCH;
    long next = 0;
    cJSON *list = journal_list(s->app, &f, &next);
    int n = cJSON_GetArraySize(list);
    long cursor = upto;
    /* The list is newest first. A full batch may have left older entries
     * out: the page is told between which ids (some of those may not match
     * its filter), and can ask GET /__admin/requests for them. */
    if (n == EVENTS_BATCH) {
        const cJSON *oldest = cJSON_GetArrayItem(list, n - 1);
        long first = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(oldest, "id"));
        if (first > s->cursor + 1)
            buf_printf(&s->out, "event: gap\ndata: {\"after\":%ld,\"before\":%ld}\n\n", s->cursor,
                       first);
    }
    for (int i = n - 1; i >= 0; i--) {
        const cJSON *e = cJSON_GetArrayItem(list, i);
        long id = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "id"));
        if (s->out.len - s->sent > EVENTS_OUT_MAX) {
            cursor = id - 1; /* the rest on the next tick */
            break;
        }
        size_t len;
        char *text = json_render(e, &len);
        if (!text)
            continue;
        /* Unformatted JSON has no line breaks, so it is one data line. */
        buf_printf(&s->out, "id: %ld\nevent: request\ndata: ", id);
        buf_append(&s->out, text, len);
        buf_append(&s->out, "\n\n", 2);
        free(text);
        if (id > cursor)
            cursor = id;
    }
    cJSON_Delete(list);
    s->cursor = cursor;
}

/* libmicrohttpd's content reader: hands out what is rendered, renders what
 * is due, or suspends the connection until the pacer resumes it. */
static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct subscriber *s = cls;
    (void)pos;
    pthread_mutex_lock(&s->lock);
    double now = clock_monotonic();
    if (s->gone) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM; /* the last chunk fails: closed */
    }
    if (s->sent == s->out.len) {
        s->out.len = s->sent = 0;
        if (atomic_load(&ev.stop)) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* At most one look into the journal per tick, however fast the
         * browser reads: a busy server streams a bounded rate. */
        if (now - s->last_fetch >= EVENTS_TICK_MS / 1000.0)
            fetch(s);
        if (s->out.len == 0 && now >= s->next_beat)
            buf_printf(&s->out, ": keep-alive\n\n");
    }
    if (s->sent < s->out.len) {
        size_t n = s->out.len - s->sent;
        if (n > max)
            n = max;
        memcpy(buf, s->out.data + s->sent, n);
        s->sent += n;
        s->next_beat = now + ev.beat;
        pthread_mutex_unlock(&s->lock);
        return (ssize_t)n;
    }
    /* Nothing to send: give the worker thread back until the pacer calls. */
    s->suspended = 1;
    MHD_suspend_connection(s->conn);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void subscriber_free(void *cls)
{
    struct subscriber *s = cls;
    pthread_mutex_lock(&ev.lock);
    ev.subs[s->slot] = NULL;
    ev.n--;
    pthread_mutex_unlock(&ev.lock);
    buf_free(&s->out);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void events_start(struct app *app)
{
    /* A heartbeat well inside the idle timeout keeps the connection (and
     * proxies on the way) open. */
    double beat = app->cfg.connection_timeout > 0 ? app->cfg.connection_timeout / 3.0 : 15.0;
    ev.beat = beat < 1.0 ? 1.0 : beat > 15.0 ? 15.0 : beat;
    atomic_store(&ev.stop, 0);
    journal_listen(app, on_record, NULL);
}

/* Starts the pacer with the first subscriber. Call with the table's lock. */
static int pacer_start(void)
{
    if (ev.running)
        return 0;
    if (pthread_create(&ev.pacer, NULL, pacer_main, NULL) != 0)
        return -1;
    ev.running = 1;
    return 0;
}

static const char *arg(const struct http_request *req, const char *name, char *copy, size_t cap)
{
    const char *v = http_query_arg(req, name);
    if (!v)
        return NULL;
    snprintf(copy, cap, "%s", v);
    return copy;
}

void events_open(struct app *app, const struct http_request *req, struct http_response *resp)
{
    struct subscriber *s = calloc(1, sizeof *s);
    if (!s) {
        http_reply_error(resp, 500, "out of memory");
        return;
    }
    s->conn = req->conn;
    s->app = app;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->fd = ci ? ci->connect_fd : -1;
    s->filter.since = -1;
    char nsbuf[64];
    s->filter.ns = arg(req, "namespace", s->ns, sizeof s->ns);
    if (!s->filter.ns && http_namespace(req, nsbuf, sizeof nsbuf) == 0 && nsbuf[0]) {
        memcpy(s->ns, nsbuf, sizeof s->ns);
        s->filter.ns = s->ns;
    }
    s->filter.api = arg(req, "api", s->api, sizeof s->api);
    s->filter.user = arg(req, "user", s->user, sizeof s->user);
    const char *v = http_query_arg(req, "status");
    char *end;
    long status = v ? strtol(v, &end, 10) : 0;
    s->filter.status = v && !*end && status >= 100 && status <= 599 ? (int)status : 0;
    long latest = atomic_load_explicit(&ev.latest, memory_order_acquire);
    const char *from = http_query_arg(req, "after");
    if (!from)
        from = http_header(req, "Last-Event-ID");
    errno = 0;
    long after = from ? strtol(from, &end, 10) : -1;
    if (!from || errno || end == from || *end || after < 0 || after > latest)
        after = latest;
    s->cursor = after;
    pthread_mutex_init(&s->lock, NULL);
    /* The first bytes: the reconnection delay, and where the stream starts. */
    buf_printf(&s->out,
               "retry: 2000\n\nevent: hello\ndata: {\"latest\":%ld,\"after\":%ld,\"journal\":%s,"
               "\"heartbeatSeconds\":%g}\n\n",
               latest, after, app->journal ? "true" : "false", ev.beat);
    s->next_beat = clock_monotonic() + ev.beat;

    pthread_mutex_lock(&ev.lock);
    int slot = -1;
    for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS && slot < 0 && !atomic_load(&ev.stop); i++)
        if (!ev.subs[i])
            slot = i;
    if (slot < 0 || pacer_start() != 0) {
        /* Probe the idle streams now: those of closed tabs fail their write
         * and give their places up before the browser retries. */
        for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++)
            if (ev.subs[i]) {
                pthread_mutex_lock(&ev.subs[i]->lock);
                ev.subs[i]->next_beat = 0;
                pthread_mutex_unlock(&ev.subs[i]->lock);
            }
        int stopping = atomic_load(&ev.stop);
        pthread_mutex_unlock(&ev.lock);
        pthread_mutex_destroy(&s->lock);
        buf_free(&s->out);
        free(s);
        if (stopping)
            http_reply_error(resp, 503, "the server is stopping");
        else
            http_reply_error(resp, 503, "%d event streams are open already; close one, or retry",
                             EVENTS_MAX_SUBSCRIBERS);
        http_add_header(resp, "Retry-After", "2");
        return;
    }
    s->slot = slot;
    ev.subs[slot] = s;
    ev.n++;
    pthread_cond_signal(&ev.cond);
    pthread_mutex_unlock(&ev.lock);

    http_reply_stream(resp, 200, "text/event-stream; charset=utf-8", reader, subscriber_free, s);
    http_add_header(resp, "Cache-Control", "no-cache, no-store");
    /* nginx and others buffer responses unless told not to. */
    http_add_header(resp, "X-Accel-Buffering", "no");
}

void events_stop(void)
{
    pthread_mutex_lock(&ev.lock);
    atomic_store(&ev.stop, 1);
    pthread_cond_signal(&ev.cond);
    int running = ev.running;
    pthread_mutex_unlock(&ev.lock);
    if (!running)
        return;
    /* The pacer makes one last pass that resumes every stream, whose reader
     * then ends it, and returns. */
    pthread_join(ev.pacer, NULL);
    ev.running = 0;
}

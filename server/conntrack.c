/*
 * conntrack: a list of open connections and a reaper thread.
 *
 * A request's phase and the moment its deadline started are packed into one
 * atomic word, so that the worker threads (which move a request along) and
 * the reaper (which expires it) never see one without the other:
 *   IDLE      between requests; libmicrohttpd's inactivity timeout applies;
 *   READING   its first byte has arrived, headers or body are still coming;
 *   RECEIVED  wholly read: being handled, delayed or sent;
 *   EXPIRED   past its deadline: answered 408 (plain HTTP) and shut down.
 *
 * libmicrohttpd reads a request's bytes before it tells us anything, so the
 * reaper learns that an idle connection's next request has begun from the
 * kernel: TCP_INFO's count of bytes received grew while no request was
 * completed. The deadline then runs from that check (up to a quarter second
 * after the byte), so it is never early.
 *
 * The reaper holds the list's lock while it writes to a socket; libmicrohttpd
 * closes a socket only after its CLOSED notification, which takes the same
 * lock, so the descriptor cannot be reused under the reaper.
 */
#include "conntrack.h"
#include "clock.h"
#include "log.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* the kernel's tcp_info: glibc's lacks tcpi_bytes_received */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define REAPER_PERIOD_MS 250

enum phase { IDLE, READING, RECEIVED, EXPIRED };

struct conn_track {
    struct conn_track *prev, *next; /* under reg.lock */
    int fd;
    _Atomic uint64_t state;         /* since_ms << 2 | phase */
    _Atomic unsigned long requests; /* requests done on this connection */
    _Atomic int in_request;         /* a request's own log line will tell of its 408 */
    /* The reaper's last look, under reg.lock. */
    int looked;
    unsigned long seen_requests;
    uint64_t seen_bytes;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conn_track *head;
    long long timeout_ms;
    int tls;
    int running, stop;
    pthread_t thread;
} reg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 10000, 0, 0, 0, 0};

static uint64_t pack(long long since_ms, enum phase p)
{
    return (uint64_t)since_ms << 2 | (uint64_t)p;
}

static enum phase phase_of(uint64_t s)
{
    return (enum phase)(s & 3);
}

static long long since_of(uint64_t s)
{
    return (long long)(s >> 2);
}

static long long now_ms(void)
{
    return (long long)(clock_monotonic() * 1000.0);
}

/* ---- the reaper -------------------------------------------------------- */

static char response_408[320];
static int response_408_len;

static void compose_408(int timeout_s)
{
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"error\":\"request timeout: the request did not arrive whole within %d "
                     "seconds (--request-timeout)\"}",
                     timeout_s);
    response_408_len = snprintf(response_408, sizeof response_408,
                                "HTTP/1.1 408 Request Timeout\r\n"
                                "Content-Type: application/json\r\n"
                                "Connection: close\r\n"
                                "Content-Length: %d\r\n\r\n%s",
                                n, body);
}

static void expire(struct conn_track *t, long long waited_ms)
{
    if (!reg.tls)
        (void)!send(t->fd, response_408, (size_t)response_408_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(t->fd, SHUT_RDWR);
    if (!atomic_load(&t->in_request)) {
        /* No request line yet: no request's log line will tell of it. */
        struct log_request line = {
            .method = "-", .path = "-", .status = 408, .latency_ms = (double)waited_ms};
        log_request(&line);
    }
}

static void look(struct conn_track *t, long long now)
{
    uint64_t s = atomic_load(&t->state);
    if (phase_of(s) == READING) {
        long long waited = now - since_of(s);
        if (waited >= reg.timeout_ms &&
            atomic_compare_exchange_strong(&t->state, &s, pack(since_of(s), EXPIRED)))
            expire(t, waited);
        return;
    }
    if (phase_of(s) != IDLE)
        return;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(t->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return;
    unsigned long done = atomic_load(&t->requests);
    uint64_t bytes = ti.tcpi_bytes_received;
    /* Bytes that arrived while no request was done: the next one has begun
     * (on a new connection, any byte at all). */
    int begun =
        t->looked ? done == t->seen_requests && bytes > t->seen_bytes : done == 0 && bytes > 0;
    if (begun)
        atomic_compare_exchange_strong(&t->state, &s, pack(now, READING));
    t->looked = 1;
    t->seen_requests = done;
    t->seen_bytes = bytes;
}

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reg.lock);
    while (!reg.stop) {
        long long now = now_ms();
        for (struct conn_track *t = reg.head; t; t = t->next)
            look(t, now);
        struct timespec ts;
        clock_deadline(&ts, REAPER_PERIOD_MS / 1000.0);
        pthread_cond_timedwait(&reg.cond, &reg.lock, &ts);
    }
    pthread_mutex_unlock(&reg.lock);
    return NULL;
}

int conntrack_start(int timeout_s, int tls)
{
    reg.timeout_ms = (long long)timeout_s * 1000;
    compose_408(timeout_s);
    reg.tls = tls;
    reg.stop = 0;
    if (pthread_create(&reg.thread, NULL, reaper_main, NULL) != 0)
        return -1;
    reg.running = 1;
    return 0;
}

void conntrack_stop(void)
{
    if (!reg.running)
        return;
    pthread_mutex_lock(&reg.lock);
    reg.stop = 1;
    pthread_cond_signal(&reg.cond);
    pthread_mutex_unlock(&reg.lock);
    pthread_join(reg.thread, NULL);
    reg.running = 0;
}

/* ---- connections ------------------------------------------------------- */

void conntrack_opened(struct MHD_Connection *conn, void **socket_context)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct conn_track *t = ci ? calloc(1, sizeof *t) : NULL;
    *socket_context = t;
    if (!t)
        return;
    t->fd = ci->connect_fd;
    atomic_init(&t->state, pack(0, IDLE));
    pthread_mutex_lock(&reg.lock);
    t->next = reg.head;
    if (reg.head)
        reg.head->prev = t;
    reg.head = t;
    pthread_mutex_unlock(&reg.lock);
}

void conntrack_closed(void **socket_context)
{
    struct conn_track *t = *socket_context;
    if (!t)
        return;
    pthread_mutex_lock(&reg.lock);
    if (t->prev)
        t->prev->next = t->next;
    else
        reg.head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&reg.lock);
    free(t);
    *socket_context = NULL;
}

struct conn_track *conntrack_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- a request's phases -------------------------------------------------- */

void conntrack_began(struct conn_track *t)
{
    if (!t)
        return;
    atomic_store(&t->in_request, 1);
    uint64_t s = atomic_load(&t->state);
    while (phase_of(s) == IDLE &&
           !atomic_compare_exchange_weak(&t->state, &s, pack(now_ms(), READING)))
        ;
}

int conntrack_received(struct conn_track *t)
{
    if (!t)
        return 0;
    uint64_t s = atomic_load(&t->state);
    for (;;) {
        if (phase_of(s) == EXPIRED)
            return -1;
        if (phase_of(s) == RECEIVED ||
            atomic_compare_exchange_weak(&t->state, &s, pack(since_of(s), RECEIVED)))
            return 0;
    }
}

void conntrack_done(struct conn_track *t)
{
    if (!t)
        return;
    uint64_t s = atomic_load(&t->state);
    while (phase_of(s) != EXPIRED && !atomic_compare_exchange_weak(&t->state, &s, pack(0, IDLE)))
        ;
    atomic_store(&t->in_request, 0);
    atomic_fetch_add(&t->requests, 1);
}

int conntrack_expired(const struct conn_track *t)
{
    return t && phase_of(atomic_load(&t->state)) == EXPIRED;
}

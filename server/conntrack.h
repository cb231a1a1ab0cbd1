/*
 * conntrack: every connection from accept to close, so that a request which
 * arrives too slowly is answered 408 and closed (--request-timeout).
 *
 * libmicrohttpd's own timeout is for inactivity: a client that sends one byte
 * every few seconds keeps its request, and its connection slot, forever. Here
 * each request has a deadline that runs from its first byte until its
 * headers and body have all arrived; a reaper thread checks four times a
 * second and expires the requests past it.
 */
#ifndef AUTHMOCK_CONNTRACK_H
#define AUTHMOCK_CONNTRACK_H

struct MHD_Connection;
struct conn_track;

/* Starts the reaper: requests get `timeout_s` seconds; over TLS an expired
 * request is closed without a 408 (it cannot be written in the clear). */
int conntrack_start(int timeout_s, int tls);
/* Stops the reaper; connections still open are no longer watched. */
void conntrack_stop(void);

/* libmicrohttpd's connection notifications (MHD_OPTION_NOTIFY_CONNECTION). */
void conntrack_opened(struct MHD_Connection *conn, void **socket_context);
void conntrack_closed(void **socket_context);

/* The connection's tracker, or NULL when it has none. */
struct conn_track *conntrack_of(struct MHD_Connection *conn);
/* A request's line has arrived (its deadline runs from its first byte, or
 * from now when the reaper has not seen that byte yet). */
void conntrack_began(struct conn_track *t);
/* The request is wholly read. Returns -1 when it had already expired: the
 * connection is being closed and the request must not be answered. */
int conntrack_received(struct conn_track *t);
/* The request is over (answered or abandoned); the connection is idle. */
void conntrack_done(struct conn_track *t);
/* Whether the connection's request was expired by the reaper. */
int conntrack_expired(const struct conn_track *t);

#endif

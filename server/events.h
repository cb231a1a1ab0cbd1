/*
 * events: the admin event stream, GET /__admin/events, which pushes every new
 * journal entry to the dashboard as Server-Sent Events (`event: request`,
 * `id:` the entry's id, `data:` the entry as GET /__admin/requests renders
 * it), within a fraction of a second of the request.
 *
 * No thread waits on a subscriber: a stream's connection is suspended while
 * it has nothing to send, and a pacer thread resumes it when the journal has
 * newer entries or a heartbeat is due. The journal itself is the queue: each
 * subscriber keeps only a cursor (the last id it sent), so recording a request
 * costs one atomic store whoever is watching, and a slow or vanished browser
 * holds no memory and blocks nothing. A subscriber that falls more than
 * EVENTS_BATCH entries behind in one pacer tick is sent the newest of them
 * and an `event: gap` naming what it missed.
 */
#ifndef AUTHMOCK_EVENTS_H
#define AUTHMOCK_EVENTS_H

struct app;
struct http_request;
struct http_response;

/* Streams open at once; one more is answered 503 (after the idle ones have
 * been probed, so that those of closed tabs give their places up). */
#define EVENTS_MAX_SUBSCRIBERS 16
/* Entries sent to one subscriber per pacer tick, at most. */
#define EVENTS_BATCH 100

/* Listens to the journal from the start, so that the stream knows the newest
 * id before anyone subscribes. Call before the daemon accepts requests. */
void events_start(struct app *app);
/* Answers GET /__admin/events (the caller has checked the admin token): the
 * stream, filtered by the journal's api, namespace, user and status; it
 * starts after ?after=ID, or the Last-Event-ID header an EventSource sends
 * when it reconnects, or else with the next entry. */
void events_open(struct app *app, const struct http_request *req, struct http_response *resp);
/* Ends every stream (and refuses new ones) so that a draining server can
 * stop: call after the daemon stopped accepting, before waiting for the
 * requests in flight. */
void events_stop(void);

#endif

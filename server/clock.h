/*
 * clock: the mock clock. Every expiry, window and one-time-code check reads
 * clock_now(), which is real time plus an offset that the admin API moves, so
 * tests advance time instead of sleeping.
 */
#ifndef AUTHMOCK_CLOCK_H
#define AUTHMOCK_CLOCK_H

#include <stddef.h>

/* Seconds since the epoch on the mock clock, with microsecond resolution. */
double clock_now(void);
/* Seconds on a monotonic clock: for latencies and uptime, never for mock time. */
double clock_monotonic(void);
/* The CLOCK_REALTIME instant `seconds` (>= 0) from now, for
 * pthread_cond_timedwait. */
struct timespec;
void clock_deadline(struct timespec *ts, double seconds);
double clock_offset(void);
void clock_set_offset(double seconds);

/* A namespace's clock: the mock clock plus the namespace's own offset, so
 * parallel test suites each move their own time. "" or NULL is the shared
 * clock. */
double clock_now_ns(const char *ns);
double clock_ns_offset(const char *ns);
/* Sets a namespace's own offset (on top of the shared one). Returns -1 when
 * too many namespaces have clocks. */
int clock_set_ns_offset(const char *ns, double seconds);
/* Forgets one namespace's offset, or every namespace's when ns is NULL. */
void clock_reset_ns(const char *ns);
/* The shared offset and every namespace's, as JSON text (malloc'd), and back:
 * what a file database keeps so the mock clock survives a restart. */
char *clock_save(void);
void clock_load(const char *json);
/* Formats `t` as ISO-8601 UTC with milliseconds and a Z, into out[32]. */
void clock_format(double t, char out[32]);
/* Parses ISO-8601 (date, 'T', time, optional fraction, Z or ±hh:mm). Returns 0 on success. */
int clock_parse(const char *text, double *out);

#endif

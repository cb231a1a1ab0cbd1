/*
 * rng: the source of every id, token and code authmock makes up. Without a
 * seed it reads the kernel's random pool; with --seed it runs a seeded
 * xoshiro256** generator so a test run sees the same ids, tokens and codes
 * every time (in the order requests arrive).
 */
#ifndef AUTHMOCK_RNG_H
#define AUTHMOCK_RNG_H

#include <stddef.h>
#include <stdint.h>

void rng_init(int seeded, uint64_t seed);
void rng_bytes(void *out, size_t len);
/* A random RFC 4122 version-4 UUID, lower case, into out[37]. */
void rng_uuid(char out[37]);
/* A decimal code of `digits` digits (no leading zero), into out[digits + 1]. */
void rng_digits(char *out, int digits);
/* An opaque URL-safe token of `bytes` random bytes; the caller frees it. */
char *rng_token(size_t bytes);
/* A W3C traceparent-style id as ASP.NET's ProblemDetails carry in traceId:
 * "00-<32 hex>-<16 hex>-00", into out[56]. */
void rng_trace_id(char out[56]);
/* A UUID derived from a name (stable across runs), version-5 layout over SHA-1. */
void uuid_from_name(const char *name, char out[37]);

#endif

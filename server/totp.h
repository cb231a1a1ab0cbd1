/*
 * totp: RFC 6238 one-time codes (HMAC-SHA1, 30 s steps, 6 digits) and the
 * RFC 4648 Base32 text authenticator apps are given as the key. ONLYOFFICE
 * uses the UTF-8 bytes of a user's 10-character secret as the key and shows
 * its Base32 (16 characters, no padding) as `tfaKey`.
 */
#ifndef AUTHMOCK_TOTP_H
#define AUTHMOCK_TOTP_H

#include <stddef.h>
#include <stdint.h>

/* The code for time step `counter` (unix time / 30), as 6 digits into out[7]. */
void totp_code(const void *key, size_t key_len, uint64_t counter, char out[7]);
/* Whether `code` is valid at `now` within ±`drift_steps` steps. */
int totp_check(const void *key, size_t key_len, double now, int drift_steps, const char *code);
/* RFC 4648 Base32 without padding; out needs ceil(len * 8 / 5) + 1 bytes. */
void base32_encode(const void *data, size_t len, char *out);

#endif

/*
 * rng: random bytes from getrandom(2), or a seeded xoshiro256** stream when
 * the user asked for determinism. The seeded stream is shared by all threads
 * behind a mutex, so the values depend only on the order of requests.
 */
#include "rng.h"
#include "jsonutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/sha1.h>

static int rng_seeded;
static uint64_t rng_state[4];
static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(void)
{
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void rng_init(int seeded, uint64_t seed)
{
    pthread_mutex_lock(&rng_lock);
    rng_seeded = seeded;
    for (int i = 0; i < 4; i++)
        rng_state[i] = splitmix64(&seed);
    pthread_mutex_unlock(&rng_lock);
}

void rng_bytes(void *out, size_t len)
{
    unsigned char *p = out;
    if (!rng_seeded) {
        /* One getrandom(2) call per 4 KiB per thread instead of one per value. */
        static _Thread_local unsigned char pool[4096];
        static _Thread_local size_t avail;
        while (len > 0) {
            if (avail == 0) {
                size_t got = 0;
                while (got < sizeof pool) {
                    ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
                    if (n <= 0)
                        abort(); /* The kernel's pool does not fail on Linux >= 3.17. */
                    got += (size_t)n;
                }
                avail = sizeof pool;
            }
            size_t n = len < avail ? len : avail;
            memcpy(p, pool + sizeof pool - avail, n);
            avail -= n;
            p += n;
            len -= n;
        }
        return;
    }
    pthread_mutex_lock(&rng_lock);
    while (len > 0) {
        uint64_t v = xoshiro_next();
        size_t n = len < sizeof v ? len : sizeof v;
        memcpy(p, &v, n);
        p += n;
        len -= n;
    }
    pthread_mutex_unlock(&rng_lock);
}

static void format_uuid(unsigned char b[16], char out[37])
{
    char hex[33];
    hex_encode(b, 16, hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}

void rng_uuid(char out[37])
{
    unsigned char b[16];
    rng_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    format_uuid(b, out);
}

void uuid_from_name(const char *name, char out[37])
{
    struct sha1_ctx ctx;
    unsigned char digest[SHA1_DIGEST_SIZE];
    sha1_init(&ctx);
    sha1_update(&ctx, strlen(name), (const uint8_t *)name);
    sha1_digest(&ctx, sizeof digest, digest);
    digest[6] = (unsigned char)((digest[6] & 0x0f) | 0x50);
    digest[8] = (unsigned char)((digest[8] & 0x3f) | 0x80);
    format_uuid(digest, out);
}

void rng_digits(char *out, int digits)
{
    for (int i = 0; i < digits; i++) {
        unsigned char b;
        /* Reject values above 249 so every digit is equally likely. */
        do
            rng_bytes(&b, 1);
        while (b >= 250 || (i == 0 && b % 10 == 0));
        out[i] = (char)('0' + b % 10);
    }
    out[digits] = '\0';
}

char *rng_token(size_t bytes)
{
    unsigned char raw[64];
    if (bytes > sizeof raw)
        bytes = sizeof raw;
    rng_bytes(raw, bytes);
    return b64url_encode(raw, bytes);
}

void rng_trace_id(char out[56])
{
    unsigned char raw[24];
    char hex[49];
    rng_bytes(raw, sizeof raw);
    hex_encode(raw, sizeof raw, hex);
    snprintf(out, 56, "00-%.32s-%.16s-00", hex, hex + 32);
}

/*
 * totp: HMAC-SHA1 comes from nettle; this file only does RFC 4226's dynamic
 * truncation and RFC 4648's Base32 bit packing.
 */
#include "totp.h"

#include <math.h>
#include <string.h>

#include <nettle/hmac.h>

void totp_code(const void *key, size_t key_len, uint64_t counter, char out[7])
{
    uint8_t msg[8], mac[SHA1_DIGEST_SIZE];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    struct hmac_sha1_ctx ctx;
    hmac_sha1_set_key(&ctx, key_len, key);
    hmac_sha1_update(&ctx, sizeof msg, msg);
    hmac_sha1_digest(&ctx, sizeof mac, mac);
    int off = mac[SHA1_DIGEST_SIZE - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    uint32_t v = bin % 1000000u;
    for (int i = 5; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    out[6] = '\0';
}

int totp_check(const void *key, size_t key_len, double now, int drift_steps, const char *code)
{
    if (!code || strlen(code) != 6)
        return 0;
    int64_t step = (int64_t)floor(now / 30.0);
    for (int64_t d = -drift_steps; d <= drift_steps; d++) {
        char want[7];
        if (step + d < 0)
            continue;
        totp_code(key, key_len, (uint64_t)(step + d), want);
        if (strcmp(want, code) == 0)
            return 1;
    }
    return 0;
}

void base32_encode(const void *data, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const uint8_t *p = data;
    uint32_t buffer = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        buffer = (buffer << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            out[n++] = alphabet[(buffer >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[n++] = alphabet[(buffer << (5 - bits)) & 31];
    out[n] = '\0';
}

/*
 * jsonutil: byte buffers, cJSON conveniences, and the encodings (Base64,
 * hex, SHA-1) the API modules need. The encodings come from nettle so no
 * hand-written crypto or codec lives in this project.
 */
#include "jsonutil.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/sha1.h>

int buf_reserve(struct buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len))
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int err = buf_append(b, big, (size_t)n);
    free(big);
    return err;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *str_find(const char *const *values, size_t n, const char *s, int nocase)
{
    for (size_t i = 0; s && i < n; i++)
        if ((nocase ? strcasecmp(values[i], s) : strcmp(values[i], s)) == 0)
            return values[i];
    return NULL;
}

/* A name's value, or -1. Exact case first, as the converter looks. */
static long enum_name_value(const char *s, size_t len, const char *const *names, size_t n)
{
    for (int nocase = 0; nocase < 2; nocase++)
        for (size_t i = 0; i < n; i++)
            if (strlen(names[i]) == len &&
                (nocase ? strncasecmp(names[i], s, len) : strncmp(names[i], s, len)) == 0)
                return (long)i;
    return -1;
}

int json_enum_read(const cJSON *item, const char *const *names, size_t n, int flags,
                   int defined_only, char *out, size_t cap)
{
    long value = -1;
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
            return -1;
        value = (long)d;
    } else if (cJSON_IsString(item)) {
        const char *s = item->valuestring;
        while (*s == ' ')
            s++;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (*s && (isdigit((unsigned char)*s) || *s == '-') && !errno && end != s) {
            while (*end == ' ')
                end++;
            if (*end || v < -2147483648L || v > 2147483647L)
                return -1;
            value = v;
        } else {
            /* One name, or with `flags` several joined by commas (values ORed). */
            value = 0;
            const char *p = s;
            for (int parts = 0;; parts++) {
                while (*p == ' ')
                    p++;
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                while (len && p[len - 1] == ' ')
                    len--;
                long v = len ? enum_name_value(p, len, names, n) : -1;
                if (v < 0 || (parts > 0 && !flags))
                    return -1;
                value |= v;
                if (!e)
                    break;
                p = e + 1;
            }
        }
    } else {
        return -1;
    }
    if (value >= 0 && (size_t)value < n)
        snprintf(out, cap, "%s", names[value]);
    else if (defined_only)
        return -1;
    else
        snprintf(out, cap, "%ld", value);
    return 0;
}

const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

cJSON *json_add_str_or_null(cJSON *obj, const char *key, const char *value)
{
    return value ? cJSON_AddStringToObject(obj, key, value) : cJSON_AddNullToObject(obj, key);
}

int json_merge(cJSON *dst, const cJSON *src)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, src)
    {
        cJSON *existing = cJSON_GetObjectItemCaseSensitive(dst, item->string);
        if (existing && cJSON_IsObject(existing) && cJSON_IsObject(item)) {
            if (json_merge(existing, item))
                return -1;
            continue;
        }
        cJSON *copy = cJSON_Duplicate(item, 1);
        if (!copy)
            return -1;
        if (existing)
            cJSON_ReplaceItemViaPointer(dst, existing, copy);
        else
            cJSON_AddItemToObject(dst, item->string, copy);
    }
    return 0;
}

/* Digits of a whole number below 1e15 in absolute value, with its sign. */
static size_t whole_digits(char *buf, long long v)
{
    char rev[24];
    size_t n = 0, k = 0;
    unsigned long long u = v < 0 ? (unsigned long long)-v : (unsigned long long)v;
    do {
        rev[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[k++] = '-';
    while (n)
        buf[k++] = rev[--n];
    return k;
}

/* Writes a number exactly as cJSON_PrintUnformatted does ("%d" when it equals
 * its int value, else "%1.15g" when that reads back as the same double, else
 * "%1.17g"), without its sprintf + sscanf per number. Whole numbers, and
 * numbers with up to six decimals that are the double nearest their decimal
 * text (money, mostly), take a digit loop; the rest go through snprintf. */
static int render_number(struct buf *o, double d, int valueint)
{
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    char num[40];
    int n;
    if (isnan(d) || isinf(d))
        return buf_append(o, "null", 4);
    if (d == (double)valueint && !(d == 0 && signbit(d)))
        return buf_append(o, num, whole_digits(num, valueint));
    double a = fabs(d);
    if (a >= 1e-4 && a < 1e15) {
        for (int k = 0; k <= 6; k++) {
            double scaled = d * pow10[k];
            if (fabs(scaled) >= 1e15 || scaled != floor(scaled))
                continue;
            long long v = (long long)scaled;
            /* Exactly the double strtod would give for the decimal text: an
             * IEEE division of two exact values is correctly rounded too. */
            if ((double)v / pow10[k] != d)
                break;
            long long p = (long long)pow10[k], whole = v / p, frac = v % p;
            /* The shortest k may still end in zeros (0.07 is 70 / 1000 in
             * doubles): %g drops them. */
            while (k > 0 && frac % 10 == 0) {
                frac /= 10;
                k--;
            }
            size_t len = 0;
            if (v < 0 && whole == 0)
                num[len++] = '-';
            len += whole_digits(num + len, whole);
            if (k > 0) {
                num[len++] = '.';
                frac = frac < 0 ? -frac : frac;
                for (int i = k - 1; i >= 0; i--) {
                    num[len + (size_t)i] = (char)('0' + frac % 10);
                    frac /= 10;
                }
                len += (size_t)k;
            }
            return buf_append(o, num, len);
        }
    }
    n = snprintf(num, sizeof num, "%1.15g", d);
    double test = strtod(num, NULL);
    double max = fabs(test) > a ? fabs(test) : a;
    if (!(fabs(test - d) <= max * DBL_EPSILON))
        n = snprintf(num, sizeof num, "%1.17g", d);
    return buf_append(o, num, (size_t)n);
}

/* The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. */
size_t json_utf8_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* E0: no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* ED: no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80; /* F0: no overlong forms */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* F4: nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static int render_string(struct buf *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *p = s ? s : "";
    size_t n = strlen(p);
    /* Room for the worst case: every byte escaped as \u00XX, and the quotes. */
    if (buf_reserve(o, n * 6 + 2))
        return -1;
    char *w = o->data + o->len;
    *w++ = '"';
    const char *end = p + n;
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x80) {
            /* Never send invalid UTF-8 (a decoded %FF in a path, say): each
             * byte that starts no valid sequence becomes U+FFFD, as .NET's
             * encoders replace it. */
            size_t len = json_utf8_len((const unsigned char *)p, (size_t)(end - p));
            if (len == 0) {
                memcpy(w, "\xef\xbf\xbd", 3);
                w += 3;
            } else {
                memcpy(w, p, len);
                w += len;
                p += len - 1;
            }
            continue;
        }
        if (c >= 32 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '\b':
            *w++ = 'b';
            break;
        case '\f':
            *w++ = 'f';
            break;
        case '\n':
            *w++ = 'n';
            break;
        case '\r':
            *w++ = 'r';
            break;
        case '\t':
            *w++ = 't';
            break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->data);
    o->data[o->len] = '\0';
    return 0;
}

static int render_item(struct buf *o, const cJSON *item)
{
    switch (item->type & 0xFF) {
    case cJSON_NULL:
        return buf_append(o, "null", 4);
    case cJSON_False:
        return buf_append(o, "false", 5);
    case cJSON_True:
        return buf_append(o, "true", 4);
    case cJSON_Number:
        return render_number(o, item->valuedouble, item->valueint);
    case cJSON_String:
        return render_string(o, item->valuestring);
    case cJSON_Raw:
        return item->valuestring ? buf_append(o, item->valuestring, strlen(item->valuestring)) : -1;
    case cJSON_Array:
    case cJSON_Object: {
        int obj = (item->type & 0xFF) == cJSON_Object;
        if (buf_append(o, obj ? "{" : "[", 1))
            return -1;
        for (const cJSON *c = item->child; c; c = c->next) {
            if (c != item->child && buf_append(o, ",", 1))
                return -1;
            if (obj && (render_string(o, c->string) || buf_append(o, ":", 1)))
                return -1;
            if (render_item(o, c))
                return -1;
        }
        return buf_append(o, obj ? "}" : "]", 1);
    }
    default:
        return -1;
    }
}

int json_append(struct buf *b, const cJSON *item)
{
    return item ? render_item(b, item) : buf_append(b, "null", 4);
}

int json_append_string(struct buf *b, const char *s)
{
    return s ? render_string(b, s) : buf_append(b, "null", 4);
}

int json_append_number(struct buf *b, double d)
{
    return render_number(b, d, d >= -2147483648.0 && d <= 2147483647.0 ? (int)d : 0);
}

char *json_render(const cJSON *item, size_t *len)
{
    /* Replies are a few hundred bytes to a few KiB: start where most end. */
    struct buf o = {0};
    if (!item || buf_reserve(&o, 2048) || render_item(&o, item)) {
        buf_free(&o);
        return NULL;
    }
    if (len)
        *len = o.len;
    return o.data;
}

/* Bytes json_scan must look at: in a string (bit 1) quotes, backslashes,
 * control characters and non-ASCII; outside one (bit 2) also brackets and
 * braces, but not spaces. Every other byte is skipped. */
#define SCAN_STOP(c)                                                                               \
    ((c) < 0x20 || (c) >= 0x80 || (c) == '"'                                                       \
         ? 3                                                                                       \
         : ((c) == '\\' ? 1 : ((c) == '{' || (c) == '[' || (c) == '}' || (c) == ']' ? 2 : 0)))
#define SCAN_ROW(r)                                                                                \
    SCAN_STOP(r), SCAN_STOP(r + 1), SCAN_STOP(r + 2), SCAN_STOP(r + 3), SCAN_STOP(r + 4),          \
        SCAN_STOP(r + 5), SCAN_STOP(r + 6), SCAN_STOP(r + 7), SCAN_STOP(r + 8), SCAN_STOP(r + 9),  \
        SCAN_STOP(r + 10), SCAN_STOP(r + 11), SCAN_STOP(r + 12), SCAN_STOP(r + 13),                \
        SCAN_STOP(r + 14), SCAN_STOP(r + 15)
static const unsigned char scan_stop[256] = {
    SCAN_ROW(0x00), SCAN_ROW(0x10), SCAN_ROW(0x20), SCAN_ROW(0x30), SCAN_ROW(0x40), SCAN_ROW(0x50),
    SCAN_ROW(0x60), SCAN_ROW(0x70), SCAN_ROW(0x80), SCAN_ROW(0x90), SCAN_ROW(0xA0), SCAN_ROW(0xB0),
    SCAN_ROW(0xC0), SCAN_ROW(0xD0), SCAN_ROW(0xE0), SCAN_ROW(0xF0),
};

/* What System.Text.Json refuses before it parses: text that is not UTF-8, a
 * control character (NUL included) inside a string or outside one, nesting
 * deeper than JSON_MAX_DEPTH. Returns 0 or the reason, *off the byte. Bytes
 * that open, close or need checking are found through scan_stop: start-up
 * scans every scenario file, and a test per byte was a sixth of parsing one. */
static enum json_error json_scan(const char *data, size_t len, size_t *off)
{
    const unsigned char *d = (const unsigned char *)data;
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len;) {
        unsigned char stop = in_string ? 1 : 2;
        while (i < len && !(scan_stop[d[i]] & stop))
            i++;
        if (i >= len)
            break;
        unsigned char c = d[i];
        *off = i;
        if (c >= 0x80) {
            size_t n = json_utf8_len(d + i, len - i);
            if (!n)
                return JSON_ERROR_UTF8;
            i += n;
            continue;
        }
        if (in_string) {
            if (c == '\\') {
                i += 2;
                continue;
            }
            if (c == '"')
                in_string = 0;
            else if (c < 0x20)
                return JSON_ERROR_CONTROL;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_MAX_DEPTH)
                return JSON_ERROR_DEPTH;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            return JSON_ERROR_CONTROL;
        }
        i++;
    }
    return JSON_OK;
}

cJSON *json_parse(const char *data, size_t len, size_t *err_offset)
{
    enum json_error why;
    return json_parse_why(data, len, err_offset, &why);
}

cJSON *json_parse_why(const char *data, size_t len, size_t *err_offset, enum json_error *why)
{
    *why = json_scan(data, len, err_offset);
    if (*why != JSON_OK)
        return NULL;
    *why = JSON_ERROR_SYNTAX;
    const char *end = NULL;
    /* cJSON_ParseWithLengthOpts reports the error position through `end`,
     * which, unlike cJSON_GetErrorPtr, is not shared between threads. */
    cJSON *doc = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!doc) {
        *err_offset = end && end >= data ? (size_t)(end - data) : 0;
        return NULL;
    }
    /* Only white space may follow the value. */
    while (end < data + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != data + len) {
        *err_offset = (size_t)(end - data);
        cJSON_Delete(doc);
        return NULL;
    }
    *why = JSON_OK;
    return doc;
}

const char *json_error_text(enum json_error why)
{
    switch (why) {
    case JSON_ERROR_UTF8:
        return "is not valid UTF-8";
    case JSON_ERROR_CONTROL:
        return "has a control character that must be escaped";
    case JSON_ERROR_DEPTH:
        return "is nested deeper than the maximum depth of 64";
    default:
        return "is not valid JSON";
    }
}

const char *json_file_error(enum json_error why, char *buf, size_t cap)
{
    if (why <= JSON_ERROR_SYNTAX)
        return "not valid JSON";
    snprintf(buf, cap, "not valid JSON: it %s", json_error_text(why));
    return buf;
}

char *b64_encode(const void *data, size_t len)
{
    char *out = malloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
    if (!out)
        return NULL;
    base64_encode_raw(out, len, data);
    out[BASE64_ENCODE_RAW_LENGTH(len)] = '\0';
    return out;
}

char *b64url_encode(const void *data, size_t len)
{
    struct base64_encode_ctx ctx;
    size_t cap = BASE64_ENCODE_LENGTH(len) + BASE64_ENCODE_FINAL_LENGTH + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    base64url_encode_init(&ctx);
    size_t n = base64_encode_update(&ctx, out, len, data);
    n += base64_encode_final(&ctx, out + n);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    return out;
}

int b64_decode(const char *text, char **out, size_t *out_len)
{
    size_t in_len = strlen(text);
    struct base64_decode_ctx ctx;
    char *dst = malloc(BASE64_DECODE_LENGTH(in_len) + 1);
    if (!dst)
        return -1;
    size_t n = BASE64_DECODE_LENGTH(in_len);
    base64_decode_init(&ctx);
    if (in_len % 4 != 0 || !base64_decode_update(&ctx, &n, (uint8_t *)dst, in_len, text) ||
        !base64_decode_final(&ctx)) {
        free(dst);
        return -1;
    }
    /* nettle skips white space ("cGFz czEy Mw==" is "pass123" to it): only
     * the one encoding of the bytes is canonical, so they must encode back
     * to the text. */
    char *again = b64_encode(dst, n);
    int canonical = again && strcmp(again, text) == 0;
    free(again);
    if (!canonical) {
        free(dst);
        return -1;
    }
    dst[n] = '\0';
    *out = dst;
    *out_len = n;
    return 0;
}

void hex_encode(const unsigned char *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * len] = '\0';
}

void sha1_hex(const void *data, size_t len, char out[41])
{
    struct sha1_ctx ctx;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&ctx);
    sha1_update(&ctx, len, data);
    sha1_digest(&ctx, sizeof digest, digest);
    hex_encode(digest, sizeof digest, out);
}

size_t text_escape_line(char *out, size_t cap, const char *s, enum text_escape how)
{
    size_t n = 0, left = s ? strlen(s) : 0;
    /* Room for the longest escape ("\ufffd" or "\u00XX"; "%XX" or "\xXX") and the NUL. */
    size_t room = how == TEXT_JSON ? 7 : 5;
    for (; s && *s && n + room < cap; s++, left--) {
        unsigned char c = (unsigned char)*s;
        size_t len = c >= 0x80 ? json_utf8_len((const unsigned char *)s, left) : 1;
        if (how == TEXT_JSON && (c == '"' || c == '\\')) {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (how == TEXT_JSON && len == 0) {
            n += (size_t)snprintf(out + n, cap - n, "\\ufffd");
        } else if (how == TEXT_JSON && c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else if (how != TEXT_JSON &&
                   (c < 0x20 || c == 0x7f || (how == TEXT_WORD && c == ' ') || len == 0)) {
            n += (size_t)snprintf(out + n, cap - n, how == TEXT_WORD ? "%%%02X" : "\\x%02x", c);
        } else if (n + len + 1 < cap) {
            memcpy(out + n, s, len);
            n += len;
            s += len - 1;
            left -= len - 1;
        } else {
            break;
        }
    }
    out[n] = '\0';
    return n;
}

/* Appends `s` so that it stays on one line of UTF-8 whatever a file holds (a
 * key "a\nb" would otherwise start a problem of its own), as in the log. */
static void append_one_line(struct buf *b, const char *s)
{
    /* Each byte takes at most 4 ("\xXX"), and the copy stops 5 short of cap. */
    size_t cap = strlen(s) * 4 + 6;
    if (buf_reserve(b, cap) == 0)
        b->len += text_escape_line(b->data + b->len, cap, s, TEXT_LINE);
}

void problems_add(struct problems *p, const char *file, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    append_one_line(&p->text, file);
    buf_append(&p->text, ": ", 2);
    append_one_line(&p->text, path);
    buf_append(&p->text, ": ", 2);
    append_one_line(&p->text, msg);
    buf_append(&p->text, "\n", 1);
    p->count++;
}

void problems_merge(struct problems *dst, const struct problems *src)
{
    if (src->text.data && buf_append(&dst->text, src->text.data, src->text.len) == 0)
        dst->count += src->count;
}

void problems_each(const struct problems *p, void (*fn)(const char *line, void *cls), void *cls)
{
    for (const char *line = p->text.data; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char *one = strndup(line, n);
        if (one)
            fn(one, cls);
        free(one);
        if (!nl)
            break;
        line = nl + 1;
    }
}

void problems_free(struct problems *p)
{
    buf_free(&p->text);
    p->count = 0;
}

void json_path_join(char *dst, size_t cap, const char *path, size_t path_max, const char *key,
                    size_t key_max)
{
    if (!cap)
        return;
    size_t room = cap - 1, at = strnlen(path, path_max);
    at = at < room ? at : room;
    memcpy(dst, path, at);
    if (at < room)
        dst[at++] = '.';
    size_t n = strnlen(key, key_max);
    n = n < room - at ? n : room - at;
    memcpy(dst + at, key, n);
    dst[at + n] = '\0';
}

void json_path_index(char *dst, size_t cap, const char *path, size_t index)
{
    char tail[32];
    size_t n = sizeof tail;
    tail[--n] = ']';
    do {
        tail[--n] = (char)('0' + index % 10);
        index /= 10;
    } while (index);
    tail[--n] = '[';
    if (!cap)
        return;
    size_t room = cap - 1, at = strlen(path);
    at = at < room ? at : room;
    memcpy(dst, path, at);
    size_t k = sizeof tail - n < room - at ? sizeof tail - n : room - at;
    memcpy(dst + at, tail + n, k);
    dst[at + k] = '\0';
}

/* Plain read(2) into the buffer: stdio's extra fstat and buffered reads cost
 * a start-up with a thousand scenario files several milliseconds. A regular
 * file gives less than a read asks only at its end, so for one the read that
 * would return 0 is skipped: one system call in four of loading a scenario. */
static char *read_file(const char *path, size_t *len, int regular)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct buf b = {0};
    char chunk[16384];
    ssize_t n;
    int err = 0;
    while ((n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno ? errno : EIO;
            break;
        }
        if (buf_append(&b, chunk, (size_t)n)) {
            err = ENOMEM;
            break;
        }
        if (regular && (size_t)n < sizeof chunk)
            break;
    }
    close(fd);
    if (!err && !b.data && buf_append(&b, "", 0))
        err = ENOMEM;
    if (err) {
        buf_free(&b);
        errno = err;
        return NULL;
    }
    *len = b.len;
    return b.data;
}

char *file_read(const char *path, size_t *len)
{
    return read_file(path, len, 0);
}

char *file_read_regular(const char *path, size_t *len)
{
    return read_file(path, len, 1);
}

/* Name order by bytes: alphasort's strcoll is the same order in the C locale
 * this program runs in, at three times the cost for a thousand names. */
static int name_order(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The directories above the one being walked, to find link loops. */
struct walk_up {
    const struct walk_up *up;
    dev_t dev;
    ino_t ino;
};

static void unreadable(const char *path, dir_walk_fn fn, void *cls)
{
    char why[160];
    snprintf(why, sizeof why, "cannot be read: %s", strerror(errno));
    fn(path, why, cls);
}

static int walk(const char *dir, const struct walk_up *up, dir_walk_fn fn, void *cls)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, name_order);
    if (n < 0)
        return -1;
    /* The path is the directory, a slash unless it ends in one, and the name,
     * cut to 4095 bytes as snprintf into path[4096] would. */
    char path[4096];
    size_t dl = strlen(dir);
    dl = dl < sizeof path - 1 ? dl : sizeof path - 1;
    memcpy(path, dir, dl);
    if (!(dl && dir[dl - 1] == '/') && dl < sizeof path - 1)
        path[dl++] = '/';
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t nl = strlen(nm);
        size_t cut = nl < sizeof path - 1 - dl ? nl : sizeof path - 1 - dl;
        memcpy(path + dl, nm, cut);
        path[dl + cut] = '\0';
        int json = nl > 5 && strcmp(nm + nl - 5, ".json") == 0;
        struct stat st;
        /* The directory entry's type spares a stat per file where the file
         * system records it; directories, links and unknown types are
         * stat'ed. */
        int is_dir = names[i]->d_type == DT_DIR, is_reg = names[i]->d_type == DT_REG;
        if (nm[0] == '.') {
            is_dir = is_reg = 0;
        } else if (!is_reg) {
            if (stat(path, &st) == 0) {
                is_dir = S_ISDIR(st.st_mode);
                is_reg = S_ISREG(st.st_mode);
            } else if (json || is_dir) {
                unreadable(path, fn, cls);
                is_dir = 0;
            }
        }
        if (is_dir) {
            const struct walk_up *a = up;
            while (a && !(a->dev == st.st_dev && a->ino == st.st_ino))
                a = a->up;
            if (a) {
                fn(path,
                   "leads back to a directory it is in (a link loop), so it is not read again",
                   cls);
            } else {
                struct walk_up here = {up, st.st_dev, st.st_ino};
                if (walk(path, &here, fn, cls))
                    unreadable(path, fn, cls);
            }
        } else if (is_reg && json) {
            fn(path, NULL, cls);
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

int dir_walk_json(const char *dir, dir_walk_fn fn, void *cls)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    struct walk_up top = {NULL, st.st_dev, st.st_ino};
    return walk(dir, &top, fn, cls);
}

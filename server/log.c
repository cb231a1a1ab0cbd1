/*
 * log: formats lines into a stack buffer and writes each with one write(2)
 * so lines from different threads never interleave.
 */
#include "log.h"
#include "clock.h"
#include "jsonutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static enum log_format log_fmt = LOG_TEXT;
static int log_quiet;

void log_init(enum log_format format, int quiet)
{
    log_fmt = format;
    log_quiet = quiet;
}

static void write_line(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n <= 0)
            return;
        line += n;
        len -= (size_t)n;
    }
}

static void log_message(const char *level, const char *fmt, va_list ap)
{
    char msg[1024], line[2200], now[32];
    vsnprintf(msg, sizeof msg, fmt, ap);
    clock_format(clock_now() - clock_offset(), now);
    int n;
    if (log_fmt == LOG_JSON) {
        char esc[2100];
        text_escape_line(esc, sizeof esc, msg, TEXT_JSON);
        n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", now,
                     level, esc);
    } else {
        char safe[2100];
        text_escape_line(safe, sizeof safe, msg, TEXT_LINE);
        n = snprintf(line, sizeof line, "%s %s %s\n", now, level, safe);
    }
    if (n > 0)
        write_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void log_info(const char *fmt, ...)
{
    if (log_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_message("info", fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_message("error", fmt, ap);
    va_end(ap);
}

/* Whether name[0..left) starts with `word` (lower case), ignoring ASCII case. */
static int starts_with(const char *name, size_t left, const char *word, size_t wl)
{
    if (wl > left)
        return 0;
    for (size_t k = 0; k < wl; k++) {
        char c = name[k];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != word[k])
            return 0;
    }
    return 1;
}

/* The secret words (lower case) by first letter; see log_is_secret_name. */
struct word {
    const char *text;
    size_t len;
};
#define W(s)                                                                                       \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }
static const struct word by_letter[26][5] = {
    ['a' - 'a'] = {W("answer"), W("apikey"), W("accesskey"), W("authorization")},
    ['c' - 'a'] = {W("code"), W("cookie"), W("captcha"), W("credential")},
    ['d' - 'a'] = {W("deviceinfo")},
    ['h' - 'a'] = {W("hash")},
    ['p' - 'a'] = {W("password"), W("pin"), W("privatekey")},
    ['r' - 'a'] = {W("recaptcha")},
    ['s' - 'a'] = {W("secret")},
    ['t' - 'a'] = {W("token"), W("tfakey")},
};
static const struct word whole_names[] = {W("key"), W("confirm")};
#undef W
/* 1 + the letter of a byte that starts some word, in either case; else 0. */
#define L(c) [c] = c - 'a' + 1, [c - 32] = c - 'a' + 1
static const unsigned char first_letter[256] = {L('a'), L('c'), L('d'), L('h'),
                                                L('p'), L('r'), L('s'), L('t')};
#undef L

static int is_secret_name(const char *name, size_t len);

/* A name's verdict, remembered per thread: the journal asks about every
 * member name of every body and every header name it keeps, and the same
 * few dozen names come back request after request. */
struct name_memo {
    char name[47];
    unsigned char len; /* 0: empty slot */
    unsigned char secret;
};

int log_is_secret_name(const char *name, size_t len)
{
    static _Thread_local struct name_memo memo[64];
    if (len == 0 || len > sizeof memo[0].name)
        return is_secret_name(name, len);
    unsigned char a = (unsigned char)name[0], z = (unsigned char)name[len - 1],
                  mid = (unsigned char)name[len / 2];
    struct name_memo *m = &memo[(len * 31 + a + z * 7 + mid * 3) % 64];
    if (m->len == len && memcmp(m->name, name, len) == 0)
        return m->secret;
    m->secret = (unsigned char)is_secret_name(name, len);
    memcpy(m->name, name, len);
    m->len = (unsigned char)len;
    return m->secret;
}

static int is_secret_name(const char *name, size_t len)
{
    /* Words that mark a secret anywhere in a name (mfaCode, refreshToken,
     * passwordHash, tradePin, apiKey, privateKey, recaptchaResponse...), and
     * names that are secrets only whole. The whole name is searched, however
     * long. deviceInfo is one of Mesh's sensitive fields; tfaKey is the
     * Base32 of a TOTP secret in onlyoffice answers. Each position of the name
     * is tried only against the words that start with its letter: the
     * journal asks this of every member of every body it keeps. */
    for (size_t i = 0; i < sizeof whole_names / sizeof whole_names[0]; i++)
        if (whole_names[i].len == len && starts_with(name, len, whole_names[i].text, len))
            return 1;
    /* Every word has three letters or more: the second rules most out. */
    for (size_t i = 0; i + 3 <= len; i++) {
        unsigned letter = first_letter[(unsigned char)name[i]];
        if (!letter)
            continue;
        unsigned d = (unsigned char)name[i + 1] | 0x20;
        for (const struct word *w = by_letter[letter - 1]; w->text; w++)
            if ((unsigned char)w->text[1] == d && w->len <= len - i &&
                starts_with(name + i + 2, len - i - 2, w->text + 2, w->len - 2))
                return 1;
    }
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Whether the query parameter name p[0..len) names a secret once decoded as
 * the API decodes it (%XX, '+' as space): "pass%77ord" is a password too. A
 * name too long to decode here is taken for a secret. */
static int is_secret_param(const char *p, size_t len)
{
    if (!memchr(p, '%', len) && !memchr(p, '+', len))
        return log_is_secret_name(p, len);
    char name[1024];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (n == sizeof name)
            return 1;
        int hi, lo;
        if (p[i] == '%' && i + 2 < len && (hi = hex_value(p[i + 1])) >= 0 &&
            (lo = hex_value(p[i + 2])) >= 0) {
            name[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            name[n++] = p[i] == '+' ? ' ' : p[i];
        }
    }
    return log_is_secret_name(name, n);
}

/* Appends src[0..len) to out, with bytes that do not belong in a URL (space,
 * controls, non-ASCII) as %XX so that a line stays one whitespace-free word.
 * Returns -1, appending nothing, when it does not fit in `room` bytes. */
static int append_escaped(char *out, size_t *n, size_t room, const char *src, size_t len)
{
    size_t need = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        need += c <= 0x20 || c >= 0x7f ? 3 : 1;
    }
    if (need > room)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c <= 0x20 || c >= 0x7f) {
            out[(*n)++] = '%';
            out[(*n)++] = "0123456789ABCDEF"[c >> 4];
            out[(*n)++] = "0123456789ABCDEF"[c & 15];
        } else {
            out[(*n)++] = (char)c;
        }
    }
    return 0;
}

int log_is_secret_header(const char *name)
{
    /* A CORS flag ("true") whose name holds a secret word. */
    if (strcasecmp(name, "Access-Control-Allow-Credentials") == 0)
        return 0;
    /* X-Api-Key, X-Device-Info: words split by the separators count too. */
    char flat[128];
    size_t n = 0;
    const char *c = name;
    for (; *c && n < sizeof flat; c++)
        if (*c != '-' && *c != '_')
            flat[n++] = *c;
    return log_is_secret_name(flat, n) || (*c && log_is_secret_name(name, strlen(name)));
}

void log_mask_query(const char *query, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    if (!query)
        return;
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        int mask = eq && is_secret_param(p, (size_t)(eq - p));
        size_t keep = mask ? (size_t)(eq - p) + 1 : plen;
        /* Room for "***", a '&' and the NUL: a parameter is kept whole or not at all. */
        if (n + 5 > cap || append_escaped(out, &n, cap - n - 5, p, keep)) {
            n -= n > 0 && out[n - 1] == '&';
            break;
        }
        if (mask) {
            memcpy(out + n, "***", 3);
            n += 3;
        }
        if (!amp)
            break;
        out[n++] = '&';
        p = amp + 1;
    }
    out[n] = '\0';
}

void log_request(const struct log_request *r)
{
    if (log_quiet)
        return;
    char line[2048], now[32], query[700], path[512];
    clock_format(clock_now() - clock_offset(), now);
    log_mask_query(r->query, query, sizeof query);
    int n;
    if (log_fmt == LOG_JSON) {
        char epath[600], equery[800], escen[200];
        text_escape_line(epath, sizeof epath, r->path, TEXT_JSON);
        text_escape_line(equery, sizeof equery, query, TEXT_JSON);
        char ens[200];
        text_escape_line(escen, sizeof escen, r->scenario ? r->scenario : "", TEXT_JSON);
        text_escape_line(ens, sizeof ens, r->ns ? r->ns : "", TEXT_JSON);
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"%s\","
                     "\"path\":\"%s\",\"query\":\"%s\",\"status\":%d,\"latencyMs\":%.3f,"
                     "\"api\":\"%s\",\"namespace\":\"%s\",\"scenario\":\"%s\",\"stateFrom\":\"%s\","
                     "\"stateTo\":\"%s\",\"outcome\":\"%s\"}\n",
                     now, r->method, epath, equery, r->status, r->latency_ms, r->api ? r->api : "",
                     ens, escen, r->state_from ? r->state_from : "", r->state_to ? r->state_to : "",
                     r->outcome ? r->outcome : "");
    } else {
        char state[160] = "";
        if (r->state_from)
            snprintf(state, sizeof state, " state=%.64s%s%.64s", r->state_from,
                     r->state_to ? "->" : "", r->state_to ? r->state_to : "");
        char ns[200], scen[200];
        text_escape_line(path, sizeof path, r->path, TEXT_WORD);
        text_escape_line(ns, sizeof ns, r->ns ? r->ns : "-", TEXT_WORD);
        text_escape_line(scen, sizeof scen, r->scenario ? r->scenario : "-", TEXT_WORD);
        n = snprintf(line, sizeof line,
                     "%s info %s %s%s%s %d %.3fms api=%s ns=%s scenario=%s%s%s%.32s\n", now,
                     r->method, path, query[0] ? "?" : "", query, r->status, r->latency_ms,
                     r->api ? r->api : "-", ns, scen, state, r->outcome ? " outcome=" : "",
                     r->outcome ? r->outcome : "");
    }
    if (n > 0)
        write_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

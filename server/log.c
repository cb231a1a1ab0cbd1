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

/* Appends `s` to out as the inside of a JSON string. Bytes that start no
 * valid UTF-8 sequence (a decoded %FF) become U+FFFD. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0, left = s ? strlen(s) : 0;
    for (; s && *s && n + 7 < cap; s++, left--) {
        unsigned char c = (unsigned char)*s;
        size_t len = c >= 0x80 ? json_utf8_len((const unsigned char *)s, left) : 1;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else if (len == 0) {
            n += (size_t)snprintf(out + n, cap - n, "\\ufffd");
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

/* Copies `s` into out for a text log line, so that a line stays one line of
 * whitespace-separated UTF-8 fields whatever a client sent: with `word`, a
 * space, control character, DEL or byte of invalid UTF-8 is written %XX (as
 * in a URL); without, only control characters, DEL and invalid bytes are,
 * as \xXX. */
static void text_escape(char *out, size_t cap, const char *s, int word)
{
    size_t n = 0, left = s ? strlen(s) : 0;
    for (; s && *s && n + 5 < cap; s++, left--) {
        unsigned char c = (unsigned char)*s;
        size_t len = c >= 0x80 ? json_utf8_len((const unsigned char *)s, left) : 1;
        if (c < 0x20 || c == 0x7f || (word && c == ' ') || len == 0) {
            n += (size_t)snprintf(out + n, cap - n, word ? "%%%02X" : "\\x%02x", c);
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
}

static void log_message(const char *level, const char *fmt, va_list ap)
{
    char msg[1024], line[2200], now[32];
    vsnprintf(msg, sizeof msg, fmt, ap);
    clock_format(clock_now() - clock_offset(), now);
    int n;
    if (log_fmt == LOG_JSON) {
        char esc[2100];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", now,
                     level, esc);
    } else {
        char safe[2100];
        text_escape(safe, sizeof safe, msg, 0);
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

/* Whether `word` (lower case) occurs in name[0..len), ignoring case. */
static int has_word(const char *name, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= len; i++) {
        size_t k = 0;
        while (k < wl) {
            char c = name[i + k];
            if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != word[k])
                break;
            k++;
        }
        if (k == wl)
            return 1;
    }
    return 0;
}

int log_is_secret_name(const char *name, size_t len)
{
    /* Words that mark a secret anywhere in a name (mfaCode, refreshToken,
     * passwordHash, tradePin, apiKey, privateKey, recaptchaResponse...), and
     * names that are secrets only whole. The whole name is searched, however
     * long. deviceInfo is one of Mesh's sensitive fields. */
    static const char *const words[] = {
        "password",  "secret",    "token",   "code",       "pin",
        "answer",    "cookie",    "hash",    "apikey",     "privatekey",
        "accesskey", "recaptcha", "captcha", "credential", "deviceinfo",
    };
    static const char *const whole[] = {"key", "authorization", "confirm"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (has_word(name, len, words[i]))
            return 1;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
        if (strlen(whole[i]) == len && has_word(name, len, whole[i]))
            return 1;
    return 0;
}

void log_mask_query(const char *query, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (!query || cap == 0)
        return;
    const char *p = query;
    while (*p && n + 1 < cap) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t keep = plen;
        int mask = eq && log_is_secret_name(p, (size_t)(eq - p));
        if (mask)
            keep = (size_t)(eq - p) + 1;
        if (n + keep + 4 >= cap)
            break;
        memcpy(out + n, p, keep);
        n += keep;
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
        json_escape(epath, sizeof epath, r->path);
        json_escape(equery, sizeof equery, query);
        char ens[200];
        json_escape(escen, sizeof escen, r->scenario ? r->scenario : "");
        json_escape(ens, sizeof ens, r->ns ? r->ns : "");
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"%s\","
                     "\"path\":\"%s\",\"query\":\"%s\",\"status\":%d,\"latencyMs\":%.3f,"
                     "\"api\":\"%s\",\"namespace\":\"%s\",\"scenario\":\"%s\",\"stateFrom\":\"%s\","
                     "\"stateTo\":\"%s\"}\n",
                     now, r->method, epath, equery, r->status, r->latency_ms, r->api ? r->api : "",
                     ens, escen, r->state_from ? r->state_from : "",
                     r->state_to ? r->state_to : "");
    } else {
        char state[160] = "";
        if (r->state_from)
            snprintf(state, sizeof state, " state=%.64s%s%.64s", r->state_from,
                     r->state_to ? "->" : "", r->state_to ? r->state_to : "");
        char squery[700], ns[200], scen[200];
        text_escape(path, sizeof path, r->path, 1);
        text_escape(squery, sizeof squery, query, 1);
        text_escape(ns, sizeof ns, r->ns ? r->ns : "-", 1);
        text_escape(scen, sizeof scen, r->scenario ? r->scenario : "-", 1);
        n = snprintf(line, sizeof line, "%s info %s %s%s%s %d %.3fms api=%s ns=%s scenario=%s%s\n",
                     now, r->method, path, squery[0] ? "?" : "", squery, r->status, r->latency_ms,
                     r->api ? r->api : "-", ns, scen, state);
    }
    if (n > 0)
        write_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

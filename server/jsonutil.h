/*
 * jsonutil: small helpers shared by every module. A growable byte buffer,
 * typed look-ups into cJSON objects, Base64 and hex through nettle, and the
 * rendering of a cJSON tree to a malloc'd string. Nothing here knows about
 * HTTP or either emulated API.
 */
#ifndef AUTHMOCK_JSONUTIL_H
#define AUTHMOCK_JSONUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Makes room for n more bytes (and the NUL that always follows). */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

/* The element of values[0..n) equal to s (ignoring ASCII case when nocase), or NULL. */
const char *str_find(const char *const *values, size_t n, const char *s, int nocase);
/* Reads an enum value as System.Text.Json's JsonStringEnumConverter does
 * (integers allowed, its default): a declared name in any case, an integer (a
 * JSON number or a string of digits) and, for a [Flags] enum, names joined by
 * commas. names[i] is the name of value i. Writes the canonical text into out:
 * the declared name, or the digits of a value no name has (the converter
 * accepts those too, unless `defined_only`). Returns 0, or -1 when the value
 * cannot be converted. */
int json_enum_read(const cJSON *item, const char *const *names, size_t n, int flags,
                   int defined_only, char *out, size_t cap);
/* The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. */
size_t json_utf8_len(const unsigned char *p, size_t left);
/* How text_escape_line keeps `s` on one line of UTF-8:
 * TEXT_LINE: a control character, DEL or byte of invalid UTF-8 is \xXX;
 * TEXT_WORD: those and a space are %XX (as in a URL), so fields stay apart;
 * TEXT_JSON: the inside of a JSON string: '"' and '\\' escaped, control
 * characters \u00XX, a byte of invalid UTF-8 \ufffd. */
enum text_escape { TEXT_LINE, TEXT_WORD, TEXT_JSON };
/* Copies `s` into out[cap] escaped as `how` says. Cut to fit (never inside a
 * sequence or an escape); returns the length. */
size_t text_escape_line(char *out, size_t cap, const char *s, enum text_escape how);
/* Returns the string member `key`, or NULL when it is absent, null or not a string. */
const char *json_str(const cJSON *obj, const char *key);
/* Adds `key: value`, or `key: null` when value is NULL. Returns the new item or NULL. */
cJSON *json_add_str_or_null(cJSON *obj, const char *key, const char *value);
/* Deep-merges `src` into `dst`: objects merge key by key, anything else replaces. */
int json_merge(cJSON *dst, const cJSON *src);
/* Renders unformatted JSON; the caller frees the result with free(). */
char *json_render(const cJSON *item, size_t *len);
/* Append the JSON text of an item, a string (NULL: null) or a number to b,
 * as json_render writes them: for building JSON text without a cJSON tree. */
int json_append(struct buf *b, const cJSON *item);
int json_append_string(struct buf *b, const char *s);
int json_append_number(struct buf *b, double d);
/* Parses exactly `len` bytes; on failure returns NULL and sets *err_offset. */
cJSON *json_parse(const char *data, size_t len, size_t *err_offset);
/* As strict as System.Text.Json: UTF-8 only, control characters escaped,
 * nesting up to JSON_MAX_DEPTH. json_parse_why also says what was wrong. */
#define JSON_MAX_DEPTH 64
enum json_error {
    JSON_OK,
    JSON_ERROR_SYNTAX,
    JSON_ERROR_UTF8,
    JSON_ERROR_CONTROL,
    JSON_ERROR_DEPTH,
};
cJSON *json_parse_why(const char *data, size_t len, size_t *err_offset, enum json_error *why);
/* "is not valid JSON", "is nested deeper than the maximum depth of 64"... */
const char *json_error_text(enum json_error why);
/* The problem line for a file that json_parse_why refused: "not valid JSON",
 * with the reason when it is more than syntax (written into buf). */
const char *json_file_error(enum json_error why, char *buf, size_t cap);

/* Standard Base64 (RFC 4648 §4). Decoding fails on anything but canonical input. */
char *b64_encode(const void *data, size_t len);
int b64_decode(const char *text, char **out, size_t *out_len);
/* Base64 without padding, URL alphabet: for opaque tokens. */
char *b64url_encode(const void *data, size_t len);
void hex_encode(const unsigned char *data, size_t len, char *out);

/* Writes PATH.KEY into dst as snprintf(dst, cap, "%.*s.%.*s", ...) would,
 * PATH cut to path_max bytes and KEY to key_max (SIZE_MAX: uncut): the JSON
 * paths of validation messages, built for every member of every scenario
 * file at start-up, where snprintf cost a sixth of the parse. */
void json_path_join(char *dst, size_t cap, const char *path, size_t path_max, const char *key,
                    size_t key_max);
/* Writes PATH[INDEX] into dst as snprintf(dst, cap, "%s[%zu]", ...) would. */
void json_path_index(char *dst, size_t cap, const char *path, size_t index);

/* Reads a whole file into a NUL-terminated malloc'd buffer (length in *len).
 * Returns NULL with errno set when it cannot be read. */
char *file_read(const char *path, size_t *len);
/* file_read for a path dir_walk_json gave: a regular file, read in one call
 * fewer (pipes and terminals give short reads before their end; a regular
 * file does not). */
char *file_read_regular(const char *path, size_t *len);

/* Calls fn for every *.json file under `dir` (recursively, in name order,
 * skipping dot-files), with `problem` NULL. An entry that cannot be walked is
 * given in its place, with `problem` the whole message: a *.json name that is no
 * readable file (a dangling link), a subdirectory that cannot be read, a
 * directory that leads back to one it is in (a link loop; not entered).
 * Returns -1 with errno set when `dir` itself cannot be read. */
typedef void (*dir_walk_fn)(const char *path, const char *problem, void *cls);
int dir_walk_json(const char *dir, dir_walk_fn fn, void *cls);

/* Lower-case hex SHA-1 of `data` into out[41]. */
void sha1_hex(const void *data, size_t len, char out[41]);

/* A list of validation problems, one "file: json-path: message" line each. */
struct problems {
    struct buf text;
    int count;
};
void problems_add(struct problems *p, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Calls fn with each "file: json-path: message" line, without its newline. */
void problems_each(const struct problems *p, void (*fn)(const char *line, void *cls), void *cls);
/* Appends every problem of `src` to `dst`. */
void problems_merge(struct problems *dst, const struct problems *src);
void problems_free(struct problems *p);
#endif

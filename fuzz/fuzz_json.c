/*
 * fuzz_json: the strict JSON reader every body and file goes through
 * (json_parse_why), the renderer of every reply (json_render), and two small
 * text parsers requests reach: canonical Base64 and RFC 3339 instants. Each
 * is held to what its header promises:
 *   - a document accepted renders to text that is accepted again and renders
 *     the same; the renderer writes what cJSON_PrintUnformatted writes;
 *   - a refused document has a reason and an offset within it;
 *   - Base64 that decodes is the canonical encoding of what it decodes to;
 *   - an instant that parses is one that clock_format writes back and that
 *     parses to the same second.
 */
#include "fuzz_app.h"

#include "clock.h"
#include "jsonutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_json: %s\n  %s\n  %s\n", what, a ? a : "(null)", b ? b : "(null)");
    abort();
}

static void check_json(const char *data, size_t size)
{
    size_t off = 0;
    enum json_error why;
    cJSON *doc = json_parse_why(data, size, &off, &why);
    if (!doc) {
        if (why == JSON_OK || off > size || !json_error_text(why))
            fail("a refused document without a reason or within it", "", "");
        return;
    }
    size_t len;
    char *text = json_render(doc, &len);
    if (!text)
        fail("an accepted document does not render", "", "");
    char *theirs = cJSON_PrintUnformatted(doc);
    if (theirs && strcmp(theirs, text) != 0)
        fail("json_render differs from cJSON_PrintUnformatted", text, theirs);
    cJSON *again = json_parse_why(text, len, &off, &why);
    if (!again)
        fail("a rendered document is refused", text, json_error_text(why));
    size_t len2;
    char *text2 = json_render(again, &len2);
    if (!text2 || len2 != len || memcmp(text, text2, len) != 0)
        fail("rendering is not stable", text, text2);
    free(text2);
    cJSON_Delete(again);
    free(theirs);
    free(text);
    cJSON_Delete(doc);
}

static void check_base64(const char *text)
{
    char *bytes;
    size_t n;
    if (b64_decode(text, &bytes, &n))
        return;
    char *back = b64_encode(bytes, n);
    if (!back || strcmp(back, text) != 0)
        fail("Base64 that decodes is not canonical", text, back);
    free(back);
    free(bytes);
}

static void check_instant(const char *text)
{
    double t;
    if (clock_parse(text, &t))
        return;
    if (!isfinite(t) || t < 0 || t > 253402300799.999)
        fail("an instant outside 1970-9999 parses", text, "");
    char out[32];
    clock_format(t, out);
    double back;
    if (clock_parse(out, &back) || fabs(back - t) >= 0.001)
        fail("a formatted instant does not parse back", text, out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_json((const char *)data, size);
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    check_base64(text);
    check_instant(text);
    free(text);
    return 0;
}

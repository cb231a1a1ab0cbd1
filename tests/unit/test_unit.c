/*
 * Unit tests of the pure modules and the scenario engine, run without a
 * server. Each test is a function registered in the table at the bottom;
 * the harness prints TAP.
 */
#include "clock.h"
#include "config.h"
#include "jsonutil.h"
#include "log.h"
#include "rng.h"
#include "scenario.h"
#include "state.h"
#include "store.h"
#include "totp.h"
#include "onlyoffice.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures_in_test;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  # %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                    \
            failures_in_test++;                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            printf("  # %s:%d: '%s' != '%s'\n", __FILE__, __LINE__, a_ ? a_ : "(null)",            \
                   b_ ? b_ : "(null)");                                                            \
            failures_in_test++;                                                                    \
        }                                                                                          \
    } while (0)

static const struct scenario_api test_apis[] = {{"mesh", NULL, NULL}, {"onlyoffice", NULL, NULL}};

static struct scenario *parse(const char *json, struct problems *p)
{
    return scenario_parse("test.json", json, strlen(json), test_apis, 2, p);
}

/* ---- encodings -------------------------------------------------------- */

static void test_base64(void)
{
    char *e = b64_encode("pass123", 7);
    CHECK_STR(e, "cGFzczEyMw==");
    free(e);
    char *d;
    size_t n;
    CHECK(b64_decode("b2tAZXhhbXBsZS5jb20=", &d, &n) == 0);
    CHECK(n == 14 && memcmp(d, "ok@example.com", 14) == 0);
    free(d);
    CHECK(b64_decode("not base64!", &d, &n) != 0);
    CHECK(b64_decode("abc", &d, &n) != 0);
    char *u = b64url_encode("\xfb\xff", 2);
    CHECK_STR(u, "-_8");
    free(u);
}

static void test_sha1_hex(void)
{
    char h[41];
    sha1_hex("abc", 3, h);
    CHECK_STR(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
}

static void test_clock(void)
{
    double t;
    char out[32];
    CHECK(clock_parse("2030-01-01T00:00:00Z", &t) == 0 && t == 1893456000.0);
    CHECK(clock_parse("2030-01-01T02:00:00+02:00", &t) == 0 && t == 1893456000.0);
    CHECK(clock_parse("2030-01-01T00:00:00.250Z", &t) == 0 && t == 1893456000.25);
    CHECK(clock_parse("2030-01-01", &t) != 0);
    CHECK(clock_parse("2030-13-01T00:00:00Z", &t) != 0);
    CHECK(clock_parse("2030-01-01T00:00:00Zjunk", &t) != 0);
    clock_format(1893456000.25, out);
    CHECK_STR(out, "2030-01-01T00:00:00.250Z");
    clock_format(1893455999.9999996, out);
    CHECK_STR(out, "2030-01-01T00:00:00.000Z");
    clock_set_offset(0);
    double before = clock_now();
    clock_set_offset(3600);
    CHECK(clock_now() - before >= 3600 && clock_now() - before < 3601);
    clock_set_offset(0);
}

static void test_mask_query(void)
{
    char out[256];
    log_mask_query("userId=u1&password=pass123&code=123456&x=1", out, sizeof out);
    CHECK_STR(out, "userId=u1&password=***&code=***&x=1");
    log_mask_query("", out, sizeof out);
    CHECK_STR(out, "");
    CHECK(log_is_secret_name("refreshToken", 12));
    CHECK(log_is_secret_name("X-Client-Secret", 15));
    CHECK(!log_is_secret_name("userId", 6));
}

static void test_rng_seeded(void)
{
    char a[37], b[37], c[7], d[7];
    rng_init(1, 42);
    rng_uuid(a);
    rng_digits(c, 6);
    rng_init(1, 42);
    rng_uuid(b);
    rng_digits(d, 6);
    CHECK_STR(a, b);
    CHECK_STR(c, d);
    CHECK(a[14] == '4' && strlen(a) == 36);
    CHECK(strlen(c) == 6 && c[0] != '0');
    char u1[37], u2[37];
    uuid_from_name("x", u1);
    uuid_from_name("x", u2);
    CHECK_STR(u1, u2);
    rng_init(0, 0);
}

static void test_config(void)
{
    struct config cfg;
    enum config_mode mode;
    int first;
    char err[256];
    char *argv1[] = {"authmock", "--port", "0", "--profile", "server", "--seed", "7", NULL};
    CHECK(config_parse(7, argv1, &cfg, &mode, &first, err, sizeof err) == 0);
    CHECK(mode == CONFIG_SERVE && cfg.port == 0 && cfg.profile == PROFILE_SERVER && cfg.seeded &&
          cfg.seed == 7);
    char *argv2[] = {"authmock", "--port", "70000", NULL};
    CHECK(config_parse(3, argv2, &cfg, &mode, &first, err, sizeof err) != 0 &&
          strstr(err, "--port"));
    char *argv3[] = {"authmock", "--nope", NULL};
    CHECK(config_parse(2, argv3, &cfg, &mode, &first, err, sizeof err) != 0);
    char *argv4[] = {"authmock", "check", "a", "b", NULL};
    CHECK(config_parse(4, argv4, &cfg, &mode, &first, err, sizeof err) == 0 &&
          mode == CONFIG_CHECK && first == 2);
    setenv("AUTHMOCK_PORT", "9999", 1);
    char *argv5[] = {"authmock", NULL};
    CHECK(config_parse(1, argv5, &cfg, &mode, &first, err, sizeof err) == 0 && cfg.port == 9999);
    char *argv6[] = {"authmock", "--port", "1234", NULL};
    CHECK(config_parse(3, argv6, &cfg, &mode, &first, err, sizeof err) == 0 && cfg.port == 1234);
    setenv("AUTHMOCK_PROFILE", "bogus", 1);
    CHECK(config_parse(1, argv5, &cfg, &mode, &first, err, sizeof err) != 0 &&
          strstr(err, "AUTHMOCK_PROFILE"));
    unsetenv("AUTHMOCK_PORT");
    unsetenv("AUTHMOCK_PROFILE");
}

static void test_totp(void)
{
    /* RFC 6238 appendix B, SHA-1 key "12345678901234567890", last 6 digits. */
    static const struct {
        double t;
        const char *code;
    } vectors[] = {{59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
                   {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}};
    const char *key = "12345678901234567890";
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char code[7];
        totp_code(key, 20, (uint64_t)(vectors[i].t / 30), code);
        CHECK_STR(code, vectors[i].code);
        CHECK(totp_check(key, 20, vectors[i].t, 0, vectors[i].code));
    }
    /* ±10 steps of drift: 300 s either way is accepted, 330 s is not. */
    char code[7];
    totp_code(key, 20, (uint64_t)(1234567890 / 30), code);
    CHECK(totp_check(key, 20, 1234567890 + 300, 10, code));
    CHECK(totp_check(key, 20, 1234567890 - 300, 10, code));
    CHECK(!totp_check(key, 20, 1234567890 + 330, 10, code));
    CHECK(!totp_check(key, 20, 1234567890, 10, "12345"));
    CHECK(!totp_check(key, 20, 1234567890, 10, NULL));
}

static void test_base32(void)
{
    char out[64];
    base32_encode("abcdefghij", 10, out);
    CHECK_STR(out, "MFRGGZDFMZTWQ2LK");
    base32_encode("klmnopqrst", 10, out);
    CHECK_STR(out, "NNWG23TPOBYXE43U");
    base32_encode("f", 1, out);
    CHECK_STR(out, "MY");
    base32_encode("foobar", 6, out);
    CHECK_STR(out, "MZXW6YTBOI");
    base32_encode("", 0, out);
    CHECK_STR(out, "");
}

static void test_phone_noise(void)
{
    char out[64];
    onlyoffice_phone_noise("15551234567", out, sizeof out);
    CHECK_STR(out, "+1555***4567");
    onlyoffice_phone_noise("12345678", out, sizeof out);
    CHECK_STR(out, "+12345678");
    onlyoffice_phone_noise("1234567", out, sizeof out);
    CHECK_STR(out, "1234567");
    onlyoffice_phone_noise("491701234567890", out, sizeof out);
    CHECK_STR(out, "+4917*******7890");
}

/* ---- scenario parsing ------------------------------------------------- */

static void test_parse_valid(void)
{
    struct problems p = {0};
    struct scenario *s = parse("{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\","
                               "\"bind\":{\"username\":\"u\"},"
                               "\"states\":{\"s\":[{\"when\":{\"x\":{\"regex\":\"^a+$\"}},"
                               "\"reply\":{},\"next\":\"t\"}],\"t\":[{\"reply\":{}}]}}",
                               &p);
    CHECK(s != NULL);
    CHECK(p.count == 0);
    if (p.count)
        printf("  # %s", p.text.data);
    CHECK_STR(scenario_name(s), "a");
    scenario_free(s);
    problems_free(&p);
}

static void expect_problem(const char *json, const char *needle)
{
    struct problems p = {0};
    struct scenario *s = parse(json, &p);
    CHECK(s == NULL);
    if (!p.text.data || !strstr(p.text.data, needle)) {
        printf("  # expected a problem containing '%s', got: %s\n", needle,
               p.text.data ? p.text.data : "(none)");
        failures_in_test++;
    }
    scenario_free(s);
    problems_free(&p);
}

static void test_parse_errors(void)
{
    expect_problem("{", "test.json: $ (byte 0): not valid JSON");
    expect_problem("[]", "test.json: $: a scenario must be a JSON object");
    expect_problem("{\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{}}]}}",
                   "test.json: $.name: is required");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"ftp\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{}}]}}",
        "$.api: is required: one of mesh, onlyoffice");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"x\",\"states\":{\"s\":[{\"reply\":{}}]}}",
        "$.initial: is required: the name of a state");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{},"
        "\"next\":\"nowhere\"}]}}",
        "test.json: $.states.s[0].next: must name a state of this scenario");
    expect_problem("{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{}]}}",
                   "$.states.s[0].reply: is required");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{},"
        "\"when\":{\"u\":{\"regex\":\"(\"}}}]}}",
        "$.states.s[0].when.u.regex: invalid regular expression");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{},"
        "\"when\":{\"u\":{\"like\":1}}}]}}",
        "$.states.s[0].when.u.like: unknown operator");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{},"
        "\"typo\":1}]}}",
        "$.states.s[0].typo: unknown key");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":"
        "{\"http\":99,\"fault\":\"explode\",\"delayMs\":-1}}]}}",
        "$.states.s[0].reply.fault: must be drop, truncate or malformed");
    expect_problem(
        "{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{}}]},"
        "\"limits\":[{\"max\":0}]}",
        "$.limits[0].counter: is required");
    expect_problem("{\"name\":\"a\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[]}}",
                   "$.states.s: must be a non-empty array of steps");
    expect_problem(
        "{\"name\":\"a b\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":{},"
        "\"when\":{\"counter\":{\"c\":{\"atLeast\":-1}}}}]}}",
        "$.states.s[0].when.counter.c.atLeast: must be a whole number");
}

/* ---- the engine ------------------------------------------------------- */

struct fixture {
    struct store *store;
    struct state *state;
    struct scenario_engine *engine;
};

static int engine_setup(struct fixture *fx, const char *const *docs, size_t n)
{
    char err[256];
    struct problems p = {0};
    if (store_open(":memory:", &fx->store, err, sizeof err)) {
        printf("  # %s\n", err);
        return -1;
    }
    struct scenario_set *set = scenario_set_new();
    for (size_t i = 0; i < n; i++) {
        struct scenario *s = parse(docs[i], &p);
        if (!s) {
            printf("  # %s", p.text.data);
            problems_free(&p);
            scenario_set_release(set);
            return -1;
        }
        scenario_set_add(set, s);
    }
    struct state_limits lim = {1000, 1000};
    if (state_open(&fx->state, &lim, NULL, err, sizeof err)) {
        printf("  # %s\n", err);
        scenario_set_release(set);
        return -1;
    }
    fx->engine = scenario_engine_new(fx->store, fx->state, set);
    return 0;
}

static void engine_teardown(struct fixture *fx)
{
    scenario_engine_free(fx->engine);
    state_close(fx->state);
    store_close(fx->store);
}

/* Runs one step with facts given as JSON and returns reply.content.status (static copy). */
static const char *step(struct fixture *fx, const char *identity, const char *facts_json,
                        int *rc_out, long *retry_after)
{
    static _Thread_local char result[128];
    cJSON *facts = cJSON_Parse(facts_json);
    struct scenario_request req = {"mesh", "", identity, NULL, facts, NULL, 0};
    struct scenario_outcome out;
    int rc = scenario_step(fx->engine, &req, &out);
    if (rc_out)
        *rc_out = rc;
    if (retry_after)
        *retry_after = out.retry_after;
    const char *s = rc == 0 ? json_str(out.reply, "r") : "(none)";
    snprintf(result, sizeof result, "%s", s ? s : "(null)");
    scenario_outcome_release(&out);
    cJSON_Delete(facts);
    return result;
}

static const char *const flow_doc =
    "{\"name\":\"flow\",\"api\":\"mesh\",\"bind\":{\"u\":\"flow\"},\"initial\":\"pw\","
    "\"states\":{"
    "\"pw\":[{\"when\":{\"p\":\"ok\"},\"reply\":{\"r\":\"mfa\"},\"next\":\"code\"},"
    "        {\"reply\":{\"r\":\"failed\"},\"count\":\"failures\"}],"
    "\"code\":[{\"when\":{\"stateAge\":{\"atLeast\":300}},\"reply\":{\"r\":\"expired\"},\"next\":"
    "\"pw\"},"
    "          {\"when\":{\"c\":\"1\"},\"reply\":{\"r\":\"ok\"},\"next\":\"pw\"},"
    "          {\"when\":{\"counter\":{\"wrong\":{\"atLeast\":2}}},\"reply\":{\"r\":\"restart\"},"
    "\"next\":\"pw\"},"
    "          {\"reply\":{\"r\":\"wrong\"},\"count\":\"wrong\"}]},"
    "\"limits\":[{\"counter\":\"failures\",\"max\":3,\"windowSeconds\":60,\"blockSeconds\":30,"
    "\"reply\":{\"r\":\"blocked\"}}]}";

static const char *const fallback_doc =
    "{\"name\":\"zz-fallback\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":[{\"reply\":"
    "{\"r\":\"fallback\"}}]}}";

static void test_engine_transitions(void)
{
    struct fixture fx;
    const char *docs[] = {flow_doc, fallback_doc};
    if (engine_setup(&fx, docs, 2)) {
        failures_in_test++;
        return;
    }
    clock_set_offset(0);
    CHECK_STR(step(&fx, "a", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, NULL), "mfa");
    /* No "u": the identity keeps its scenario. */
    CHECK_STR(step(&fx, "a", "{\"c\":\"9\"}", NULL, NULL), "wrong");
    CHECK_STR(step(&fx, "a", "{\"c\":\"9\"}", NULL, NULL), "wrong");
    CHECK_STR(step(&fx, "a", "{\"c\":\"9\"}", NULL, NULL), "restart");
    CHECK_STR(step(&fx, "a", "{\"c\":\"1\"}", NULL, NULL), "failed");
    /* Another user is bound to the fallback. */
    CHECK_STR(step(&fx, "b", "{\"u\":\"other\"}", NULL, NULL), "fallback");
    /* A contradicting binding moves the identity to the fallback. */
    CHECK_STR(step(&fx, "a", "{\"u\":\"other\"}", NULL, NULL), "fallback");
    CHECK_STR(step(&fx, "a", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, NULL), "mfa");
    CHECK_STR(step(&fx, "a", "{\"c\":\"1\"}", NULL, NULL), "ok");
    engine_teardown(&fx);
}

static void test_engine_expiry_and_limits(void)
{
    struct fixture fx;
    const char *docs[] = {flow_doc};
    if (engine_setup(&fx, docs, 1)) {
        failures_in_test++;
        return;
    }
    clock_set_offset(0);
    CHECK_STR(step(&fx, "e", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, NULL), "mfa");
    clock_set_offset(299);
    CHECK_STR(step(&fx, "e", "{\"c\":\"9\"}", NULL, NULL), "wrong");
    clock_set_offset(300);
    CHECK_STR(step(&fx, "e", "{\"c\":\"1\"}", NULL, NULL), "expired");

    long retry = 0;
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\"}", NULL, NULL), "failed");
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\"}", NULL, NULL), "failed");
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\"}", NULL, NULL), "failed");
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, &retry), "blocked");
    CHECK(retry == 30);
    clock_set_offset(300 + 29);
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, &retry), "blocked");
    CHECK(retry == 1);
    clock_set_offset(300 + 30);
    CHECK_STR(step(&fx, "l", "{\"u\":\"flow\",\"p\":\"ok\"}", NULL, NULL), "mfa");
    clock_set_offset(0);
    engine_teardown(&fx);
}

static void test_engine_block_on_next(void)
{
    struct fixture fx;
    const char *docs[] = {"{\"name\":\"bf\",\"api\":\"mesh\",\"initial\":\"s\",\"states\":{\"s\":["
                          "{\"when\":{\"p\":\"ok\"},\"reply\":{\"r\":\"ok\"}},"
                          "{\"reply\":{\"r\":\"bad\"},\"count\":\"f\"}]},\"limits\":[{\"counter\":"
                          "\"f\",\"max\":2,\"windowSeconds\":60,\"blockSeconds\":60,\"blockOn\":"
                          "\"next\",\"reply\":{\"r\":\"blocked\"}}]}"};
    if (engine_setup(&fx, docs, 1)) {
        failures_in_test++;
        return;
    }
    long retry;
    clock_set_offset(0);
    CHECK_STR(step(&fx, "b", "{}", NULL, NULL), "bad");
    CHECK_STR(step(&fx, "b", "{}", NULL, NULL), "bad");
    clock_set_offset(30);
    /* The block starts with this request, not with the second failure. */
    CHECK_STR(step(&fx, "b", "{\"p\":\"ok\"}", NULL, &retry), "blocked");
    CHECK(retry == 60);
    clock_set_offset(89);
    CHECK_STR(step(&fx, "b", "{\"p\":\"ok\"}", NULL, NULL), "blocked");
    clock_set_offset(90);
    CHECK_STR(step(&fx, "b", "{\"p\":\"ok\"}", NULL, NULL), "ok");
    clock_set_offset(0);
    engine_teardown(&fx);
}

static void test_engine_unbound_and_nostep(void)
{
    struct fixture fx;
    const char *docs[] = {flow_doc,
                          "{\"name\":\"partial\",\"api\":\"mesh\",\"bind\":{\"u\":\"p\"},"
                          "\"initial\":\"s\",\"states\":{\"s\":[{\"when\":{\"x\":1},\"reply\":"
                          "{\"r\":\"x\"}}]}}"};
    if (engine_setup(&fx, docs, 2)) {
        failures_in_test++;
        return;
    }
    int rc;
    step(&fx, "n", "{\"u\":\"nobody\"}", &rc, NULL);
    CHECK(rc == SCENARIO_UNBOUND);
    step(&fx, "n", "{\"u\":\"p\"}", &rc, NULL);
    CHECK(rc == SCENARIO_NO_STEP);
    CHECK_STR(step(&fx, "n", "{\"u\":\"p\",\"x\":1}", &rc, NULL), "x");
    engine_teardown(&fx);
}

static void test_expand(void)
{
    cJSON *vars = cJSON_Parse("{\"id\":\"42\",\"n\":\"x\"}");
    cJSON *tree =
        cJSON_Parse("{\"a\":\"id=${id}, n=${n}, keep ${missing} and ${\",\"b\":[\"${id}\"]}");
    scenario_expand(tree, vars);
    CHECK_STR(json_str(tree, "a"), "id=42, n=x, keep ${missing} and ${");
    CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(tree, "b"), 0)->valuestring, "42");
    cJSON_Delete(tree);
    cJSON_Delete(vars);
}

/* Many threads stepping one identity: every request counts exactly once. */
struct race {
    struct fixture *fx;
    int wins;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 50; i++)
        if (strcmp(step(r->fx, "race", "{\"u\":\"race\"}", NULL, NULL), "first") == 0)
            __atomic_fetch_add(&r->wins, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_engine_atomic(void)
{
    /* step() formats into a static buffer; give each thread its own copy by
     * comparing inside the helper before the next call on that thread. */
    struct fixture fx;
    const char *docs[] = {"{\"name\":\"race\",\"api\":\"mesh\",\"bind\":{\"u\":\"race\"},"
                          "\"initial\":\"a\",\"states\":{\"a\":[{\"reply\":{\"r\":\"first\"},"
                          "\"next\":\"b\"}],\"b\":[{\"reply\":{\"r\":\"later\"}}]}}"};
    if (engine_setup(&fx, docs, 1)) {
        failures_in_test++;
        return;
    }
    struct race r = {&fx, 0};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, race_main, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(r.wins == 1);
    engine_teardown(&fx);
}

/* json_render must write exactly what cJSON_PrintUnformatted writes. */
static void test_json_render(void)
{
    static const char *const docs[] = {
        "{\"a\":1,\"b\":-2,\"c\":0,\"d\":1000.5,\"e\":0.1,\"f\":1e300,\"g\":-1e-7}",
        "{\"big\":12345678901234567890,\"int_max\":2147483647,\"past\":2147483648,"
        "\"min\":-2147483648,\"pi\":3.141592653589793,\"third\":0.3333333333333333,\"p15\":9."
        "87654321098765}",
        "[\"quote \\\" back \\\\ nl \\n tab \\t cr \\r bs \\b ff \\f ctl \\u0001 "
        "\\u001f é ✓\",true,false,null,[],{}]",
        "{\"nested\":{\"list\":[1,[2,[3]],{\"k\":\"v\"}]},\"\\u0007key\":\"\"}",
    };
    /* Numbers the fast paths take or must refuse: decimals of every length up
     * to past six, signs, the 1e-4 and 1e15 edges, beyond int, and values that
     * are not the double nearest their short decimal (0.1 + 0.2). */
    static const double edge[] = {1500.25,
                                  -1500.25,
                                  0.07,
                                  0.1 + 0.2,
                                  1.005,
                                  2.675,
                                  1e-4,
                                  -1e-4,
                                  9.99e-5,
                                  0.00015,
                                  1e15,
                                  1e15 - 1,
                                  -1e15,
                                  3e9,
                                  -3e9,
                                  123456.789,
                                  0.1234567,
                                  -0.5,
                                  99999999999999.9,
                                  4503599627370497.0,
                                  1e300,
                                  2.5e-320,
                                  -0.0};
    cJSON *nums = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        cJSON_AddItemToArray(nums, cJSON_CreateNumber(edge[i]));
    unsigned long long x = 88172645463325252ULL;
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double scale[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 3};
        double v = (double)(long long)(x % 2000000000000ULL) / scale[(x >> 40) % 9];
        cJSON_AddItemToArray(nums, cJSON_CreateNumber((x >> 50) & 1 ? -v : v));
    }
    char *want_nums = cJSON_PrintUnformatted(nums);
    char *got_nums = json_render(nums, NULL);
    CHECK(want_nums && got_nums && strcmp(want_nums, got_nums) == 0);
    free(want_nums);
    free(got_nums);
    cJSON_Delete(nums);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cJSON *doc = cJSON_Parse(docs[i]);
        CHECK(doc != NULL);
        cJSON_AddNumberToObject(doc, "added", 42.0);
        cJSON_AddItemToObject(doc, "nan", cJSON_CreateNumber(NAN));
        char *want = cJSON_PrintUnformatted(doc);
        size_t len = 0;
        char *got = json_render(doc, &len);
        CHECK_STR(got, want);
        CHECK(got && len == strlen(got));
        free(want);
        free(got);
        cJSON_Delete(doc);
    }
}

struct test {
    const char *name;
    void (*fn)(void);
};

static const struct test tests[] = {
    {"base64 encode, decode and reject", test_base64},
    {"sha1 hex", test_sha1_hex},
    {"clock parse, format and offset", test_clock},
    {"query masking in logs", test_mask_query},
    {"seeded rng is deterministic", test_rng_seeded},
    {"config from argv and environment", test_config},
    {"scenario: a valid file parses", test_parse_valid},
    {"scenario: every kind of problem names file and json-path", test_parse_errors},
    {"engine: bindings, transitions, counters", test_engine_transitions},
    {"engine: expiry and lockout on the mock clock", test_engine_expiry_and_limits},
    {"engine: unbound request and missing step", test_engine_unbound_and_nostep},
    {"engine: a blockOn next limit blocks from the next request", test_engine_block_on_next},
    {"engine: ${var} expansion", test_expand},
    {"engine: concurrent steps transition once", test_engine_atomic},
    {"totp: RFC 6238 vectors and drift", test_totp},
    {"base32: RFC 4648 vectors and tfaKey", test_base32},
    {"onlyoffice: phoneNoise", test_phone_noise},
    {"json_render writes what cJSON_PrintUnformatted writes", test_json_render},
};

int main(void)
{
    size_t n = sizeof tests / sizeof tests[0];
    int failed = 0;
    log_init(LOG_TEXT, 1);
    printf("TAP version 13\n1..%zu\n", n);
    for (size_t i = 0; i < n; i++) {
        failures_in_test = 0;
        tests[i].fn();
        printf("%s %zu - %s\n", failures_in_test ? "not ok" : "ok", i + 1, tests[i].name);
        failed += failures_in_test != 0;
    }
    return failed ? 1 : 0;
}

/*
 * fuzz_app: one authmock set up in-process for the fuzz targets, as main.c
 * sets up a server on an in-memory database but with no listener, and the
 * requests the targets send it through the router, as http.c would.
 *
 * A request text reads like HTTP on the wire, several of them separated by a
 * line "~~~":
 *
 *     POST /api/v1/authenticate?userId=u1
 *     X-Client-Id: test-client-id
 *     Content-Type: application/json
 *
 *     {"type": "robinhood", "username": "ok@example.com", "password": "pass123"}
 *     ~~~
 *     POST /api/v1/token/refresh
 *     ...
 *
 * The first line is the method and the target (path and query, percent-encoded
 * as on the wire); header lines follow up to an empty line; the rest is the
 * body, exactly as many bytes as there are. Before a request is decoded,
 * ${name} is replaced with the last value of a JSON member `name` in an earlier
 * answer (${name?} with the part after its '?'), and ${totp:SECRET[:SECONDS]}
 * with the TOTP code of SECRET on the mock clock; cookies an answer set go
 * with the following requests that have no Cookie header.
 */
#ifndef AUTHMOCK_FUZZ_APP_H
#define AUTHMOCK_FUZZ_APP_H

#include <stddef.h>
#include <stdint.h>

struct app;
struct scenario_set;

#define FUZZ_SEPARATOR    "\n~~~\n"
#define FUZZ_MAX_REQUESTS 16

/* The app, made on the first call: the bundled fixtures, the bundled
 * scenarios and those of the fault tests, seeded ids. Exits the process
 * when it cannot be made. */
struct app *fuzz_app(void);

/* Puts the app back as it was after start: state, journal, the mock clock
 * (at a fixed instant), the random stream, and the scenarios when a request
 * changed them. */
void fuzz_app_reset(struct app *app);

/* Serves `set` (taken over) from now on, resets included. */
void fuzz_app_use_scenarios(struct app *app, struct scenario_set *set);
/* A new set holding every scenario the app started with. */
struct scenario_set *fuzz_app_base_scenarios(void);

/* Sends the requests of `data` in turn (at most FUZZ_MAX_REQUESTS). */
void fuzz_app_send(struct app *app, const char *data, size_t len);

/* The length of `data` up to its first FUZZ_SEPARATOR (all of it when there
 * is none); *rest is what follows the separator, or NULL. */
size_t fuzz_split(const char *data, size_t len, const char **rest, size_t *rest_len);

/* libFuzzer's entry points, which every target defines; replay.c calls them
 * where there is no libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

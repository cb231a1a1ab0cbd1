/*
 * fuzz_request: request handling of both emulated APIs and the admin API,
 * in-process. An input is up to FUZZ_MAX_REQUESTS requests as text (see
 * fuzz_app.h): method, path and query, headers (the client's credentials,
 * Authorization, cookies, the namespace and scenario headers...) and body,
 * answered in turn from the state the app started with.
 */
#include "fuzz_app.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_app();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct app *app = fuzz_app();
    fuzz_app_reset(app);
    fuzz_app_send(app, (const char *)data, size);
    return 0;
}

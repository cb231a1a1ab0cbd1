/*
 * The baseline for scripts/bench: the smallest libmicrohttpd server with the
 * same daemon options as authmock (epoll thread pool), answering every
 * request with a fixed JSON body after reading it. authmock's throughput is
 * reported as a fraction of this one's, measured in the same run.
 */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char body[] = "{\"content\":{\"status\":\"succeeded\"},\"status\":\"ok\"}";

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    if (!*con_cls) {
        *con_cls = c;
        return MHD_YES;
    }
    if (*size) {
        *size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

int main(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, 0, NULL,
                                            NULL, on_access, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                                            (unsigned int)(ncpu > 0 ? ncpu : 2), MHD_OPTION_END);
    if (!d)
        return 1;
    printf("listening on http://127.0.0.1:%d\n",
           MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    fflush(stdout);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    sigprocmask(SIG_BLOCK, &s, NULL);
    int sig;
    sigwait(&s, &sig);
    MHD_stop_daemon(d);
    return 0;
}

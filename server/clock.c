/*
 * clock: mock time = CLOCK_REALTIME + an offset kept as an atomic number of
 * microseconds, so readers on every thread need no lock.
 */
#include "clock.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic long long clock_offset_us;

/* Namespace offsets: a small open-addressing table behind a read-write lock.
 * Most requests have no namespace, or the table is empty, and skip it. */
#define NS_SLOTS 4096
static struct {
    char name[64];
    double offset;
} ns_table[NS_SLOTS];
static _Atomic int ns_count;
static pthread_rwlock_t ns_lock = PTHREAD_RWLOCK_INITIALIZER;

static size_t ns_slot(const char *ns)
{
    size_t h = 5381;
    for (const char *p = ns; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return h % NS_SLOTS;
}

/* The slot holding `ns`, or the empty slot where it would go; -1 when full. */
static long ns_find(const char *ns)
{
    size_t i = ns_slot(ns);
    for (size_t k = 0; k < NS_SLOTS; k++, i = (i + 1) % NS_SLOTS)
        if (ns_table[i].name[0] == '\0' || strcmp(ns_table[i].name, ns) == 0)
            return (long)i;
    return -1;
}

double clock_ns_offset(const char *ns)
{
    if (!ns || !*ns || atomic_load(&ns_count) == 0)
        return 0;
    double off = 0;
    pthread_rwlock_rdlock(&ns_lock);
    long i = ns_find(ns);
    if (i >= 0 && ns_table[i].name[0])
        off = ns_table[i].offset;
    pthread_rwlock_unlock(&ns_lock);
    return off;
}

double clock_now_ns(const char *ns)
{
    return clock_now() + clock_ns_offset(ns);
}

int clock_set_ns_offset(const char *ns, double seconds)
{
    if (!ns || !*ns || strlen(ns) >= sizeof ns_table[0].name)
        return -1;
    int err = 0;
    pthread_rwlock_wrlock(&ns_lock);
    long i = ns_find(ns);
    if (i < 0 || (!ns_table[i].name[0] && atomic_load(&ns_count) >= NS_SLOTS * 3 / 4)) {
        err = -1;
    } else {
        if (!ns_table[i].name[0]) {
            snprintf(ns_table[i].name, sizeof ns_table[i].name, "%s", ns);
            atomic_fetch_add(&ns_count, 1);
        }
        ns_table[i].offset = seconds;
    }
    pthread_rwlock_unlock(&ns_lock);
    return err;
}

void clock_reset_ns(const char *ns)
{
    pthread_rwlock_wrlock(&ns_lock);
    if (!ns) {
        /* Only the slots in use: clearing the whole table touched 300 KB and
         * took a millisecond of a reset. */
        for (size_t i = 0; i < NS_SLOTS && atomic_load(&ns_count) > 0; i++)
            if (ns_table[i].name[0]) {
                ns_table[i].name[0] = '\0';
                atomic_fetch_sub(&ns_count, 1);
            }
    } else if (atomic_load(&ns_count) > 0) {
        /* Open addressing: removing one entry means re-placing the rest. */
        long i = ns_find(ns);
        if (i >= 0 && ns_table[i].name[0]) {
            ns_table[i].name[0] = '\0';
            int n = 0;
            static __typeof__(ns_table) keep;
            memcpy(keep, ns_table, sizeof keep);
            memset(ns_table, 0, sizeof ns_table);
            for (size_t k = 0; k < NS_SLOTS; k++) {
                if (!keep[k].name[0])
                    continue;
                long j = ns_find(keep[k].name);
                ns_table[j] = keep[k];
                n++;
            }
            atomic_store(&ns_count, n);
        }
    }
    pthread_rwlock_unlock(&ns_lock);
}

double clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 +
           (double)atomic_load(&clock_offset_us) / 1e6;
}

double clock_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void clock_deadline(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    long long ns = (long long)((seconds > 0 ? seconds : 0) * 1e9) + ts->tv_nsec;
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

double clock_offset(void)
{
    return (double)atomic_load(&clock_offset_us) / 1e6;
}

void clock_set_offset(double seconds)
{
    atomic_store(&clock_offset_us, llround(seconds * 1e6));
}

void clock_format(double t, char out[32])
{
    /* Round to the millisecond first, so 23:59:59.9999996 prints as the next second. */
    long long ms_total = llround(t * 1000.0);
    time_t secs = (time_t)(ms_total / 1000);
    int ms = (int)(ms_total % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    snprintf(out, 32, "%.31s", tmp);
}

int clock_parse(const char *text, double *out)
{
    int y, mo, d, h, mi, s, n = 0;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 || n != 19)
        return -1;
    /* A real instant (RFC 3339): years 1970 to 9999, days that exist in
     * their month (2030-02-31 is refused, 2028-02-29 is taken), and every
     * field made of digits only (sscanf would take " 1" or "-1"). */
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    for (int i = 0; i < 19; i++)
        if (i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && (text[i] < '0' || text[i] > '9'))
            return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    const char *p = text + n;
    double frac = 0;
    if (*p == '.') {
        double scale = 0.1;
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9') {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    int tz = 0;
    if (*p == 'Z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int th, tm_;
        if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' || p[4] < '0' || p[4] > '9' ||
            p[5] < '0' || p[5] > '9' || sscanf(p + 1, "%2d:%2d", &th, &tm_) != 2 || th > 23 ||
            tm_ > 59)
            return -1;
        tz = (th * 60 + tm_) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    *out = (double)timegm(&tm) - tz + frac;
    return 0;
}

char *clock_save(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "offsetSeconds", clock_offset());
    cJSON *nss = cJSON_AddObjectToObject(o, "namespaces");
    pthread_rwlock_rdlock(&ns_lock);
    for (size_t i = 0; i < NS_SLOTS; i++)
        if (ns_table[i].name[0])
            cJSON_AddNumberToObject(nss, ns_table[i].name, ns_table[i].offset);
    pthread_rwlock_unlock(&ns_lock);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

void clock_load(const char *json)
{
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "offsetSeconds");
    if (cJSON_IsNumber(off))
        clock_set_offset(off->valuedouble);
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(o, "namespaces"))
    {
        if (cJSON_IsNumber(n))
            clock_set_ns_offset(n->string, n->valuedouble);
    }
    cJSON_Delete(o);
}

/*
 * heap: how it works. glibc's malloc takes the main thread's heap from brk
 * and each other thread's from a mapping of its own; M_TOP_PAD makes either
 * grow by that much more than it needs. Once the heap holding a fresh block
 * is that large, the mapping around the block (found in /proc/self/maps) is
 * advised MADV_HUGEPAGE, and its 2 MiB-aligned stretches fault in whole.
 */
#include "heap.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; older kernels refuse it, harmlessly */
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_HUGE 0 /* ASan's allocator is not glibc's heap */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_HUGE 0
#endif
#endif
#ifndef HEAP_HUGE
#define HEAP_HUGE 1
#endif

/* Any mallopt() turns off glibc's sliding mmap threshold (a block above it
 * gets a mapping of its own; freeing one raises the threshold to its size
 * and the trim threshold to twice that), so serving sets what it would have
 * slid to. Left at 128 KiB, every scenario upload mapped the set's fresh
 * 256 KiB indexes anew and paid their page faults: 10,000 uploads onto
 * 1,034 scenarios took 10.0 s instead of 3.1 s. */
enum {
    START_PAD = 4 << 20,    /* two huge pages */
    USUAL_PAD = 128 << 10,  /* glibc's default M_TOP_PAD */
    SERVING_MMAP = 1 << 20, /* blocks below this come from the heap */
    SERVING_TRIM = 2 << 20  /* free memory at a heap's top kept up to this */
};

static atomic_int starting;
/* This thread's heap has been advised (open_state also runs on the main thread). */
static _Thread_local int advised_here;

/* What was advised, so that serving can take the advice back. */
static pthread_mutex_t advised_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uintptr_t lo, hi;
} advised[8];
static int nadvised;

/* The bounds of the private writable mapping that holds `p`, from
 * /proc/self/maps; 0 when there is none. */
static int find_mapping(const void *p, uintptr_t *lo, uintptr_t *hi)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uintptr_t at = (uintptr_t)p;
    char buf[8192];
    size_t have = 0;
    int found = 0, done = 0;
    while (!done) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        /* Whole lines only: a cut one waits for the next read. */
        char *line = buf, *nl;
        while (!done && (nl = memchr(line, '\n', (size_t)(buf + have - line)))) {
            char *end;
            *lo = (uintptr_t)strtoull(line, &end, 16);
            *hi = *end == '-' ? (uintptr_t)strtoull(end + 1, &end, 16) : 0;
            if (*lo <= at && at < *hi) {
                found = end[0] == ' ' && end[1] == 'r' && end[2] == 'w' && end[4] == 'p';
                done = 1;
            }
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf - 1)
            have = 0; /* a line longer than the buffer: never a heap's */
    }
    close(fd);
    return found;
}

/* Huge pages for the heap that holds `p`. */
static void advise_heap_of(const void *p)
{
    uintptr_t lo, hi;
    if (!find_mapping(p, &lo, &hi))
        return;
    pthread_mutex_lock(&advised_lock);
    int ok =
        atomic_load(&starting) && nadvised < 8 && madvise((void *)lo, hi - lo, MADV_HUGEPAGE) == 0;
    if (ok) {
        advised[nadvised].lo = lo;
        advised[nadvised].hi = hi;
        nadvised++;
    }
    pthread_mutex_unlock(&advised_lock);
    /* The stretch that holds the heap's start has small pages already, and
     * later faults there would stay small: collapse it (and fill the rest)
     * now. */
    if (ok)
        madvise((void *)lo, hi - lo, MADV_COLLAPSE);
}

void heap_start_up(void)
{
    if (!HEAP_HUGE)
        return;
    atomic_store(&starting, 1);
    mallopt(M_TOP_PAD, START_PAD);
    /* The main heap grows only when asked for more than it has: one block of
     * the pad's size, taken from the heap and not from a mapping of its own,
     * makes it grow now, by the pad, so the advice covers what start-up uses. */
    mallopt(M_MMAP_THRESHOLD, 2 * START_PAD);
    void *p = malloc(START_PAD);
    mallopt(M_MMAP_THRESHOLD, SERVING_MMAP);
    if (p)
        advise_heap_of(p);
    free(p);
    advised_here = 1;
}

void heap_this_thread(void)
{
    if (!atomic_load(&starting) || advised_here)
        return;
    advised_here = 1;
    /* A thread's first block creates its heap, already the pad's size. */
    void *p = malloc(64);
    if (p)
        advise_heap_of(p);
    free(p);
}

void heap_serving(void)
{
    if (!atomic_exchange(&starting, 0))
        return;
    mallopt(M_TOP_PAD, USUAL_PAD);
    mallopt(M_MMAP_THRESHOLD, SERVING_MMAP);
    mallopt(M_TRIM_THRESHOLD, SERVING_TRIM);
    /* The huge pages taken stay; the heaps' later growth is paged as usual
     * (a huge page then would be 2 MiB of resident memory at a touch). */
    pthread_mutex_lock(&advised_lock);
    for (int i = 0; i < nadvised; i++)
        madvise((void *)advised[i].lo, advised[i].hi - advised[i].lo, MADV_NOHUGEPAGE);
    pthread_mutex_unlock(&advised_lock);
}

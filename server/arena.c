/*
 * arena: chunks of ARENA_CHUNK bytes per thread; the first is kept between
 * requests, any further ones (a large request) are given back at the end.
 * A free is a no-op for an address inside one of the thread's chunks and a
 * real free() otherwise, so trees built before the window, or during a
 * pause, are freed as usual.
 */
#include "arena.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cjson/cJSON.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_CHUNK (64 * 1024)

struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

static _Thread_local struct {
    struct chunk *head;
    int active, paused;
} arena;

/* A thread's chunks go when the thread ends. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void free_chunks(void *head)
{
    for (struct chunk *c = head, *next; c; c = next) {
        next = c->next;
        UNPOISON(c->data, c->size);
        free(c);
    }
}

static void make_key(void)
{
    pthread_key_create(&exit_key, free_chunks);
}

static void *arena_malloc(size_t n)
{
    if (!arena.active || arena.paused)
        return malloc(n);
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = arena.head;
    if (!c || c->used + n > c->size) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->size = size;
        c->used = 0;
        c->next = arena.head;
        arena.head = c;
        POISON(c->data, size);
        pthread_once(&exit_once, make_key);
        pthread_setspecific(exit_key, arena.head);
    }
    void *p = c->data + c->used;
    c->used += n;
    UNPOISON(p, n);
    return p;
}

static int in_arena(const void *p)
{
    for (const struct chunk *c = arena.head; c; c = c->next)
        if ((const unsigned char *)p >= c->data && (const unsigned char *)p < c->data + c->size)
            return 1;
    return 0;
}

static void arena_free(void *p)
{
    if (p && !in_arena(p))
        free(p);
}

void json_arena_install(void)
{
    cJSON_Hooks hooks = {arena_malloc, arena_free};
    cJSON_InitHooks(&hooks);
}

void json_arena_begin(void)
{
    arena.active = 1;
    arena.paused = 0;
}

void json_arena_end(void)
{
    arena.active = 0;
    arena.paused = 0;
    /* Keep one chunk of the usual size for the next request. */
    struct chunk *keep = NULL;
    for (struct chunk *c = arena.head, *next; c; c = next) {
        next = c->next;
        if (!keep && c->size == ARENA_CHUNK) {
            keep = c;
            continue;
        }
        UNPOISON(c->data, c->size);
        free(c);
    }
    arena.head = keep;
    pthread_once(&exit_once, make_key);
    pthread_setspecific(exit_key, keep);
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
        POISON(keep->data, keep->size);
    }
}

void json_arena_pause(void)
{
    arena.paused = 1;
}

void json_arena_resume(void)
{
    arena.paused = 0;
}

/*
 * arena: a per-thread bump allocator for the cJSON trees of one request.
 * Parsing a body, building facts, rendering a reply and its envelope make
 * about a hundred small allocations per request; between json_arena_begin()
 * and json_arena_end() on a thread, cJSON takes them from a chunk that the
 * end of the request rewinds at once, and cJSON's frees of them cost nothing.
 *
 * The rule that keeps this safe: nothing allocated by cJSON inside the
 * window outlives it. Code that keeps cJSON data (the scenario engine's
 * session variables) runs between json_arena_pause() and json_arena_resume();
 * admin handlers, which keep uploaded scenarios, run outside any window.
 * Memory from the window is poisoned for AddressSanitizer when it is rewound,
 * so a use after the request is reported in the sanitizer build.
 */
#ifndef AUTHMOCK_ARENA_H
#define AUTHMOCK_ARENA_H

/* Installs the cJSON hooks (once, at start). */
void json_arena_install(void);
void json_arena_begin(void);
void json_arena_end(void);
void json_arena_pause(void);
void json_arena_resume(void);

#endif

/*
 * heap: transparent huge pages under the malloc heap while authmock starts.
 *
 * Start-up with a thousand scenario files writes about 4 MB of fresh heap
 * (cJSON trees, compiled scenarios, the state's maps). On the virtual
 * machines authmock runs on in CI, the first touch of a 4 KiB page costs
 * 10-20 us, and those faults were a third of the start-up's CPU; a 2 MiB
 * transparent huge page is one fault of about 0.2 ms. From heap_start_up()
 * to heap_serving(), heaps grow 4 MiB at a time, and each thread that loads
 * calls heap_this_thread() to have its heap's pages come huge. Where the
 * kernel gives no huge pages (or under a sanitizer's allocator) this is a
 * no-op, and nothing else changes.
 */
#ifndef AUTHMOCK_HEAP_H
#define AUTHMOCK_HEAP_H

/* On the main thread, before any other thread starts. */
void heap_start_up(void);
/* On a thread that allocates much while starting, first thing. */
void heap_this_thread(void);
/* Once serving: heaps grow and shrink in the usual steps again. */
void heap_serving(void);

#endif

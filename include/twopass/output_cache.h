/* twopass: the memory handler of fresh results. It places each result 2048 bytes past its input
 * modulo 4096 (output_cache.c: 4K aliasing), and it keeps a cache of freed large results, so that a
 * large fresh output reuses pages that are already mapped instead of faulting in (and having the
 * kernel zero) new ones on every call.
 *
 * An output of 256 MB on a fresh mapping costs its page faults: on Zen 3 twopass.softmax(x) of 6.4e7
 * float32 takes about 0.90 ns per element with a new array against 0.55 with out= (RESULTS.md), and
 * ONNX Runtime, whose arena reuses its memory, is as fast with fresh outputs as with bound ones.
 * glibc reuses its heap for smaller blocks, but not reliably from 16 MiB on: in a loop of new inputs
 * and fresh results (each step an astype and a softmax), results of 16-32 MiB came from new pages
 * at every step or not at all depending on what ran before (Zen 3: 256x32000 0.76-0.95 ns per
 * element, 8e6 float32 1.03-1.23, against 0.39-0.72 from the cache; RESULTS.md). So blocks of
 * TWOPASS_OUTPUT_CACHE_MIN_BYTES or more are cached, and every result that large comes here.
 * From TWOPASS_OUTPUT_PLACE_MIN_BYTES a result comes here only if NumPy's allocator put it 1-128
 * bytes past its input modulo 4096 (the Cython layer looks, then allocates again: about 1 us more,
 * which below that size would cost more than 4K aliasing does).
 *
 * The functions below are the four of NumPy's PyDataMem_Handler (ctx unused); the Cython layer
 * installs them for the allocation of one result only (as above), and the array keeps the handler,
 * so its free comes back here. A freed block is kept (its pages marked MADV_FREE, which the kernel may
 * reclaim under memory pressure instead of swapping them) while the cache holds at most
 * TWOPASS_OUTPUT_CACHE_MAX_BLOCKS blocks and `limit` bytes; the oldest go first. Thread-safe, and
 * fork-safe: a child forked while another thread was in the cache finds its lock free.
 * Plain C at the x86-64 baseline; no Python.
 */
#ifndef TWOPASS_OUTPUT_CACHE_H
#define TWOPASS_OUTPUT_CACHE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TWOPASS_OUTPUT_PLACE_MIN_BYTES ((size_t)256 << 10)
#define TWOPASS_OUTPUT_CACHE_MIN_BYTES ((size_t)16 << 20)
#define TWOPASS_OUTPUT_CACHE_MAX_BLOCKS 4
#define TWOPASS_OUTPUT_CACHE_DEFAULT_LIMIT ((size_t)1 << 30)

void* twopass_output_malloc(void* ctx, size_t size);
void* twopass_output_calloc(void* ctx, size_t count, size_t size);
void* twopass_output_realloc(void* ctx, void* ptr, size_t size);
void twopass_output_free(void* ctx, void* ptr, size_t size);

struct twopass_output_cache_stats {
    size_t limit;         /* bytes the cache may keep (0: freed blocks are unmapped at once) */
    size_t cached_bytes;  /* bytes of freed blocks kept now */
    size_t cached_blocks;
    size_t hits, misses;  /* allocations served from the cache, and from new mappings */
};
/* The input the next allocation of this thread is for: its address is placed 2048 bytes past x's
 * modulo 4096 (output_cache.c). */
void twopass_output_cache_align_like(const void* x);
/* Set the limit, unmapping what no longer fits; returns the previous limit. */
size_t twopass_output_cache_set_limit(size_t limit);
void twopass_output_cache_get_stats(struct twopass_output_cache_stats* stats);
/* 1 while the limit is above 0 (results go through the handler), without the lock. */
int twopass_output_handler_on(void);

#ifdef __cplusplus
}
#endif

#endif /* TWOPASS_OUTPUT_CACHE_H */

/* The output handler and its cache of freed blocks (include/twopass/output_cache.h).
 *
 * Every result is placed 2048 bytes past its input's address modulo 4096 (rounded down to 64 bytes;
 * twopass_output_cache_align_like): loads of x and stores of y then never meet at the same address
 * modulo 4096 within the elementwise passes' reach (common.h). Left to malloc, a fresh result of a
 * power-of-two size often lies 16 or 32 bytes past its input (RESULTS.md, twenty-first session). A
 * header just before the caller's address records the block.
 *
 * Blocks below TWOPASS_OUTPUT_CACHE_MIN_BYTES come from malloc (glibc's heap reuses them), with
 * 4 KiB of room for the placement when an input is given. Larger ones are each an anonymous mapping
 * of a whole number of 2 MiB (so transparent huge pages can back it, as NumPy asks for with
 * MADV_HUGEPAGE), kept in the cache when freed. */
#include <stdlib.h>
#include "twopass/output_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define TWOPASS_BLOCK_HEADER ((size_t)64)
#define TWOPASS_BLOCK_SLACK ((size_t)4096 + TWOPASS_BLOCK_HEADER) /* room for any placement in a mapping */
#define TWOPASS_BLOCK_ROUND ((size_t)2 << 20)

struct block_header {
    void* base;    /* of the mapping, or malloc's block */
    size_t length; /* of the whole mapping; 0 for a malloc block */
    size_t usable; /* bytes from the caller's address to the end */
};

static _Thread_local uintptr_t align_like; /* the next allocation's input address (0: none given) */

void twopass_output_cache_align_like(const void* x)
{
    align_like = (uintptr_t)x;
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork copies a lock held by another thread as held, with no thread left to release it: the child's
 * next large allocation would wait forever. So fork takes the lock first and both sides release it. */
static void lock_for_fork(void)
{
    pthread_mutex_lock(&cache_lock);
}

static void unlock_after_fork(void)
{
    pthread_mutex_unlock(&cache_lock);
}

static void register_fork_handlers(void)
{
    /* fails only for want of memory at the cache's first use; the cache then works, but a fork in
     * the moment another thread holds its lock would leave the child's copy held */
    (void)pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static void lock_cache(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
    pthread_mutex_lock(&cache_lock);
}
static struct {
    void* base[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS]; /* oldest first */
    size_t length[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS];
    size_t count, bytes, limit, hits, misses;
} cache = {{0}, {0}, 0, 0, TWOPASS_OUTPUT_CACHE_DEFAULT_LIMIT, 0, 0};

/* The caller's address in the block at base (a mapping of `length` bytes, or a malloc block: length
 * 0), with the header written before it; the block ends at end. The address is 64-byte aligned, at
 * least a header past base and, for an allocation given its input, 2048 bytes past the input's
 * modulo 4096 (within 4096 bytes more: the blocks have that slack). */
static void* place(void* base, size_t length, uintptr_t end)
{
    const uintptr_t first = ((uintptr_t)base + 2 * TWOPASS_BLOCK_HEADER - 1) & ~(uintptr_t)(TWOPASS_BLOCK_HEADER - 1);
    uintptr_t at = first;
    if (align_like != 0) {
        const uintptr_t target = ((align_like + 2048) & 4095) & ~(uintptr_t)63;
        at = first + ((target - first) & 4095);
    }
    align_like = 0;
    struct block_header* header = (struct block_header*)(at - TWOPASS_BLOCK_HEADER);
    header->base = base, header->length = length, header->usable = end - at;
    return (void*)at;
}

static struct block_header* header_of(void* ptr)
{
    return (struct block_header*)((char*)ptr - TWOPASS_BLOCK_HEADER);
}

/* A block of `usable` bytes serves `size`: it holds them without wasting more than half of itself. */
static int block_fits(size_t usable, size_t size)
{
    return size <= usable && usable / 2 <= size;
}

/* A new mapping with room for `size` bytes at any address place picks; NULL if there is no
 * memory (or size overflows). */
static void* map_block(size_t size, size_t* length_out)
{
    if (size > SIZE_MAX - TWOPASS_BLOCK_SLACK - TWOPASS_BLOCK_ROUND) {
        return NULL;
    }
    const size_t length = (size + TWOPASS_BLOCK_SLACK + TWOPASS_BLOCK_ROUND - 1) / TWOPASS_BLOCK_ROUND * TWOPASS_BLOCK_ROUND;
    void* base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(base, length, MADV_HUGEPAGE); /* a hint; without it the block still works */
#endif
    *length_out = length;
    return base;
}

/* Remove cache entry i (the caller holds the lock), returning its base and length. */
static void* take_entry(size_t i, size_t* length)
{
    void* base = cache.base[i];
    *length = cache.length[i];
    cache.bytes -= cache.length[i];
    for (size_t j = i + 1; j < cache.count; j++) {
        cache.base[j - 1] = cache.base[j], cache.length[j - 1] = cache.length[j];
    }
    cache.count--;
    return base;
}

/* Evict the oldest entries until `entries` more entries of `room` bytes in all fit under the limits;
 * the evicted mappings go to bases and lengths (at most TWOPASS_OUTPUT_CACHE_MAX_BLOCKS), unmapped
 * by the caller after it drops the lock. Returns how many. */
static size_t evict_for(size_t entries, size_t room, void** bases, size_t* lengths)
{
    size_t evicted = 0;
    while (cache.count > 0
           && (cache.count + entries > TWOPASS_OUTPUT_CACHE_MAX_BLOCKS || cache.bytes + room > cache.limit)) {
        bases[evicted] = take_entry(0, &lengths[evicted]);
        evicted++;
    }
    return evicted;
}

static void unmap_all(void** bases, const size_t* lengths, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        munmap(bases[i], lengths[i]);
    }
}

void* twopass_output_malloc(void* ctx, size_t size)
{
    (void)ctx;
    if (size == 0) {
        size = 1; /* NumPy's own allocators never return NULL for 0 bytes either */
    }
    if (size < TWOPASS_OUTPUT_CACHE_MIN_BYTES) { /* from malloc, with room to place the result */
        const size_t room = 2 * TWOPASS_BLOCK_HEADER + (align_like != 0 ? 4096 : 0);
        void* block = size <= SIZE_MAX - room ? malloc(size + room) : NULL;
        if (block == NULL) {
            align_like = 0;
            return NULL;
        }
        return place(block, 0, (uintptr_t)block + size + room);
    }
    void* base = NULL;
    size_t length = 0;
    lock_cache();
    /* the smallest cached block that fits */
    size_t best = cache.count;
    for (size_t i = 0; i < cache.count; i++) {
        if (block_fits(cache.length[i] - TWOPASS_BLOCK_SLACK, size)
            && (best == cache.count || cache.length[i] < cache.length[best])) {
            best = i;
        }
    }
    if (best < cache.count) {
        base = take_entry(best, &length);
        cache.hits++;
    } else {
        cache.misses++;
    }
    pthread_mutex_unlock(&cache_lock);
    if (base == NULL) {
        base = map_block(size, &length);
    }
    if (base == NULL) {
        align_like = 0;
        return NULL;
    }
    return place(base, length, (uintptr_t)base + length);
}

void* twopass_output_calloc(void* ctx, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    void* ptr = twopass_output_malloc(ctx, count * size);
    if (ptr != NULL) {
        memset(ptr, 0, count * size); /* a cached block holds old data, and malloc's may */
    }
    return ptr;
}

void twopass_output_free(void* ctx, void* ptr, size_t size)
{
    (void)ctx, (void)size; /* the header has the block */
    if (ptr == NULL) {
        return;
    }
    const struct block_header header = *header_of(ptr);
    if (header.length == 0) {
        free(header.base);
        return;
    }
    void* bases[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS + 1];
    size_t lengths[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS + 1];
    size_t n_evicted = 0;
    lock_cache();
    if (header.length <= cache.limit) {
#if defined(MADV_FREE)
        /* Before the block is in the cache (where another thread may take it and write to it): its
         * pages stay mapped, and are reused as they are, unless memory runs short. The first 2 MiB,
         * with the header, are kept. */
        madvise((char*)header.base + TWOPASS_BLOCK_ROUND, header.length - TWOPASS_BLOCK_ROUND, MADV_FREE);
#endif
        n_evicted = evict_for(1, header.length, bases, lengths);
        cache.base[cache.count] = header.base, cache.length[cache.count] = header.length;
        cache.count++, cache.bytes += header.length;
    } else {
        bases[n_evicted] = header.base, lengths[n_evicted] = header.length;
        n_evicted++;
    }
    pthread_mutex_unlock(&cache_lock);
    unmap_all(bases, lengths, n_evicted);
}

void* twopass_output_realloc(void* ctx, void* ptr, size_t size)
{
    if (ptr == NULL) {
        return twopass_output_malloc(ctx, size);
    }
    const size_t usable = header_of(ptr)->usable;
    if (block_fits(usable, size)) {
        return ptr;
    }
    void* fresh = twopass_output_malloc(ctx, size);
    if (fresh != NULL) {
        memcpy(fresh, ptr, size < usable ? size : usable);
        twopass_output_free(ctx, ptr, usable);
    }
    return fresh; /* NULL: the old block stays valid, as realloc's contract says */
}

int twopass_output_handler_on(void)
{
    return __atomic_load_n(&cache.limit, __ATOMIC_RELAXED) > 0;
}

size_t twopass_output_cache_set_limit(size_t limit)
{
    void* bases[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS];
    size_t lengths[TWOPASS_OUTPUT_CACHE_MAX_BLOCKS];
    lock_cache();
    const size_t previous = cache.limit;
    __atomic_store_n(&cache.limit, limit, __ATOMIC_RELAXED); /* read without the lock by twopass_output_handler_on */
    const size_t n_evicted = evict_for(0, 0, bases, lengths);
    pthread_mutex_unlock(&cache_lock);
    unmap_all(bases, lengths, n_evicted);
    return previous;
}

void twopass_output_cache_get_stats(struct twopass_output_cache_stats* stats)
{
    lock_cache();
    stats->limit = cache.limit, stats->cached_bytes = cache.bytes, stats->cached_blocks = cache.count;
    stats->hits = cache.hits, stats->misses = cache.misses;
    pthread_mutex_unlock(&cache_lock);
}

"""Which ISA level runs: detected once at import, capped by TWOPASS_ISA, overridden per context.

Levels in priority order: "python" (the NumPy fallback), "avx2" (AVX2 + FMA), "avx512f". The
level in force is a context variable, so `use_isa` affects only the thread (or asyncio task) that
entered it; other threads keep the process level.
"""
import contextlib
import contextvars
import operator
import os

import numpy as np

LEVELS = ("python", "avx2", "avx512f")

try:
    from twopass import kernels as _kernels
    EXTENSION_ERROR = None
except ImportError as error:  # no compiled extension (e.g. not x86, or a failed build)
    _kernels = None
    EXTENSION_ERROR = f"{type(error).__name__}: {error}"

CPU_FEATURES = _kernels.cpu_features() if _kernels is not None else {}
BEST_LEVEL = LEVELS[_kernels.best_level()] if _kernels is not None else "python"


def _check_level(level, limit, source):
    """Return `level` if it names a level at most `limit`, else raise ValueError listing the choices."""
    allowed = LEVELS[: LEVELS.index(limit) + 1]
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"{source}: unknown ISA level {level!r}; valid choices: {', '.join(allowed)}")
    if LEVELS.index(level) > LEVELS.index(limit):
        why = "this CPU supports" if limit == BEST_LEVEL else "TWOPASS_ISA caps the process at"
        raise ValueError(f"{source}: ISA level {level!r} is not available ({why} {limit!r}); "
                         f"valid choices: {', '.join(allowed)}")
    return level


def _process_level():
    cap = os.environ.get("TWOPASS_ISA", "").strip().lower()
    if not cap:
        return BEST_LEVEL
    return _check_level(cap, BEST_LEVEL, "TWOPASS_ISA")


PROCESS_LEVEL = _process_level()
if _kernels is not None:
    _kernels.set_default_level(LEVELS.index(PROCESS_LEVEL))

_level = contextvars.ContextVar("twopass_level", default=PROCESS_LEVEL)


def set_output_cache(max_bytes):
    """Keep up to max_bytes of freed large results (16 MiB or more) for reuse by later calls, so a
    fresh output out of cache need not fault in new pages; 0 turns the cache off, and with it the
    placement of fresh results of 256 KiB or more 2048 bytes past their input modulo 4096 (all
    results then come from NumPy's allocator). Returns the previous limit (0 without the
    extension, which has no cache). Initially 1 GiB, or the environment's TWOPASS_OUTPUT_CACHE
    (bytes)."""
    if isinstance(max_bytes, (bool, np.bool_)) or not hasattr(max_bytes, "__index__"):
        raise TypeError(f"set_output_cache: max_bytes must be an int, not {type(max_bytes).__name__}")
    if operator.index(max_bytes) < 0:
        raise ValueError(f"set_output_cache: max_bytes must be >= 0, not {max_bytes}")
    return _kernels.set_output_cache(min(operator.index(max_bytes), 2**63 - 1)) if _kernels is not None else 0


def output_cache_info():
    """The output cache: its limit, what it holds, and how many allocations it served (hits) or
    mapped anew (misses); None without the extension."""
    return _kernels.output_cache_info() if _kernels is not None else None


def _output_cache_from_environment():
    value = os.environ.get("TWOPASS_OUTPUT_CACHE", "").strip()
    if value:
        try:
            limit = int(value)
        except ValueError:
            limit = -1
        if limit < 0:
            raise ValueError(f"TWOPASS_OUTPUT_CACHE: {value!r} is not a number of bytes >= 0")
        set_output_cache(limit)


_output_cache_from_environment()


def _data_cache_bytes():
    """{level: bytes} of cpu0's data (or unified) caches (Linux sysfs); {} if unknown."""
    sizes = {}
    for index in range(8):
        path = f"/sys/devices/system/cpu/cpu0/cache/index{index}/"
        try:
            with open(path + "type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(path + "level") as f:
                level = int(f.read().strip())
            with open(path + "size") as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        unit = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1:], 1)
        sizes[level] = max(sizes.get(level, 0), int(size.rstrip("KMG")) * unit)
    return sizes


_CACHES = _data_cache_bytes()
LAST_LEVEL_CACHE = max(_CACHES.values(), default=0) or 32 * 1024 * 1024
L2_CACHE = _CACHES.get(2, 0) or 512 * 1024
# "auto", chosen from the benchmarks (benchmarks/RESULTS.md): in cache the reloading three-pass
# algorithm does half the exp work of the others and wins; once a row (input and output, 8 bytes per
# element) no longer fits in the last-level cache, every pass is memory-bound and two-pass wins.
# The NumPy fallback is always fastest with three_pass_reload.
AUTO_TWO_PASS_FROM = max(1, LAST_LEVEL_CACHE // 8)
# Outputs of at least this many bytes are written with non-temporal stores: with the input (at
# least as large) they exceed the last-level cache, so the lines written would be evicted anyway,
# and streaming them skips reading each line before writing it (benchmarks/RESULTS.md).
STREAMING_FROM_BYTES = max(1, LAST_LEVEL_CACHE // 2)
# In such a streaming job, rows of at least this many bytes run two_pass too: its second pass
# rereads the row from the caches and streams y out, while reload's second pass stores into y, whose
# lines come from memory first. Float32 rows in jobs of 32 MiB and more, reload time / two_pass time
# (interleaved rounds, several runs): rows of 262144 1.09 and 0.91, 349525 1.05, 524288 1.64 and
# 1.15, 1048576 1.55, 2097152 1.63. Shorter rows (16 KiB to 1 MiB) swing both ways between runs
# (256x32000: 1.25 in one, 0.79-0.85 in others), so they stay with reload (benchmarks/RESULTS.md).
AUTO_TWO_PASS_ROW_BYTES = 1 << 20
# ... but rows that auto would run by blocked_reload (below) switch to two_pass in such jobs from this
# many bytes: blocked_reload reads x once, like two_pass, and makes one exp per element. Zen 3, 32
# MiB jobs, two_pass time / blocked_reload time (python -m benchmarks.auto --row-lengths, twice, and
# a scratch loop): rows of 1 MiB 1.10, 1.15 and 0.99; 2 MiB 1.04, 0.97 and 1.01; 4 MiB 0.95, 1.05
# and 1.06; 8 MiB 0.95; 16 MiB 0.88. (Not on Intel, where blocked_reload is not in the rule.)
AUTO_BLOCKED_TWO_PASS_ROW_BYTES = 1 << 21
# On Intel CPUs float32 two_pass wins as soon as a job (input and output) outgrows 3/4 of a core's L2,
# for rows of AUTO_TWO_PASS_L2_ROW_BYTES or more: there the rows come from an L3 that is slow for one
# core, and two-pass overlaps that traffic with its exps. Intel Xeon (family 6 model 167, L2 2 MiB),
# float32, avx512f, reload time / two_pass time, interleaved (benchmarks.auto, final build of the
# eighth session): one row of 262144 (a 2 MiB job) 1.11, 393216 1.19, 1e6 1.30, 1e7 1.23, 256x32000
# 1.11, 32x128256 1.22; 64 MiB jobs in rows of 4096 1.10, 8192 1.13, 16384 1.14, 131072 1.20 (2048:
# 1.03, 1000: 0.98). Ninth session, after reload's scaling pass lost its zeroing compare: rows of
# 2048 0.98, 4096 1.02, 8192 1.06 (9 rounds). Reload keeps jobs within 3/4 of L2 (one row of 196608,
# 1.5 MiB: 0.94) and shorter rows (4096x1000: 0.94). Not on AMD: on Zen 3 (L2 512 KiB, a fast
# 32 MiB L3) reload still won a row of 1e5, an 800 KB job (0.84), and rows of 16 KiB-1 MiB in
# L3-sized jobs went both ways. Not float64,
# whose exp costs more: on the same Xeon reload won 256x16000 (0.93), 32x64128 (0.93) and 1024x4096
# (0.88), and one row only broke even from 196608 elements (1.01; 500000: 1.06).
AUTO_TWO_PASS_L2_JOB_BYTES = 3 * L2_CACHE // 4 if CPU_FEATURES.get("intel") else 1 << 62
AUTO_TWO_PASS_L2_ROW_BYTES = 16 * 1024
# float16: three_pass_reload keeps its exps in float32 (kernels.h), so its row takes float32's 8 bytes
# per element in cache (2 in, 2 out, 4 stored): float32's rules by elements, but not the Intel job
# clause above, since float16's two_pass is the slower one there. Intel Xeon (L2 2 MiB), float16,
# avx512f, reload time / two_pass time (python -m benchmarks.auto --dtype float16, 7 rounds, inputs
# in [-100, 100]): one row of 1e3 0.77, 1e5 0.74, 262144 0.82, 300000 0.91, 400000 1.12, 6e5 1.35,
# 1e6 1.55, 1e7 4.3; 4096x64 0.45, 4096x1000 0.62, 256x32000 0.87, 32x128256 0.86, 16x131072 0.86,
# 8x262144 0.94. So there two_pass takes the rows whose 8 bytes per element pass 5/4 of L2, whatever
# the job. On avx2 (TWOPASS_ISA=avx2), whose float16 two_pass is slower still: one row of 1e3 0.71, 1e5
# 0.65, 300000 0.75, 400000 0.89, 5e5 0.96, 8e5 1.02, 1e6 0.99, 2e6 1.03, 1e7 3.1; 4096x1000 0.61,
# 256x32000 0.68, 8x262144 0.71: two_pass from 4 L2 there. Not measured on AMD: there float16 follows
# float32's rules alone. Per level, indexed as LEVELS.
AUTO_F16_TWO_PASS_ROW_BYTES = ((1 << 62, 4 * L2_CACHE, 5 * L2_CACHE // 4) if CPU_FEATURES.get("intel")
                               else (1 << 62,) * 3)


# log_softmax: both algorithms take one exp per element and end with the same subtracting pass, but
# two-pass finds logsumexp in one read where three-pass needs two (the max, then the sum), so it wins
# once the per-row cost of its extended sum is spread over enough elements. Intel Xeon, avx512f,
# log_softmax, reload time / two_pass time (python -m benchmarks.auto --function log_softmax, 7
# rounds): float32 rows of 64 0.90, 128 0.85, 256 0.92, 512 0.99, 1000 1.01, 2000 1.02, 4000 1.04,
# 1e4 1.07, 1e5 1.05, 4096x1000 1.11 (1e6 and the long-row batches already two_pass); float16 64
# 0.87, 256 0.96, 512 1.00, 1000 1.03, 1e4 1.03, 4096x1000 1.02, 256x32000 1.16; float64 64 0.90,
# 256 1.00, 512 1.20, 1000 1.01, 1e4 1.12, 1e5 1.07, 4096x1000 1.21, 256x32000 1.21.
AUTO_LOG_SOFTMAX_TWO_PASS_FROM = 512

# blocked_reload, where auto would run three_pass_reload on float32 and float64 rows of
# AUTO_BLOCKED_RELOAD_FROM elements or more: the same results with x read once (rows of one span,
# 2048 elements, run reload itself). Measured when each span of 2048 found its max by rmax first;
# AMD EPYC (Zen 3, avx2), reload time / blocked_reload time, interleaved (python -m benchmarks.auto,
# 5-7 rounds): float32 rows of 1e4 1.02, 1e5 1.02, 1e6 1.04, 256x32000 1.38, 32x128256 1.35; 32 MiB
# jobs in rows of 4096 1.20, 16384 1.23, 32000 1.27, 131072 1.28; float64 1e4 1.00, 1e6 1.05, 1e7
# 1.17, 256x32000 1.23, 32x128256 1.26. Shorter rows pay for the spans' bookkeeping where the row's
# max pass costs little (9 rounds of fresh processes): float32 in cache (64 rows) 2049 0.95, 2500
# 0.96, 3072 0.97, 4096 0.98, 8192 1.04, 16384 1.11; in 32 MiB jobs 2049 0.97, 2500 1.02, 3072 1.07,
# 4096 1.15, 8192 1.24; float64 in cache 2049 0.99, 3072 1.00, 4096 1.01, in 16 MiB jobs 2049 0.99,
# 3072 1.08, 4096 1.05. So from 3072 elements, where the worst case is 3% in cache. Since the exp
# pass finds the max itself (sixteenth session, 11 rounds): 64 rows of 2049 0.92, 2500 0.91, 3072
# 1.02, 4096 0.98, 8192 1.07, 16384 1.07; 32 MiB jobs of 4096 1.12, 8192 1.20, 16384 1.22; 1e5 and
# 1e6 about 1.12: the threshold stands. Not float16 (half the bytes of x to save: 1e6 0.97,
# 256x32000 1.06, 32x128256 1.05; not measured since), and not on Intel, where it is not measured.
AUTO_BLOCKED_RELOAD_FROM = 1 << 62 if CPU_FEATURES.get("intel") else 3072
# float64 takes the two_pass clauses above on Intel only: on Zen 3 (avx2) its two exps per element
# cost more than any memory traffic they save. two_pass time / blocked_reload time: one row of 2e6
# 1.43, 1e7 1.34, 3e7 1.28; 64x131072 1.52, 4x2097152 1.28 (jobs of 16-64 MiB whose output streams).
AUTO_F64_TWO_PASS = bool(CPU_FEATURES.get("intel"))


def auto_algorithm(level, n, itemsize=4, size=None, function="softmax"):
    """The algorithm "auto" runs for rows of n elements of `itemsize` bytes, `size` elements in all
    (None: one row), on `level` (the python level: three_pass_reload).
    log_softmax: two_pass for rows of AUTO_LOG_SOFTMAX_TWO_PASS_FROM elements or more.
    softmax: two_pass for rows that outgrow the last-level cache (float64: half as many elements),
    for rows of AUTO_TWO_PASS_ROW_BYTES (rows that would run blocked_reload:
    AUTO_BLOCKED_TWO_PASS_ROW_BYTES) or more in jobs whose output reaches the streaming threshold
    (float64: only if AUTO_F64_TWO_PASS), (Intel, float32) for rows of
    AUTO_TWO_PASS_L2_ROW_BYTES or more in jobs of over AUTO_TWO_PASS_L2_JOB_BYTES, input and output,
    and (Intel, float16) for rows of over AUTO_F16_TWO_PASS_ROW_BYTES[level] at 8 bytes per element;
    float16 rows count their bytes as float32's (reload keeps its exps in float32).
    Otherwise blocked_reload for float32 and float64 rows of AUTO_BLOCKED_RELOAD_FROM elements or
    more, three_pass_reload for the rest."""
    if level == "python":
        return "three_pass_reload"
    if function == "log_softmax":
        return "two_pass" if n >= AUTO_LOG_SOFTMAX_TWO_PASS_FROM else "three_pass_reload"
    size = n if size is None else size
    half = itemsize == 2
    two_pass_clauses = itemsize != 8 or AUTO_F64_TWO_PASS
    if two_pass_clauses and n >= (AUTO_TWO_PASS_FROM if itemsize <= 4 else max(1, AUTO_TWO_PASS_FROM // 2)):
        return "two_pass"
    blocked = itemsize in (4, 8) and n >= AUTO_BLOCKED_RELOAD_FROM  # float32, float64 (not longdouble)
    streaming = _kernels is not None and size >= _kernels.streaming_threshold() // itemsize
    row_bytes = AUTO_BLOCKED_TWO_PASS_ROW_BYTES if blocked else AUTO_TWO_PASS_ROW_BYTES
    if two_pass_clauses and streaming and n * (4 if half else itemsize) >= row_bytes:
        return "two_pass"
    if half:
        return "two_pass" if 8 * n > AUTO_F16_TWO_PASS_ROW_BYTES[LEVELS.index(level)] else "three_pass_reload"
    if itemsize == 4 and 2 * size * 4 > AUTO_TWO_PASS_L2_JOB_BYTES and n * 4 >= AUTO_TWO_PASS_L2_ROW_BYTES:
        return "two_pass"
    return "blocked_reload" if blocked else "three_pass_reload"


def configure_fast_path_auto():
    """Give the typed layer's fast path (twopass.kernels) this module's auto rule as it stands: at
    import, and again whenever its constants change (tests)."""
    if _kernels is not None:
        _kernels.configure_auto(AUTO_TWO_PASS_FROM, AUTO_TWO_PASS_ROW_BYTES, AUTO_TWO_PASS_L2_JOB_BYTES,
                                AUTO_TWO_PASS_L2_ROW_BYTES, *AUTO_F16_TWO_PASS_ROW_BYTES[1:],
                                AUTO_LOG_SOFTMAX_TWO_PASS_FROM, AUTO_BLOCKED_RELOAD_FROM, AUTO_F64_TWO_PASS,
                                AUTO_BLOCKED_TWO_PASS_ROW_BYTES)


def available_levels():
    """Levels this process may use, lowest first (the CPU's, capped by TWOPASS_ISA)."""
    return LEVELS[: LEVELS.index(PROCESS_LEVEL) + 1]


def current_level():
    """The level the calling thread's next call will use."""
    return _level.get()


@contextlib.contextmanager
def use_isa(level):
    """Cap the ISA level inside a `with` block (this thread or task only).

    >>> with twopass.use_isa("avx2"):
    ...     y = twopass.softmax(x)
    """
    token = _level.set(_check_level(level, PROCESS_LEVEL, "use_isa"))
    try:
        yield level
    finally:
        _level.reset(token)


# ---- threads ----
MAX_THREADS = 1 << 16


def check_threads(threads, source="threads"):
    """An explicit thread count as an int >= 1 (TypeError if not an integer, ValueError if < 1)."""
    if isinstance(threads, bool) or not hasattr(threads, "__index__"):
        raise TypeError(f"{source}: the number of threads must be an int, not {type(threads).__name__}")
    count = operator.index(threads)
    if count < 1:
        raise ValueError(f"{source}: the number of threads must be at least 1, not {count}")
    return min(count, MAX_THREADS)


_fallback_threads = [os.cpu_count() or 1]  # without the extension: remembered, nothing runs threads


def set_num_threads(n):
    """Set how many threads twopass functions use when called without threads= (initially the
    usable cores). OpenMP's limit for the calling thread still caps it: OMP_NUM_THREADS, and
    threadpoolctl's threadpool_limits. Jobs under PARALLEL_MIN elements run on one thread."""
    n = check_threads(n, "set_num_threads")
    if _kernels is not None:
        _kernels.set_num_threads(n)
    else:
        _fallback_threads[0] = n


def get_num_threads():
    """How many threads a call without threads= uses, in the calling thread."""
    return _kernels.get_num_threads() if _kernels is not None else _fallback_threads[0]

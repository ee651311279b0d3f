"""Which ISA level runs: detected once at import, capped by TWOPASS_ISA, overridden per context.

Levels in priority order: "python" (the NumPy fallback), "avx2" (AVX2 + FMA), "avx512f". The
level in force is a context variable, so `use_isa` affects only the thread (or asyncio task) that
entered it; other threads keep the process level.
"""
import contextlib
import contextvars
import operator
import os

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


def _last_level_cache_bytes(default=32 * 1024 * 1024):
    """Size of the CPU's last-level data cache (Linux sysfs), or `default`."""
    best = 0
    for index in range(8):
        path = f"/sys/devices/system/cpu/cpu0/cache/index{index}/"
        try:
            with open(path + "type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(path + "size") as f:
                size = f.read().strip()
        except OSError:
            continue
        unit = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1:], 1)
        best = max(best, int(size.rstrip("KMG")) * unit)
    return best or default


LAST_LEVEL_CACHE = _last_level_cache_bytes()
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


def auto_algorithm(level, n, itemsize=4, size=None):
    """The algorithm "auto" runs for rows of n elements of `itemsize` bytes, `size` elements in all
    (None: one row), on `level`: two_pass for rows that outgrow the last-level cache (float64: half as
    many elements), and for rows of AUTO_TWO_PASS_ROW_BYTES or more in jobs whose output reaches the
    streaming threshold; float16 always two_pass, since three_pass_reload would round its stored
    exp(x - max) to float16 before scaling it; three_pass_reload otherwise."""
    if level == "python":
        return "three_pass_reload"
    if itemsize == 2 or n >= (AUTO_TWO_PASS_FROM if itemsize <= 4 else max(1, AUTO_TWO_PASS_FROM // 2)):
        return "two_pass"
    streaming = _kernels is not None and (n if size is None else size) >= _kernels.streaming_threshold() // itemsize
    if streaming and n * itemsize >= AUTO_TWO_PASS_ROW_BYTES:
        return "two_pass"
    return "three_pass_reload"


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

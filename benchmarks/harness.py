"""Timing, cache sizes and buffer sets for the benchmarks.

Timing: a warm-up call, then `repeats` timed samples; each sample times a batch of calls long
enough (>= ~2 ms) for the clock, and the result is the median time per call with the spread
(min and max of the samples). Out-of-cache cases rotate over enough input/output pairs that each
call finds its data evicted, as the paper's benchmark does; in-cache cases reuse one warm pair.
"""
import argparse
import time

import numpy as np


def cache_sizes():
    """{'L1': bytes, 'L2': bytes, 'L3': bytes} of one core's data caches, from sysfs (as twopass reads
    them for its own thresholds), or typical sizes if unknown."""
    from twopass import _dispatch
    sizes = {f"L{level}": size for level, size in sorted(_dispatch._data_cache_bytes().items())}
    return sizes or {"L1": 32 * 1024, "L2": 512 * 1024, "L3": 32 * 1024**2}


def cache_label(working_set_bytes, caches):
    """Smallest cache the working set fits in (with room for the rest), or 'DRAM'."""
    for level in ("L1", "L2", "L3"):
        if level in caches and working_set_bytes <= 0.75 * caches[level]:
            return level
    return "DRAM"


class Buffers:
    """Input/output pairs of one shape (float32, or `dtype`), enough of them that rotating defeats the
    caches when the working set does not fit in the last-level cache."""

    def __init__(self, shape, caches, seed=0, lo=-100.0, hi=100.0, dtype=np.float32):
        n_bytes = 2 * np.dtype(dtype).itemsize * int(np.prod(shape))
        self.in_cache = cache_label(n_bytes, caches) != "DRAM"
        pairs = 1 if self.in_cache else max(1, -(-4 * caches.get("L3", 32 << 20) // n_bytes))
        rng = np.random.default_rng(seed)
        first = rng.uniform(lo, hi, size=shape).astype(dtype)
        self.x = [first] + [rng.permutation(first.ravel()).reshape(shape) for _ in range(pairs - 1)]
        self.y = [np.empty(shape, dtype) for _ in range(pairs)]
        for y in self.y:
            y.fill(0.0)  # touch the pages once, so `out=` timings see no page faults
        self.next = 0

    def pair(self):
        i = self.next
        self.next = (i + 1) % len(self.x)
        return self.x[i], self.y[i]


def measure(call, buffers, repeats, min_batch_seconds=0.002, max_seconds=None):
    """Median seconds per call(x, y) and (min, max) over the samples."""
    call(*buffers.pair())  # warm-up (and first-touch of any lazily allocated state)
    start = time.perf_counter()
    call(*buffers.pair())
    once = max(time.perf_counter() - start, 1e-7)
    batch = max(1, int(min_batch_seconds / once)) if buffers.in_cache else 1
    if max_seconds is not None:
        repeats = max(3, min(repeats, int(max_seconds / (once * batch)) or 1))
    samples = []
    for _ in range(repeats):
        pairs = [buffers.pair() for _ in range(batch)]
        start = time.perf_counter()
        for x, y in pairs:
            call(x, y)
        samples.append((time.perf_counter() - start) / batch)
    return float(np.median(samples)), (float(min(samples)), float(max(samples)))


def reference_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def max_relative_error(y, ref, tiny=float(np.finfo(np.float32).tiny), flush=2.0**-125):
    """As the tests: relative to max(ref, FLT_MIN); a 0 where ref < 2^-125 counts as exact."""
    y = np.asarray(y, dtype=np.float64)
    err = np.abs(y - ref) / np.maximum(np.abs(ref), tiny)
    err[(y == 0) & (ref < flush)] = 0.0
    return float(np.max(err))


def parse_shapes(text):
    """ROWSxN,ROWSxN,... -> [(rows, n), ...], each at least 1x1."""
    try:
        shapes = [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shapes are ROWSxN,...: {text!r}") from None
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise argparse.ArgumentTypeError(f"shapes are ROWSxN,... with both at least 1: {text!r}")
    return shapes

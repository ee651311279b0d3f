"""python -m benchmarks.axes [--quick] [--repeats R]: softmax and log_softmax over axis 0 against
axis 1 of C-contiguous float32 arrays, single thread, out= a preallocated buffer.

Axis 1 runs the row kernels on contiguous rows; axis 0 runs the columns driver (blocks of columns,
rows x_ld apart). The two axes are timed in interleaved rounds (axis 1, axis 0, axis 1, ...) and each
figure is the median of its rounds, so a slow spell of the shared machine hits both alike. A round
is the mean of a batch of calls lasting >= ~20 ms. Printed: times in ms and the ratio axis 0 / axis 1.
"""
import argparse
import statistics
import time

import numpy as np

import twopass

SHAPES = [(4096, 4096), (1024, 1024)]


def batch_seconds(fn, min_seconds=0.02):
    """Mean seconds per call of fn over a batch lasting at least min_seconds."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls
        calls *= 2


def compare(op, shape, repeats, seed=0):
    """(median seconds axis 0, median seconds axis 1) of op(x, axis=a, out=y, threads=1)."""
    x = np.random.default_rng(seed).uniform(-10.0, 10.0, size=shape).astype(np.float32)
    y = np.zeros_like(x)
    calls = {a: (lambda a=a: op(x, axis=a, out=y, threads=1)) for a in (0, 1)}
    for fn in calls.values():
        fn()  # warm-up (pages, caches, lazy imports)
    times = {0: [], 1: []}
    for _ in range(repeats):
        for a in (1, 0):
            times[a].append(batch_seconds(calls[a]))
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (5)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per figure (default 9)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 9)
    print(f"float32, threads=1, out=, medians of {repeats} interleaved rounds")
    print(f"{'op':<12} {'shape':>11} {'axis 1 ms':>10} {'axis 0 ms':>10} {'ratio 0/1':>10}")
    for op in (twopass.softmax, twopass.log_softmax):
        for shape in SHAPES:
            t0, t1 = compare(op, shape, repeats)
            print(f"{op.__name__:<12} {shape[0]:>5}x{shape[1]:<5} {t1 * 1e3:>10.3f} {t0 * 1e3:>10.3f} "
                  f"{t0 / t1:>10.2f}", flush=True)


if __name__ == "__main__":
    main()

"""python -m benchmarks.sum_blocks [--quick] [--no-progress]: what the blocked sums cost and buy.

The drivers sum exp in blocks of 1024 elements (the kernel's float32 vector accumulators per
block, the block sums added in double), so the error of a sum does not grow with the length. The
alternative is one float32 accumulation per chunk (one kernel call over the whole slice on one
thread): twopass.kernels.set_sum_block(2**62) switches to it for this benchmark only. For float32
rows drawn from N(0, 10) (issue 4's accuracy case), single thread, out=: ns per element of
two_pass and three_pass_reload both ways, measured in interleaved rounds (medians), and the max
relative error against float64 and the worst |sum - 1| of the result both ways.
"""
import argparse
import sys

from benchmarks.peers import pin_one_thread

pin_one_thread()

import numpy as np  # noqa: E402

import twopass  # noqa: E402
from benchmarks import harness  # noqa: E402

FULL_SIZES = [100_000, 1_000_000, 10_000_000, 64_000_000, 100_000_000]
QUICK_SIZES = [100_000, 1_000_000]
ALGORITHMS = ["two_pass", "three_pass_reload"]
UNBLOCKED = 2**62


def normal_buffers(n, caches, seed=0):
    buffers = harness.Buffers((1, n), caches)
    rng = np.random.default_rng(seed)
    for x in buffers.x:
        x[...] = rng.normal(0.0, 10.0, x.shape)
    return buffers


def run(sizes, rounds, repeats, progress=True):
    caches = harness.cache_sizes()
    kernels = twopass.kernels
    rows = []
    for n in sizes:
        buffers = normal_buffers(n, caches)
        samples = {(a, b): [] for a in ALGORITHMS for b in ("blocked", "unblocked")}
        errors = {}
        try:
            for r in range(rounds):
                for (algorithm, way), times in samples.items():
                    kernels.set_sum_block(0 if way == "blocked" else UNBLOCKED)
                    times.append(harness.measure(
                        lambda x, y, a=algorithm: twopass.softmax(x, axis=-1, out=y, algorithm=a, threads=1),
                        buffers, repeats)[0])
                if progress:
                    sys.stderr.write(f"\r{n}: round {r + 1}/{rounds}   ")
                    sys.stderr.flush()
            x = buffers.x[0]
            ref = harness.reference_softmax(x)
            for algorithm, way in samples:
                kernels.set_sum_block(0 if way == "blocked" else UNBLOCKED)
                y = twopass.softmax(x, axis=-1, algorithm=algorithm, threads=1)
                errors[(algorithm, way)] = (harness.max_relative_error(y, ref),
                                            float(np.max(np.abs(y.sum(axis=-1, dtype=np.float64) - 1.0))))
        finally:
            kernels.set_sum_block(0)
        median = {key: float(np.median(t)) for key, t in samples.items()}
        rows.append((n, harness.cache_label(8 * n, caches), median, errors))
    if progress:
        sys.stderr.write("\n")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, 2 rounds (smoke run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    args = parser.parse_args(argv)
    sizes, rounds = (QUICK_SIZES, 2) if args.quick else (FULL_SIZES, 7)
    rows = run(sizes, rounds, 3, progress=not args.no_progress)
    print(f"level {twopass.runtime_info()['active_level']}, single thread, out=, N(0, 10) input; "
          f"medians of {rounds} interleaved rounds")
    print(f"{'n':>10} {'cache':>5} {'algorithm':>18} {'blocked ns/el':>14} {'unblocked':>10} {'cost':>7} "
          f"{'rel err blocked':>16} {'unblocked':>10} {'|sum-1| blocked':>16} {'unblocked':>10}")
    for n, label, median, errors in rows:
        for algorithm in ALGORITHMS:
            b, u = median[(algorithm, "blocked")], median[(algorithm, "unblocked")]
            (eb, sb), (eu, su) = errors[(algorithm, "blocked")], errors[(algorithm, "unblocked")]
            print(f"{n:>10} {label:>5} {algorithm:>18} {b * 1e9 / n:>14.3f} {u * 1e9 / n:>10.3f} "
                  f"{(b / u - 1) * 100:>+6.1f}% {eb:>16.2e} {eu:>10.2e} {sb:>16.2e} {su:>10.2e}")


if __name__ == "__main__":
    main()

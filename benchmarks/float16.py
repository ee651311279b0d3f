"""python -m benchmarks.float16 [--quick] [--no-progress]: float16 softmax on its own kernels, against the same
softmax computed on a float32 copy (what twopass did before the float16 kernels, and what a caller
without them does: astype(float32), softmax, astype(float16)), and against float32 input.

Single thread, softmax over the last axis with out=, inputs uniform in [-10, 10]. Every case is
measured in interleaved rounds (kernels, copy, float32, kernels, ...) and each figure is the median
of its rounds. Out-of-cache sizes rotate over enough buffers to miss the caches (harness.Buffers).
Prints ns per element and the speedup of the float16 kernels over the copy.
"""
import argparse
import sys

import numpy as np

import twopass
from benchmarks import harness

FULL_SIZES = [1000, 10_000, 100_000, 1_000_000, 10_000_000, 64_000_000]
QUICK_SIZES = [1000, 100_000]


class HalfBuffers(harness.Buffers):
    """harness.Buffers (float32, rotated when out of cache) with float16 copies of each pair."""

    def __init__(self, shape, caches):
        super().__init__(shape, caches, lo=-10.0, hi=10.0)
        self.x16 = [x.astype(np.float16) for x in self.x]
        self.y16 = [np.zeros(shape, np.float16) for _ in self.x]
        self.half = False

    def pair(self):
        i = self.next
        self.next = (i + 1) % len(self.x)
        return (self.x16[i], self.y16[i]) if self.half else (self.x[i], self.y[i])


def on_copy(x, y):
    y[...] = twopass.softmax(x.astype(np.float32), axis=-1, threads=1)


def run(sizes, rounds, repeats, progress=True):
    caches = harness.cache_sizes()
    calls = {"float16 kernels": (True, lambda x, y: twopass.softmax(x, axis=-1, out=y, threads=1)),
             "float16 via float32 copy": (True, on_copy),
             "float32 kernels": (False, lambda x, y: twopass.softmax(x, axis=-1, out=y, threads=1))}
    rows = []
    for n in sizes:
        buffers = HalfBuffers((1, n), caches)
        samples = {name: [] for name in calls}
        for r in range(rounds):
            for name, (half, call) in calls.items():
                buffers.half = half
                samples[name].append(harness.measure(call, buffers, repeats)[0])
            if progress:
                sys.stderr.write(f"\r{n}: round {r + 1}/{rounds}   ")
                sys.stderr.flush()
        buffers.half = True
        x, y = buffers.pair()
        twopass.softmax(x, axis=-1, out=y, threads=1)
        ref = harness.reference_softmax(x.astype(np.float32)).astype(np.float16)
        worst_ulps = int(np.max(np.abs(y.view(np.int16).astype(np.int32) - ref.view(np.int16).astype(np.int32))))
        median = {name: float(np.median(s)) for name, s in samples.items()}
        rows.append((n, harness.cache_label(8 * n, caches), median, worst_ulps))
    if progress:
        sys.stderr.write("\n")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, few repeats (smoke run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    args = parser.parse_args(argv)
    sizes, rounds, repeats = (QUICK_SIZES, 2, 3) if args.quick else (FULL_SIZES, 5, 5)
    print(f"level {twopass.runtime_info()['active_level']}; float16 kernels: "
          f"{twopass.runtime_info()['kernels']['float16'].get('vscaleextexp', 'none')} ...")
    rows = run(sizes, rounds, repeats, progress=not args.no_progress)
    print(f"{'n':>10} {'cache':>5} {'f16 kernels':>12} {'f16 on copy':>12} {'f32 kernels':>12} "
          f"{'copy/kernels':>12} {'ulps':>5}   (ns per element, medians of {rounds} rounds)")
    for n, label, median, worst in rows:
        k, c, f = (median[name] * 1e9 / n for name in median)
        print(f"{n:>10} {label:>5} {k:>12.3f} {c:>12.3f} {f:>12.3f} {c / k:>11.2f}x {worst:>5}")


if __name__ == "__main__":
    main()

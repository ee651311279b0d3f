"""python -m benchmarks.aliasing [--quick] [--rounds R] [--n N | --shape RxC] [--algorithms A,B] [--no-progress]:
time by output placement.

softmax(x, out=y) of one float32 row of N elements (default 6.4e7, out of cache) or of R rows of C
(along the last axis), single thread,
with y placed D bytes past x modulo 4096 for D in DISTANCES, every algorithm: ns per element,
medians of interleaved rounds (each the best of 3 calls). At 1-128 bytes the elementwise passes
load x an iteration ahead of their stores (4K aliasing, include/twopass/common.h); a fresh result
from the output cache lies 2048 bytes past x.
"""
import argparse
import sys

from benchmarks.peers import pin_one_thread

pin_one_thread()

import time  # noqa: E402

import numpy as np  # noqa: E402

import twopass  # noqa: E402

DISTANCES = (0, 16, 32, 64, 96, 128, 160, 256, 1024, 2048, 4080)


def placed(buffer, x, distance):
    """A view of buffer with x's length, distance bytes past x modulo 4096."""
    start = ((x.ctypes.data + distance - buffer.ctypes.data) % 4096) // 4
    return buffer[start:start + x.size].reshape(x.shape)


def run(shape, rounds, algorithms, progress=True):
    x = np.random.default_rng(0).uniform(-100, 100, shape).astype(np.float32)
    buffer = np.zeros(x.size + 2048, np.float32)
    times = {(a, d): [] for a in algorithms for d in DISTANCES}
    for r in range(rounds):
        for a in algorithms:
            for d in DISTANCES:
                y = placed(buffer, x, d)
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    twopass.softmax(x, axis=-1, out=y, algorithm=a, threads=1)
                    best = min(best, time.perf_counter() - start)
                times[(a, d)].append(best / x.size * 1e9)
        if progress:
            sys.stderr.write(f"\rround {r + 1}/{rounds}   ")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return {key: float(np.median(v)) for key, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e6 elements, 1 round (smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=float, default=64e6, help="elements of the row (default 6.4e7)")
    parser.add_argument("--shape", help="rows x columns, e.g. 256x32000 (instead of --n)")
    parser.add_argument("--algorithms", default=",".join(twopass.ALGORITHMS), help="comma-separated (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        shape, rounds = (1_000_000,), 1
    else:
        shape = tuple(int(s) for s in args.shape.split("x")) if args.shape else (int(args.n),)
        rounds = args.rounds
    algorithms = args.algorithms.split(",")
    unknown = set(algorithms) - set(twopass.ALGORITHMS)
    if unknown:
        parser.error(f"unknown algorithms {sorted(unknown)}; choose from {twopass.ALGORITHMS}")
    medians = run(shape, rounds, algorithms, not args.no_progress)
    what = f"one float32 row of {shape[0]}" if len(shape) == 1 else f"float32 {'x'.join(map(str, shape))}"
    print(f"level {twopass.runtime_info()['active_level']}, {what}, single thread, out= placed "
          f"D bytes past x mod 4096; ns per element, medians of {rounds} interleaved rounds")
    print(f"{'algorithm':<22}" + "".join(f"{d:>7}" for d in DISTANCES))
    for a in algorithms:
        print(f"{a:<22}" + "".join(f"{medians[(a, d)]:7.3f}" for d in DISTANCES))


if __name__ == "__main__":
    main()

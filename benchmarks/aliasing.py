"""python -m benchmarks.aliasing [--quick] [--rounds R] [--n N] [--no-progress]: time by output placement.

softmax(x, out=y) of one float32 row of N elements (default 6.4e7, out of cache), single thread,
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
    return buffer[start:start + x.size]


def run(n, rounds, progress=True):
    x = np.random.default_rng(0).uniform(-100, 100, n).astype(np.float32)
    buffer = np.zeros(n + 2048, np.float32)
    algorithms = list(twopass.ALGORITHMS)
    times = {(a, d): [] for a in algorithms for d in DISTANCES}
    for r in range(rounds):
        for a in algorithms:
            for d in DISTANCES:
                y = placed(buffer, x, d)
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    twopass.softmax(x, out=y, algorithm=a, threads=1)
                    best = min(best, time.perf_counter() - start)
                times[(a, d)].append(best / n * 1e9)
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
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    n, rounds = (1_000_000, 1) if args.quick else (int(args.n), args.rounds)
    medians = run(n, rounds, not args.no_progress)
    print(f"level {twopass.runtime_info()['active_level']}, one float32 row of {n}, single thread, out= placed "
          f"D bytes past x mod 4096; ns per element, medians of {rounds} interleaved rounds")
    print(f"{'algorithm':<22}" + "".join(f"{d:>7}" for d in DISTANCES))
    for a in twopass.ALGORITHMS:
        print(f"{a:<22}" + "".join(f"{medians[(a, d)]:7.3f}" for d in DISTANCES))


if __name__ == "__main__":
    main()

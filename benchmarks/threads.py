"""python -m benchmarks.threads [--quick]: scaling of float32 softmax over 1..cores threads.

For each case (a slice in cache, LLM-vocabulary rows, a slice out of cache) and each thread count t:
twopass.softmax(x, out=y, threads=t) with two_pass and with auto, the speedup over one thread,
and the memory-bandwidth bound of two-pass traffic (2 reads + 1 write per element) measured in the
same run by the AVX2 bandwidth loops on t threads. Thread counts are measured in interleaved rounds
(1, 2, ..., 1, 2, ...) and each figure is the median of its rounds, so a slow spell of the shared
machine hits every count alike. Writes a table and threads.json (to --out).
"""
import argparse
import json
import os
import sys

import numpy as np

import twopass
from benchmarks import harness
from twopass import _dispatch

FULL_CASES = [(1, 1_000_000), (256, 32000), (4096, 1000), (1, 64_000_000)]
QUICK_CASES = [(1, 1_000_000), (64, 1000)]


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bandwidth_bound(buffers, threads, repeats):
    """Seconds of two-pass traffic on `threads` threads: read x, then read x and write y (the faster
    of ordinary and non-temporal stores)."""
    loop = _dispatch._kernels.bandwidth_loop
    read = harness.measure(lambda x, y: loop("read", x.reshape(-1), y.reshape(-1), 1, threads), buffers, repeats)[0]
    write = min(harness.measure(lambda x, y, k=k: loop(k, x.reshape(-1), y.reshape(-1), 1, threads), buffers,
                                repeats)[0] for k in ("copy", "copy_nt"))
    return read + write


def run(cases, rounds, repeats, progress=True):
    counts = list(range(1, cores() + 1))
    caches = harness.cache_sizes()
    rows = []
    for shape in cases:
        n = int(np.prod(shape))
        buffers = harness.Buffers(shape, caches)
        samples = {(what, t): [] for what in ("two_pass", "auto", "bound") for t in counts}
        for r in range(rounds):
            for t in counts:
                for algorithm in ("two_pass", "auto"):
                    samples[(algorithm, t)].append(harness.measure(
                        lambda x, y, a=algorithm, t=t: twopass.softmax(x, axis=-1, out=y, algorithm=a, threads=t),
                        buffers, repeats)[0])
                if "avx2" in twopass.available_levels():
                    samples[("bound", t)].append(bandwidth_bound(buffers, t, repeats))
                if progress:
                    sys.stderr.write(f"\r{'x'.join(map(str, shape))}: round {r + 1}/{rounds}, {t} threads   ")
                    sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
        median = {key: float(np.median(v)) if v else None for key, v in samples.items()}
        for t in counts:
            row = {"shape": list(shape), "elements": n, "cache": harness.cache_label(8 * n, caches), "threads": t}
            for algorithm in ("two_pass", "auto"):
                row[f"{algorithm}_ns_per_element"] = median[(algorithm, t)] / n * 1e9
                row[f"{algorithm}_speedup"] = median[(algorithm, 1)] / median[(algorithm, t)]
            if median[("bound", t)]:
                row["bound_ns_per_element"] = median[("bound", t)] / n * 1e9
                row["two_pass_fraction_of_bound"] = median[("bound", t)] / median[("two_pass", t)]
            rows.append(row)
        del buffers
    return rows


def print_table(rows):
    print(f"\n{'shape':>12} {'cache':>5} {'threads':>7}  {'two_pass ns/el':>14} {'speedup':>7}"
          f"  {'auto ns/el':>10} {'speedup':>7}  {'bound ns/el':>11} {'of bound':>8}")
    for r in rows:
        bound = (f"{r['bound_ns_per_element']:11.3f} {100 * r['two_pass_fraction_of_bound']:7.0f}%"
                 if "bound_ns_per_element" in r else f"{'-':>11} {'-':>8}")
        print(f"{'x'.join(map(str, r['shape'])):>12} {r['cache']:>5} {r['threads']:>7}  "
              f"{r['two_pass_ns_per_element']:14.3f} {r['two_pass_speedup']:6.2f}x  "
              f"{r['auto_ns_per_element']:10.3f} {r['auto_speedup']:6.2f}x  {bound}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small cases, one round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (full run)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if twopass.available_levels()[-1] == "python":
        sys.exit("no kernel level on this machine: nothing runs threads")
    rows = run(QUICK_CASES if args.quick else FULL_CASES, 1 if args.quick else args.rounds,
               3 if args.quick else 5, progress=not args.no_progress)
    print_table(rows)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "threads.json")
    with open(path, "w") as f:
        json.dump({"command": "python -m benchmarks.threads " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "cores": cores(), "runtime_info": twopass.runtime_info(), "rows": rows}, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()

"""Tuning sweep (python -m benchmarks --sweep): every compiled variant of each pass (unroll and
accumulators, include/twopass/kernels.h), swapped into the algorithm that uses that pass, timed in C
(repeats inside one call, no Python overhead) at sizes in L1, L2, L3 and DRAM."""
import time

import numpy as np

import twopass
from twopass import _dispatch

# The algorithm whose time each pass's variants change.
ALGORITHM_OF = {"rmax": 1, "raddstoreexpminusmax": 1, "vscale": 1, "raddextexp": 0, "vscaleextexp": 0,
                "raddexpminusmax": 2, "vscaleexpminusmax": 2, "raddonline": 3}
SIZES = {"L1": 2048, "L2": 32768, "L3": 1 << 20, "DRAM": 1 << 24}
QUICK_SIZES = {"L1": 2048, "L2": 32768}


def time_variant(x, y, algorithm, level, variant, budget=0.05):
    kernels = _dispatch._kernels
    kernels.benchmark_softmax_f32_rows(x, y, algorithm, level, 1, (variant,))
    start = time.perf_counter()
    kernels.benchmark_softmax_f32_rows(x, y, algorithm, level, 1, (variant,))
    repeats = max(1, int(budget / max(time.perf_counter() - start, 1e-7)))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        kernels.benchmark_softmax_f32_rows(x, y, algorithm, level, repeats, (variant,))
        samples.append((time.perf_counter() - start) / repeats)
    return float(np.median(samples))


def sweep(quick=False):
    results = []
    registry = _dispatch._kernels.registry()
    for level in twopass.available_levels()[1:]:
        level_index = twopass.LEVELS.index(level)
        for label, n in (QUICK_SIZES if quick else SIZES).items():
            x = np.random.default_rng(0).uniform(-100, 100, size=(1, n)).astype(np.float32)
            y = np.empty_like(x)
            for op, algorithm in ALGORITHM_OF.items():
                for v in (v for v in registry if v["level"] == level and v["op"] == op):
                    seconds = time_variant(x, y, algorithm, level_index, v["name"])
                    results.append({"level": level, "cache": label, "elements": n, "op": op,
                                    "variant": v["name"], "unroll": v["unroll"],
                                    "accumulators": v["accumulators"],
                                    "algorithm": twopass.ALGORITHMS[1 + algorithm],
                                    "ns_per_element": seconds / n * 1e9})
    return results


def print_sweep(results):
    print("\nTuning sweep: ns per element of the algorithm using each variant (lower is better)")
    by_key = {}
    for r in results:
        by_key.setdefault((r["level"], r["op"]), []).append(r)
    for (level, op), rows in by_key.items():
        caches = list(dict.fromkeys(r["cache"] for r in rows))
        print(f"  {level} {op} (in {rows[0]['algorithm']}):  " + "  ".join(f"{c:>6}" for c in caches))
        for variant in dict.fromkeys(r["variant"] for r in rows):
            cells = {r["cache"]: r["ns_per_element"] for r in rows if r["variant"] == variant}
            fastest = {c: min(r["ns_per_element"] for r in rows if r["cache"] == c) for c in caches}
            print(f"    {variant:<52}" + "  ".join(
                f"{cells[c]:6.3f}{'*' if cells[c] == fastest[c] else ' '}" for c in caches))

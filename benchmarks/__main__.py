"""python -m benchmarks [--quick] [--sweep]: single-thread float32 softmax over the last axis.

Measures every algorithm on every ISA level this machine has, the memory-bandwidth bound of each
algorithm's traffic (from AVX2 bandwidth loops run on the same buffers), and the peers that are
installed (NumPy, SciPy, torch, ONNX Runtime), each checked against a float64 reference. Writes a
table to the terminal and results.json plus PNG plots to --out (default benchmarks/results/).
--quick is a smoke run for CI (small sizes, few repeats, no thresholds).
"""
import argparse
import json
import os
import platform
import sys
import time

from benchmarks.peers import pin_one_thread

pin_one_thread()

import numpy as np  # noqa: E402

import twopass  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.peers import available_peers  # noqa: E402
from twopass import _dispatch  # noqa: E402

FULL_SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 64_000_000, 100_000_000]
QUICK_SIZES = [1_000, 100_000, 2_000_000]
FULL_BATCHES = [(4096, 1000), (256, 32000), (32, 128256)]
QUICK_BATCHES = [(64, 1000)]
# The NumPy fallback is ~20x slower than the kernels: above this many elements it is measured once.
PYTHON_LEVEL_LARGE = 20_000_000


class Progress:
    def __init__(self, total, enabled):
        self.total, self.done, self.enabled, self.start = total, 0, enabled, time.perf_counter()

    def step(self, label):
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                             f"{elapsed:5.0f}s {label[:40]:<40}")
            sys.stderr.flush()
            if self.done == self.total:
                sys.stderr.write("\n")


def bandwidth_bounds(buffers, repeats):
    """Seconds per call of each bandwidth loop over the case's elements, and each algorithm's bound:
    two-pass reads x twice and writes y once; reload reads x twice, writes y, then scales y in place;
    blocked reload reads x once (its blocks' second read hits L1), writes y, then scales y in place;
    recompute reads x three times and writes y once. Writes take the faster of ordinary and
    non-temporal stores."""
    if "avx2" not in twopass.available_levels():
        return None, None
    loops = {}
    for kind in _dispatch._kernels.BANDWIDTH_LOOPS:
        def call(x, y, kind=kind):
            _dispatch._kernels.bandwidth_loop(kind, x.reshape(-1), y.reshape(-1))
        loops[kind] = harness.measure(call, buffers, repeats)[0]
    read, write = loops["read"], min(loops["copy"], loops["copy_nt"])  # write = read x + write y
    bounds = {
        "two_pass": read + write,
        "three_pass_reload": read + write + loops["scale"],
        "three_pass_recompute": 2 * read + write,
        "blocked_reload": write + loops["scale"],
    }
    bounds["auto"] = min(bounds.values())  # whatever auto picks, it cannot beat the best traffic
    return loops, bounds


def run(args):
    caches = harness.cache_sizes()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    batches = QUICK_BATCHES if args.quick else FULL_BATCHES
    repeats = 3 if args.quick else args.repeats
    shapes = [(1, n) for n in sizes] + list(batches)
    levels = list(twopass.available_levels())
    missing_peers = []
    peers = available_peers(missing_peers)
    per_shape = len(levels) * len(twopass.ALGORITHMS) + 1 + len(peers) + 1
    progress = Progress(len(shapes) * per_shape, enabled=not args.no_progress)
    rows = []
    for shape in shapes:
        n = int(np.prod(shape))
        label = harness.cache_label(8 * n, caches)
        case = {"shape": list(shape), "elements": n, "cache": label}
        buffers = harness.Buffers(shape, caches)
        reference = harness.reference_softmax(buffers.x[0])
        loops, bounds = bandwidth_bounds(buffers, repeats)
        progress.step(f"{shape} bandwidth")
        if loops:
            rows.append({**case, "what": "bandwidth", "loops_ns_per_element": {k: v / n * 1e9 for k, v in loops.items()},
                         "bounds_ns_per_element": {k: v / n * 1e9 for k, v in bounds.items()}})

        def record(name, level, algorithm, mode, call):
            slow = level == "python" and n > PYTHON_LEVEL_LARGE
            seconds, (lo, hi) = harness.measure(call, buffers, 1 if slow else repeats,
                                                max_seconds=None if args.quick else 3.0)
            x0, y0 = buffers.x[0], buffers.y[0]
            result = call(x0, y0)
            row = {**case, "what": name, "level": level, "algorithm": algorithm, "mode": mode,
                   "seconds": seconds, "spread": [lo, hi], "ns_per_element": seconds / n * 1e9,
                   "gb_per_s": 8 * n / seconds / 1e9,
                   "max_rel_error": harness.max_relative_error(result, reference)}
            if bounds and algorithm in bounds and mode == "out=":
                row["fraction_of_bound"] = bounds[algorithm] / seconds
            rows.append(row)
            progress.step(f"{shape} {name} {level} {algorithm}")

        for level in levels:
            with twopass.use_isa(level):
                for algorithm in twopass.ALGORITHMS:
                    record("twopass", level, algorithm, "out=",
                           lambda x, y, a=algorithm: twopass.softmax(x, axis=-1, out=y, algorithm=a))
        best = levels[-1]
        with twopass.use_isa(best):
            record("twopass", best, "auto", "fresh", lambda x, y: twopass.softmax(x, axis=-1))
        for name, (call, mode) in peers.items():
            record(name, "-", "-", mode, call)
        del buffers
    return {"caches": caches, "rows": rows, "missing_peers": missing_peers}


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "cores": os.cpu_count()}


def print_table(results):
    rows = results["rows"]
    if results.get("missing_peers"):
        print("\npeers not measured: " + ", ".join(results["missing_peers"]))
    print(f"\n{'shape':>14} {'cache':>5}  {'what':<32} {'level':<8} {'algorithm':<21} {'mode':<6}"
          f" {'ns/elem':>8} {'spread':>13} {'GB/s':>6} {'bound%':>6} {'max rel err':>11}")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        if r["what"] == "bandwidth":
            b = r["bounds_ns_per_element"]
            print(f"{shape:>14} {r['cache']:>5}  bandwidth bound ns/elem: two_pass {b['two_pass']:.3f}, "
                  f"reload {b['three_pass_reload']:.3f}, blocked reload {b['blocked_reload']:.3f}, "
                  f"recompute {b['three_pass_recompute']:.3f}; loops "
                  + ", ".join(f"{k} {v:.3f}" for k, v in r["loops_ns_per_element"].items()))
            continue
        lo, hi = (s / r["elements"] * 1e9 for s in r["spread"])
        bound = f"{100 * r['fraction_of_bound']:5.0f}%" if "fraction_of_bound" in r else "      "
        print(f"{shape:>14} {r['cache']:>5}  {r['what']:<32} {r['level']:<8} {r['algorithm']:<21} {r['mode']:<6}"
              f" {r['ns_per_element']:8.3f} {lo:6.3f}-{hi:6.3f} {r['gb_per_s']:6.1f} {bound} {r['max_rel_error']:11.1e}")


def markdown_summary(results):
    """Markdown tables for RESULTS.md: ns per element per case (median; out= for twopass), the
    bandwidth bound, and the ratios the targets are about."""
    rows = [r for r in results["rows"] if r["what"] != "bandwidth"]
    bounds = {tuple(r["shape"]): r["bounds_ns_per_element"] for r in results["rows"] if r["what"] == "bandwidth"}
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in rows))
    columns = list(dict.fromkeys((r["what"], r["level"], r["algorithm"], r["mode"]) for r in rows))
    label = {c: (f"{c[1]} {c[2]}" if c[0] == "twopass" and c[3] == "out=" else
                 f"{c[1]} {c[2]} (fresh)" if c[0] == "twopass" else c[0]) for c in columns}
    cell = {(tuple(r["shape"]), (r["what"], r["level"], r["algorithm"], r["mode"])): r for r in rows}
    lines = ["| shape | cache | two-pass bound | " + " | ".join(label[c] for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for shape in shapes:
        first = next(r for r in rows if tuple(r["shape"]) == shape)
        bound = bounds.get(shape, {}).get("two_pass")
        lines.append(f"| {'x'.join(map(str, shape))} | {first['cache']} | "
                     + (f"{bound:.3f}" if bound else "-") + " | "
                     + " | ".join(f"{cell[(shape, c)]['ns_per_element']:.3f}" if (shape, c) in cell else "-"
                                  for c in columns) + " |")
    lines += ["", "Max relative error against float64 (same columns):", "",
              "| shape | " + " | ".join(label[c] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for shape in shapes:
        lines.append(f"| {'x'.join(map(str, shape))} | " + " | ".join(
            f"{cell[(shape, c)]['max_rel_error']:.1e}" if (shape, c) in cell else "-" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 3 repeats")
    parser.add_argument("--repeats", type=int, default=7, help="timed samples per case (full run)")
    parser.add_argument("--sweep", action="store_true", help="also sweep the kernel variants (tuning)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    started = time.time()
    results = {"command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine(), "runtime_info": twopass.runtime_info()}
    results.update(run(args))
    if args.sweep:
        from benchmarks.sweep import sweep
        results["sweep"] = sweep(args.quick)
    results["seconds"] = time.time() - started
    print_table(results)
    if args.sweep:
        from benchmarks.sweep import print_sweep
        print_sweep(results["sweep"])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(markdown_summary(results))
    if not args.no_plots:
        from benchmarks.plots import plot_all
        for path in plot_all(results, args.out):
            print("wrote", path)
    print(f"wrote {os.path.join(args.out, 'results.json')} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

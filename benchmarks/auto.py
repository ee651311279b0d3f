"""auto against the best fixed algorithm, interleaved (issue 3: within 5% at every benchmarked shape).

    python -m benchmarks.auto [--quick] [--rounds R] [--no-progress] [--dtype float32|float16|float64]
                              [--function softmax|log_softmax] [--row-lengths N,... | --shapes RxN,...]

auto runs the same kernels as one of the fixed algorithms, so a single run of the main benchmark
cannot tell a wrong choice from the noise of a shared machine (two columns that run the same code
differ by up to 15% there). Here every shape is measured in interleaved rounds (auto and every
algorithm of twopass.ALGORITHMS; the next round starting one algorithm later, so
none is always first), each round a median of a few timed samples; a slow spell of the machine
then hits every algorithm of the round alike. The figure per
algorithm is the median over the rounds, and auto / best is reported with the best algorithm's
spread (its rounds' min and max over its median). Single thread, float32 (or --dtype), softmax
(or --function log_softmax) over the last axis into a preallocated output, on the best level this
machine has; the shapes are the main benchmark's (out-of-cache shapes rotate over enough buffers to
miss the caches).
"""
import argparse
import sys

from benchmarks.peers import pin_one_thread

pin_one_thread()

import numpy as np  # noqa: E402

import twopass  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.__main__ import FULL_BATCHES, FULL_SIZES, QUICK_BATCHES, QUICK_SIZES  # noqa: E402

ALGORITHMS = list(twopass.ALGORITHMS)
TOLERANCE = 1.05


def interleaved(shapes, calls, rounds, repeats, progress=True, value_range=100.0, dtype=np.float32):
    """{shape: {name: [seconds per round]}} for calls {name: call(x, y)}, each round timing every call
    once (a median of `repeats` samples), the next round starting one call later; inputs of `dtype`
    uniform in [-value_range, value_range]."""
    caches, names, result = harness.cache_sizes(), list(calls), {}
    for shape in shapes:
        buffers = harness.Buffers(shape, caches, lo=-value_range, hi=value_range, dtype=dtype)
        samples = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(harness.measure(calls[name], buffers, repeats)[0])
            if progress:
                sys.stderr.write(f"\r{'x'.join(map(str, shape))}: round {r + 1}/{rounds}    ")
                sys.stderr.flush()
        result[shape] = samples
    if progress:
        sys.stderr.write("\n")
    return result


def run(shapes, rounds, repeats, progress=True, dtype=np.float32, function="softmax"):
    caches, itemsize, fn = harness.cache_sizes(), np.dtype(dtype).itemsize, getattr(twopass, function)
    calls = {a: (lambda x, y, a=a: fn(x, axis=-1, out=y, algorithm=a, threads=1)) for a in ALGORITHMS}
    rows = []
    for shape, samples in interleaved(shapes, calls, rounds, repeats, progress, dtype=dtype).items():
        median = {a: float(np.median(s)) for a, s in samples.items()}
        best = min(ALGORITHMS[1:], key=median.get)
        spread = (min(samples[best]) / median[best], max(samples[best]) / median[best])
        chosen = twopass._dispatch.auto_algorithm(twopass.runtime_info()["active_level"], shape[-1], itemsize,
                                                 int(np.prod(shape)), function)
        label = harness.cache_label(2 * itemsize * int(np.prod(shape)), caches)
        rows.append((shape, label, median, best, chosen, spread))
    return rows


# --row-lengths: each length n as a batch of JOB_ELEMENTS // n rows (32 MiB of float32 in, as much
# out: beyond the last-level cache here, so the job streams), for auto's out-of-cache row rule.
JOB_ELEMENTS = 1 << 23


def parse_interleaved_args(argv, doc, default_rounds, row_lengths=False, value_range=False, dtype=False):
    """(shapes, rounds, progress) from [--quick] [--rounds R] [--no-progress] [--shapes RxN,...] (and,
    if row_lengths, [--row-lengths N,N,...]; if value_range, [--range R], returned next; if dtype,
    [--dtype float32|float16|float64] and [--function softmax|log_softmax], returned last): the main
    benchmark's shapes, or its quick ones with 3 rounds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick shapes, 3 rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=default_rounds,
                        help=f"interleaved rounds per shape (default {default_rounds})")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    if value_range:
        parser.add_argument("--range", type=float, default=100.0,
                            help="inputs uniform in [-RANGE, RANGE] (default 100, as the main benchmark)")
    if dtype:
        parser.add_argument("--dtype", choices=("float32", "float16", "float64"), default="float32",
                            help="element type (default float32)")
        parser.add_argument("--function", choices=("softmax", "log_softmax"), default="softmax")
    instead = parser.add_mutually_exclusive_group()
    if row_lengths:
        instead.add_argument("--row-lengths", help=f"instead of the shapes: batches of {JOB_ELEMENTS} "
                             "elements in rows of these lengths (comma-separated)")
    instead.add_argument("--shapes", type=harness.parse_shapes, help="instead of the shapes: these, as ROWSxN,... "
                         "(e.g. 65536x64,8192x512)")
    args = parser.parse_args(argv)
    sizes, batches = (QUICK_SIZES, QUICK_BATCHES) if args.quick else (FULL_SIZES, FULL_BATCHES)
    shapes = args.shapes or [(1, n) for n in sizes] + list(batches)
    if getattr(args, "row_lengths", None):
        shapes = [(max(1, JOB_ELEMENTS // int(n)), int(n)) for n in args.row_lengths.split(",")]
    parsed = (shapes, 3 if args.quick else args.rounds, not args.no_progress)
    parsed += (args.range,) if value_range else ()
    return parsed + (np.dtype(args.dtype), args.function) if dtype else parsed


def main(argv=None):
    shapes, rounds, progress, dtype, function = parse_interleaved_args(argv, __doc__, 11, row_lengths=True,
                                                                       dtype=True)
    level = twopass.runtime_info()["active_level"]
    rows = run(shapes, rounds, 3, progress=progress, dtype=dtype, function=function)
    print(f"{function}, level {level}, {dtype}, single thread, out=; ns per element, medians of {rounds} "
          "interleaved rounds")
    print(f"{'shape':>12} {'cache':>5} " + " ".join(f"{a:>20}" for a in ALGORITHMS)
          + f" {'auto runs':>18} {'auto/best':>10} {'best spread':>12}")
    worst = 0.0
    for shape, label, median, best, chosen, spread in rows:
        n = int(np.prod(shape))
        ratio = median["auto"] / median[best]
        worst = max(worst, ratio)
        print(f"{'x'.join(map(str, shape)):>12} {label:>5} "
              + " ".join(f"{median[a] * 1e9 / n:>20.3f}" for a in ALGORITHMS)
              + f" {chosen:>18} {ratio:>10.3f} {spread[0]:>5.2f}-{spread[1]:<5.2f}{'' if ratio <= TOLERANCE else '  over 5%'}")
    print(f"worst auto / best fixed: {worst:.3f} (target <= {TOLERANCE})")


if __name__ == "__main__":
    main()

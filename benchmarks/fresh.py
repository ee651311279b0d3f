"""python -m benchmarks.fresh [--quick] [--steps S] [--shapes A,B,...] [--no-progress]: fresh results.

Each shape runs as users write a loop: every step makes a new float32 input (an astype, as from a
model's logits) and calls twopass.softmax(x, axis=-1) for a fresh result, which it then drops.
Reported per shape, single thread: ns per element (median over the steps) of that call, where the
results landed (bytes past the input modulo 4096, and how often), which allocator gave them
(NumPy's or twopass's output handler), and the same call with out= into one preallocated array
placed 2048 bytes past the input, the speed with no page faults and no 4K aliasing.

What it shows (README, "Fresh outputs and the output cache"): below 256 KiB results stay where
NumPy's allocator puts them; from there a result put 1-128 bytes past its input is placed anew; from
16 MiB every result comes from the output cache, whose blocks keep their pages between calls.
"""
import argparse
import sys

from benchmarks.peers import pin_one_thread

pin_one_thread()

import time  # noqa: E402

import numpy as np  # noqa: E402

import twopass  # noqa: E402
from benchmarks.aliasing import placed  # noqa: E402

try:
    from numpy._core.multiarray import get_handler_name  # noqa: E402
except ImportError:  # NumPy < 2
    from numpy.core.multiarray import get_handler_name  # noqa: E402

SHAPES = "100000,262144,1048576,4194304,8000000,4096x1000,256x32000,32x128256"


def parse_shapes(text):
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]


def run_shape(shape, steps):
    """(fresh ns/element, out= ns/element, {distance: count}, {handler: count}) over the steps."""
    base = np.random.default_rng(0).uniform(-10, 10, shape)
    size = int(np.prod(shape))
    fresh, bound, distances, handlers = [], [], {}, {}
    buffer = np.empty(size + 2048, np.float32)
    for step in range(steps):
        x = (base + step).astype(np.float32)
        start = time.perf_counter()
        y = twopass.softmax(x, axis=-1)
        fresh.append(time.perf_counter() - start)
        d = (y.ctypes.data - x.ctypes.data) % 4096
        distances[d] = distances.get(d, 0) + 1
        name = get_handler_name(y)
        handlers[name] = handlers.get(name, 0) + 1
        del y
        out = placed(buffer, x, 2048)
        start = time.perf_counter()
        twopass.softmax(x, axis=-1, out=out)
        bound.append(time.perf_counter() - start)
        del x
    return float(np.median(fresh)) / size * 1e9, float(np.median(bound)) / size * 1e9, distances, handlers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small shapes, 3 steps (smoke run)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shapes", default=SHAPES,
                        help=f"comma-separated, rows x columns or n (default {SHAPES})")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        shapes, steps = parse_shapes("300000,64x5000"), 3
    else:
        shapes, steps = parse_shapes(args.shapes), args.steps
    print(f"level {twopass.runtime_info()['active_level']}, float32, single thread, {steps} steps per shape; "
          "ns per element, medians over the steps")
    print(f"{'shape':>12} {'fresh':>7} {'out=':>7}  "
          "where fresh results landed (bytes past x mod 4096: steps), allocator")
    for i, shape in enumerate(shapes):
        fresh, bound, distances, handlers = run_shape(shape, steps)
        where = ", ".join(f"{d}: {n}" for d, n in sorted(distances.items(), key=lambda kv: -kv[1])[:3])
        who = ", ".join(f"{h} {n}" for h, n in handlers.items())
        print(f"{'x'.join(map(str, shape)):>12} {fresh:7.3f} {bound:7.3f}  {where}; {who}")
        if not args.no_progress:
            sys.stderr.write(f"\r{i + 1}/{len(shapes)} shapes   ")
            sys.stderr.flush()
    if not args.no_progress:
        sys.stderr.write("\n")


if __name__ == "__main__":
    main()

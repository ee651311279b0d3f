"""python -m twopass: print the runtime report, then compare twopass with NumPy on a large array."""
import argparse
import time

import numpy as np

import twopass


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _max_relative_error(y, reference):
    """max |y - ref| / max(ref, FLT_MIN), where an output flushed to 0 below 2^-125 counts as exact
    (the kernels' documented flush of results whose power-of-two scale falls below 2^-126)."""
    err = np.abs(y - reference) / np.maximum(reference, np.finfo(np.float32).tiny)
    err[(y == 0) & (reference < 2.0**-125)] = 0.0
    return float(err.max())


def _numpy_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m twopass", description=__doc__)
    parser.add_argument("--rows", type=int, default=256, help="rows of the demo array")
    parser.add_argument("--cols", type=int, default=32000, help="softmax length (last axis)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    twopass.show_runtime()
    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 100, size=(args.rows, args.cols)).astype(np.float32)
    reference = _numpy_softmax(x.astype(np.float64), -1)
    out = np.empty_like(x)
    print(f"\nsoftmax over the last axis of a {args.rows}x{args.cols} float32 array "
          f"({x.nbytes / 2**20:.0f} MiB), median of {args.repeats} runs, single thread:")
    numpy_time = _median_seconds(lambda: _numpy_softmax(x, -1), args.repeats)
    err = _max_relative_error(_numpy_softmax(x, -1), reference)
    print(f"  {'numpy exp(x - max) / sum':<36} {numpy_time * 1e3:8.2f} ms   1.00x   max rel err {err:.1e}")
    for level in twopass.available_levels():
        with twopass.use_isa(level):
            for algorithm in twopass.ALGORITHMS[1:]:
                t = _median_seconds(lambda: twopass.softmax(x, axis=-1, out=out, algorithm=algorithm, threads=1),
                                    args.repeats)
                err = _max_relative_error(out, reference)
                label = f"twopass {level} {algorithm}"
                print(f"  {label:<36} {t * 1e3:8.2f} ms {numpy_time / t:6.2f}x   max rel err {err:.1e}")
    threads = twopass.get_num_threads()
    if threads > 1:
        t = _median_seconds(lambda: twopass.softmax(x, axis=-1, out=out), args.repeats)
        label = f"twopass {twopass.available_levels()[-1]} auto, {threads} threads"
        print(f"  {label:<36} {t * 1e3:8.2f} ms {numpy_time / t:6.2f}x   max rel err "
              f"{_max_relative_error(out, reference):.1e}")


if __name__ == "__main__":
    main()

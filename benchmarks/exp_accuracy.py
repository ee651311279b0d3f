"""python -m benchmarks.exp_accuracy [--step K]: ULP error of the float32 exp cores, exhaustively.

Every float32 x in [-87.33, 88.72] (where exp(x) is a normal float32), by bit pattern, goes through
both exp paths of each kernel level this CPU has: the extended-exponent one of two-pass
(vscaleextexp: exp(x) * 2^-E) and the shifted one of three-pass (vscaleexpminusmax), in runs of 2^22
consecutive floats scaled by 2^-E with E = round(max * log2 e) + 1: the drivers' E plus one, so that
the results (at most 0.71: the binades of the drivers' outputs, up to 1.41, halved, so the same
ULPs) stay below the kernels' clamp at 1. The reference is exp in float64 (within 1e-16 relative,
far below a float32 ULP). --step K checks every K-th float instead (the tests use a dense sample;
this script is the exhaustive check).
"""
import argparse
import time

import numpy as np

import twopass
from twopass import _dispatch

LOG2E = np.float32(1.4426950408889634)
LO, HI = np.float32(-87.33), np.float32(88.72)
RUN = 1 << 22


def bit_ranges(step):
    """Bit patterns of the floats in [LO, 0) and [0, HI], as int32 arrays of at most RUN, every step-th."""
    neg_end = (-LO).view(np.int32)
    for start in range(0, int(neg_end) + 1, RUN * step):
        bits = np.arange(start, min(start + RUN * step, int(neg_end) + 1), step, dtype=np.int32)
        yield -bits.view(np.float32)
    pos_end = HI.view(np.int32)
    for start in range(0, int(pos_end) + 1, RUN * step):
        bits = np.arange(start, min(start + RUN * step, int(pos_end) + 1), step, dtype=np.int32)
        yield bits.view(np.float32)


def check(level, op, step):
    name = _dispatch._kernels.kernel_names(twopass.LEVELS.index(level))[op]
    worst, worst_x, total, above_one = 0.0, None, 0, 0
    for x in bit_ranges(step):
        x = np.ascontiguousarray(x)
        exponent = float(np.rint(x.max() * LOG2E)) + 1.0
        y = np.empty_like(x)
        if op == "vscaleextexp":
            _dispatch._kernels.run_kernel(name, x, y, 1.0, exponent)
        else:
            _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent, 1.0)
        ref = np.exp(x.astype(np.float64)) * 2.0**-exponent
        keep = ref >= 2.0**-125  # the kernels flush results below 2^-126 (README)
        err = np.abs(y[keep] - ref[keep]) / np.spacing(ref[keep].astype(np.float32)).astype(np.float64)
        total += int(keep.sum())
        above_one += int((err > 1.0).sum())
        if err.size and err.max() > worst:
            worst, worst_x = float(err.max()), float(x[keep][err.argmax()])
    return {"level": level, "op": op, "kernel": name, "inputs": total, "max_ulp": worst,
            "at_x": worst_x, "share_above_1_ulp": above_one / max(total, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exp_accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=1, help="check every step-th float32 (1: all)")
    args = parser.parse_args(argv)
    for level in twopass.available_levels()[1:]:
        for op in ("vscaleextexp", "vscaleexpminusmax"):
            start = time.perf_counter()
            r = check(level, op, args.step)
            print(f"{r['level']:8} {r['op']:18} {r['inputs']:>11,d} inputs  max {r['max_ulp']:.3f} ULP "
                  f"at x = {r['at_x']!r}  ({100 * r['share_above_1_ulp']:.4f}% above 1 ULP)  "
                  f"{time.perf_counter() - start:.0f} s  [{r['kernel']}]")


if __name__ == "__main__":
    main()

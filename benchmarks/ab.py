"""A/B of twopass builds: the same calls on two or more builds, in alternating processes.

    python -m benchmarks.ab [--quick] [--rounds R] [--shapes RxN,...] [--function softmax|log_softmax]
                            [--algorithm auto|two_pass|...] [--axis -1|0] [--dtype float32|float16|float64]
                            [--range R] [BUILD ...]

A BUILD is a directory holding a `twopass` package (e.g. a copy of pyx/ after `python setup.py
build_ext --inplace` of one commit). Each round runs every build once, each in a fresh process with
that directory first on sys.path, starting one build later than the round before (the first
process of a round can be slower), so a slow spell of a shared machine hits all builds alike; every
figure is the median over the rounds of the per-process median time, in ns per element, one
thread, with `out=`. Without builds it runs the importable twopass twice: the noise floor.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.harness import parse_shapes
from benchmarks.peers import pin_one_thread


def measure_here(args):
    """The child process's work, on the twopass it imports: {shape: ns per element}."""
    import twopass  # the build on this child's PYTHONPATH, pinned to one thread by the parent
    fn = getattr(twopass, args["function"])
    rng = np.random.default_rng(0)
    out = {"twopass": twopass.__file__}
    for rows, n in args["shapes"]:
        shape = (rows, n) if rows > 1 else (n,)
        x = rng.uniform(-args["range"], args["range"], shape).astype(args["dtype"])
        y = np.empty_like(x)
        axis = args["axis"] if x.ndim == 2 else -1
        call = lambda: fn(x, axis=axis, out=y, algorithm=args["algorithm"], threads=1)  # noqa: E731
        call()
        times = []
        for _ in range(max(5, min(300, int(3e7 / x.size)))):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[f"{rows}x{n}"] = float(np.median(times)) * 1e9 / x.size
    return out


QUICK_SHAPES = [(1, 1000), (1, 100000)]
SHAPES = [(1, 1000), (1, 10000), (1, 100000), (1, 1000000), (256, 32000), (4096, 1000)]


def measure(build, args):
    """One process on one build: {shape: ns per element}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = (build, root, os.environ.get("PYTHONPATH", ""))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    run = subprocess.run([sys.executable, "-m", "benchmarks.ab", "--child", json.dumps(args)], env=env,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"benchmarks.ab: the run on {build or 'the importable twopass'} failed:\n{run.stderr}")
    return json.loads(run.stdout.splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one measuring process (measure)
        print(json.dumps(measure_here(json.loads(argv[1]))))
        return
    pin_one_thread()  # the children inherit it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="*", help="directories holding a twopass package (default: the "
                        "importable twopass, twice)")
    parser.add_argument("--quick", action="store_true", help="two shapes, 2 rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of one process per build (default 7)")
    parser.add_argument("--shapes", type=parse_shapes, help="ROWSxN,... (1xN: a 1-D array of N)")
    parser.add_argument("--function", choices=["softmax", "log_softmax"], default="softmax")
    parser.add_argument("--algorithm", default="auto")
    parser.add_argument("--axis", type=int, choices=[-1, 0], default=-1, help="0: down the columns of 2-D shapes")
    parser.add_argument("--dtype", choices=["float32", "float16", "float64"], default="float32")
    parser.add_argument("--range", type=float, default=10.0, help="inputs uniform in [-RANGE, RANGE] (default 10)")
    opts = parser.parse_args(argv)
    builds = [os.path.abspath(b) for b in opts.builds] or ["", ""]
    for b in builds:
        if b and not os.path.isfile(os.path.join(b, "twopass", "__init__.py")):
            parser.error(f"{b} holds no twopass package")
    shapes = opts.shapes or (QUICK_SHAPES if opts.quick else SHAPES)
    rounds = 2 if opts.quick else opts.rounds
    args = dict(shapes=shapes, function=opts.function, algorithm=opts.algorithm, axis=opts.axis,
                dtype=opts.dtype, range=opts.range)
    samples = [[] for _ in builds]
    for r in range(rounds):  # each round starts one build later, so none is always first
        for i in [(r + k) % len(builds) for k in range(len(builds))]:
            samples[i].append(measure(builds[i], args))
    files = [s[0]["twopass"] for s in samples]
    print(f"{opts.function}, algorithm={opts.algorithm}, axis={opts.axis}, {opts.dtype} in "
          f"[-{opts.range:g}, {opts.range:g}], out=, one thread; ns per element, medians of {rounds} rounds")
    for i, f in enumerate(files):
        print(f"  build {chr(65 + i)}: {f}")
    print(f"{'shape':>12} " + " ".join(f"{chr(65 + i):>8}" for i in range(len(builds))) + "   A / each")
    for rows, n in shapes:
        key = f"{rows}x{n}"
        medians = [float(np.median([s[key] for s in per_build])) for per_build in samples]
        print(f"{key:>12} " + " ".join(f"{m:8.3f}" for m in medians) + "   "
              + " ".join(f"{medians[0] / m:.3f}" for m in medians[1:]))


if __name__ == "__main__":
    main()

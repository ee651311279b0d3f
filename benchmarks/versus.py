"""twopass against ONNX Runtime (the fastest peer) and torch, interleaved (issue 3's peer targets).

    python -m benchmarks.versus [--quick] [--rounds R] [--range R] [--shapes RxN,...] [--no-progress]

The main benchmark times each column once after another; on a shared machine a slow spell then
lands on one column only (out of cache, two columns running the same code differ by up to 30% in
one run). Here, as in benchmarks.auto, every shape is measured in rounds that time each contender
once, the next round starting one contender later, and each figure is the median over the rounds.
Like is compared with like: `out=` against ONNX Runtime's preallocated (io-binding) output and
torch's out=, fresh outputs against the peers that allocate. Single thread (peers pinned to one),
float32, softmax over the last axis, the main benchmark's shapes and buffers.
"""
from benchmarks.peers import available_peers, pin_one_thread

pin_one_thread()

import numpy as np  # noqa: E402

import twopass  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.auto import interleaved, parse_interleaved_args  # noqa: E402


def contenders():
    calls = {"twopass out=": lambda x, y: twopass.softmax(x, axis=-1, out=y, threads=1),
             "twopass fresh": lambda x, y: twopass.softmax(x, axis=-1, threads=1)}
    missing = []
    for name, (call, _) in available_peers(missing).items():
        if name.startswith(("onnxruntime", "torch")):
            calls[name] = call
    for peer in missing:
        if peer.startswith(("ONNX", "torch")):
            print("not measured:", peer)
    return calls


def main(argv=None):
    shapes, rounds, progress, value_range = parse_interleaved_args(argv, __doc__, 9, value_range=True)
    calls = contenders()
    result = interleaved(shapes, calls, rounds, 3, progress=progress, value_range=value_range)
    caches = harness.cache_sizes()
    names = list(calls)
    print(f"level {twopass.runtime_info()['active_level']}, single thread, inputs in [-{value_range:g}, {value_range:g}]; "
          f"ns per element, medians of "
          f"{rounds} interleaved rounds; ratios: peer time / twopass time of the same kind (out= or fresh)")
    peers = [n for n in names if not n.startswith("twopass")]
    print(f"{'shape':>12} {'cache':>5} " + " ".join(f"{n:>26}" for n in names)
          + " " + " ".join(f"{n + ' / twopass':>36}" for n in peers))
    for shape, samples in result.items():
        n = int(np.prod(shape))
        median = {k: float(np.median(v)) for k, v in samples.items()}
        ratios = [median[p] / median["twopass out=" if p.endswith("out=") else "twopass fresh"] for p in peers]
        print(f"{'x'.join(map(str, shape)):>12} {harness.cache_label(8 * n, caches):>5} "
              + " ".join(f"{median[k] * 1e9 / n:>26.3f}" for k in names)
              + " " + " ".join(f"{r:>36.2f}" for r in ratios))


if __name__ == "__main__":
    main()

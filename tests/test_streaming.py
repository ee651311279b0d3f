"""Non-temporal stores. Jobs whose output reaches the streaming threshold (half the last-level
cache) run the level's streaming table, whose elementwise passes (vscaleextexp, vscaleexpminusmax,
vsubc) store with VMOVNTPS from the first aligned vector on. The values are those of ordinary
stores: bitwise the same results, for every fixed algorithm (auto picks among them by the job:
test_dispatch), misalignment and tail, with nothing written
outside the output. (The _nt kernels themselves are also tested one by one in test_kernels.py.)"""
import numpy as np
import pytest

import twopass
from twopass import _dispatch, kernels

KERNEL_LEVELS = [lv for lv in twopass.available_levels() if lv != "python"]
SENTINEL = np.float32(-7.25)


@pytest.fixture
def restore_threshold():
    saved = kernels.streaming_threshold()
    yield
    kernels.set_streaming_threshold(saved)


def run(function, x, algorithm, offset, streaming):
    """function(x) into a float32 buffer at `offset` floats past a 64-byte boundary, with or without
    streaming; returns the result, whether the job streamed, and the buffer's sentinels intact."""
    kernels.set_streaming_threshold(1 if streaming else (1 << 62))
    buf = np.full(x.size + 64, SENTINEL, np.float32)
    start = (-buf.ctypes.data % 64) // 4 + offset
    y = buf[start:start + x.size]
    before = kernels.thread_stats()["streaming_jobs"]
    function(x, out=y, algorithm=algorithm, threads=1)
    streamed = kernels.thread_stats()["streaming_jobs"] - before
    outside = np.concatenate([buf[:start], buf[start + x.size:]])
    return y.copy(), streamed, bool(np.all(outside == SENTINEL))


@pytest.mark.parametrize("level", KERNEL_LEVELS)
@pytest.mark.parametrize("function", [twopass.softmax, twopass.log_softmax], ids=lambda f: f.__name__)
def test_streaming_stores_give_the_same_bits(level, function, restore_threshold):
    rng = np.random.default_rng(3)
    with twopass.use_isa(level):
        for n in (1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 4097, 70_001):
            x = rng.uniform(-60, 60, n).astype(np.float32)
            for offset in (0, 1, 5, 15):
                for algorithm in twopass.ALGORITHMS[1:]:  # auto: one of these, by job (test_dispatch)
                    plain, plain_streamed, plain_ok = run(function, x, algorithm, offset, False)
                    nt, streamed, ok = run(function, x, algorithm, offset, True)
                    what = (n, offset, algorithm)
                    assert (plain_streamed, streamed) == (0, 1), what
                    assert plain_ok and ok, f"{what}: a write outside the output"
                    np.testing.assert_array_equal(nt, plain, err_msg=str(what))


def test_default_threshold_is_half_the_last_level_cache():
    assert kernels.streaming_threshold() == _dispatch.STREAMING_FROM_BYTES == max(1, _dispatch.LAST_LEVEL_CACHE // 2)
    info = twopass.runtime_info()["streaming_stores"]
    if KERNEL_LEVELS:
        assert info["from_output_bytes"] == _dispatch.STREAMING_FROM_BYTES
        assert set(info["kernels"]) <= {"vscaleextexp", "vscaleexpminusmax", "vsubc", "vscaleextexp_columns",
                                        "vsubc_columns"}
        assert {"vscaleextexp", "vscaleexpminusmax", "vsubc"} <= set(info["kernels"])
        assert all(name.endswith("_nt") for name in info["kernels"].values())

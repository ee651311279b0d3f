"""Dispatch: levels, TWOPASS_ISA, use_isa, runtime_info, and proof that the forced level ran."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import twopass
from twopass import _dispatch

from conftest import LEVELS


def calls():
    return twopass.runtime_info()["calls"]


def test_forced_level_is_the_one_that_ran(level, algorithm):
    x = np.linspace(-5, 5, 1000, dtype=np.float32)
    before = calls()
    twopass.softmax(x, algorithm=algorithm)
    after = calls()
    ran = {name for name in after if after[name] != before[name]}
    assert ran == {level}
    info = twopass.runtime_info()
    assert info["active_level"] == level
    if level == "python":
        assert "fallback" in info["kernels"]["float32"]
    else:
        names = info["kernels"]["float32"]
        assert set(names) == set(_dispatch._kernels.OP_NAMES)
        assert all(f"__{level}_" in name for name in names.values())


def test_use_isa_restores_the_level():
    outer = _dispatch.current_level()
    with twopass.use_isa("python"):
        assert _dispatch.current_level() == "python"
    assert _dispatch.current_level() == outer


@pytest.mark.parametrize("bad", ["sse9", "AVX2 ", "", None, 3])
def test_use_isa_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match="valid choices: python"):
        with twopass.use_isa(bad):
            pass


def test_use_isa_rejects_levels_above_the_process_level():
    unavailable = [lv for lv in twopass.LEVELS if lv not in LEVELS]
    for lv in unavailable:
        with pytest.raises(ValueError, match="not available"):
            with twopass.use_isa(lv):
                pass


def test_kernel_layer_refuses_levels_the_cpu_lacks():
    kernels = _dispatch._kernels
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError):
        kernels.softmax_f32_rows(x, x.copy(), 0, kernels.best_level() + 1)
    with pytest.raises(ValueError):
        kernels.softmax_f32_rows(x, x.copy(), 0, 0)


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.pop("TWOPASS_ISA", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True)


@pytest.mark.parametrize("cap", LEVELS)
def test_environment_caps_the_process_level(cap):
    result = run_python("import twopass, numpy as np; twopass.softmax(np.ones(10, np.float32));"
                        "i = twopass.runtime_info(); print(i['active_level'], i['calls'])",
                        TWOPASS_ISA=cap)
    assert result.returncode == 0, result.stderr
    level, counts = result.stdout.split(" ", 1)
    assert level == cap
    assert f"'{cap}': 1" in counts


@pytest.mark.parametrize("bad", ["avx1024", "neon"])
def test_environment_rejects_unknown_levels(bad):
    result = run_python("import twopass", TWOPASS_ISA=bad)
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "valid choices" in result.stderr


def test_environment_rejects_levels_the_cpu_lacks():
    missing = [lv for lv in twopass.LEVELS if lv not in _dispatch.LEVELS[: _dispatch.LEVELS.index(_dispatch.BEST_LEVEL) + 1]]
    for lv in missing:
        result = run_python("import twopass", TWOPASS_ISA=lv)
        assert result.returncode != 0 and "not available" in result.stderr


def test_runtime_info_and_show_runtime(capsys):
    info = twopass.runtime_info()
    assert info["extension"] == "loaded"
    assert info["best_level"] in twopass.LEVELS
    assert info["available_levels"] == LEVELS
    features = info["cpu_features"]
    assert features["sse2"] is True
    if info["best_level"] == "avx512f":
        assert features["avx512f"] and features["os_zmm"]
    if info["best_level"] in ("avx2", "avx512f"):
        assert features["avx2"] and features["fma"] and features["os_ymm"]
    twopass.show_runtime()
    shown = capsys.readouterr().out
    assert "active_level" in shown and info["best_level"] in shown


def test_cpu_vendor_is_the_one_linux_reports():
    """cpu_features()["intel"] (CPUID leaf 0) agrees with /proc/cpuinfo's vendor_id."""
    try:
        with open("/proc/cpuinfo") as f:
            vendors = {line.split(":")[1].strip() for line in f if line.startswith("vendor_id")}
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if not vendors:
        pytest.skip("no vendor_id in /proc/cpuinfo (not x86)")
    assert len(vendors) == 1
    assert twopass.runtime_info()["cpu_features"]["intel"] is (vendors.pop() == "GenuineIntel")


def test_main_module_runs():
    result = subprocess.run([sys.executable, "-m", "twopass", "--rows", "8", "--cols", "1000", "--repeats", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "twopass runtime" in result.stdout
    for level in LEVELS:
        assert f"twopass {level} two_pass" in result.stdout
    # the demo's own accuracy report (the kernels' flush policy applied, as in the tests)
    errors = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()
              if line.strip().startswith("twopass ") and "max rel err" in line]
    assert errors and max(errors) <= 1e-6, result.stdout


def test_package_works_without_the_extension():
    """Where the compiled extension cannot load (another architecture, a broken build), twopass
    still imports, runs the NumPy fallback and says why."""
    code = ("import sys; sys.modules['twopass.kernels'] = None\n"
            "import numpy as np, twopass\n"
            "info = twopass.runtime_info()\n"
            "assert info['extension'].startswith('not loaded: ModuleNotFoundError'), info['extension']\n"
            "assert info['best_level'] == 'python' and info['available_levels'] == ['python'], info\n"
            "y = twopass.softmax(np.array([1.0, 2.0, 3.0], np.float32))\n"
            "e = np.exp([1.0, 2.0, 3.0]); assert np.allclose(y, e / e.sum(), rtol=1e-6), y\n"
            "assert twopass.runtime_info()['calls']['python'] == 1\n"
            "twopass.show_runtime()\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "not loaded" in result.stdout


def test_algorithm_indices_match_the_c_enum():
    """The names twopass._api maps to kernel algorithms cover enum twopass_algorithm exactly (the
    typed layer's fast path takes its table from there)."""
    from twopass import _api
    if _dispatch._kernels is None:
        return
    assert sorted(_api._KERNEL_ALGORITHM.values()) == list(range(_dispatch._kernels.ALGORITHM_COUNT))
    assert set(twopass.ALGORITHMS) == {"auto"} | set(_api._KERNEL_ALGORITHM)


@pytest.mark.parametrize("vendor", ["intel", "other"])
def test_auto_rule(monkeypatch, vendor):
    """auto_algorithm: reload in cache (blocked_reload for float32 and float64 rows of
    AUTO_BLOCKED_RELOAD_FROM elements or more, off on Intel); two_pass for rows beyond the last-level
    cache and for rows of AUTO_TWO_PASS_ROW_BYTES (AUTO_BLOCKED_TWO_PASS_ROW_BYTES where blocked_reload
    would run) or more in jobs whose output streams, float16 rows counting 4 bytes per element there, float64 only with AUTO_F64_TWO_PASS (Intel; longdouble, on the
    NumPy fallback, as before); python: reload.
    Both vendors' settings, whatever this CPU is (its own: test_auto_settings_follow_the_cpu; the
    other Intel clauses, off here: test_auto_rule_beyond_l2 and test_auto_float16)."""
    intel = vendor == "intel"
    blocked_from = 1 << 62 if intel else 3072
    monkeypatch.setattr(_dispatch, "AUTO_TWO_PASS_L2_JOB_BYTES", 1 << 62)
    monkeypatch.setattr(_dispatch, "AUTO_F16_TWO_PASS_ROW_BYTES", (1 << 62,) * 3)
    monkeypatch.setattr(_dispatch, "AUTO_BLOCKED_RELOAD_FROM", blocked_from)
    monkeypatch.setattr(_dispatch, "AUTO_F64_TWO_PASS", intel)
    auto = _dispatch.auto_algorithm
    for level in LEVELS:
        native = level != "python"

        def reload(n, itemsize):  # blocked for float32 and float64, not float16 or longdouble
            return "blocked_reload" if native and itemsize in (4, 8) and n >= blocked_from else "three_pass_reload"

        def two_pass(n, itemsize):
            return "two_pass" if native and (itemsize != 8 or intel) else reload(n, itemsize)
        for itemsize in (2, 4, 8, 16):
            assert auto(level, 1000, itemsize, 1000) == "three_pass_reload"
            assert auto(level, 3071, itemsize, 1 << 20) == "three_pass_reload"
            assert auto(level, 3072, itemsize, 1 << 20) == reload(3072, itemsize)
            longest = _dispatch.AUTO_TWO_PASS_FROM // (1 if itemsize <= 4 else 2)
            assert auto(level, longest, itemsize) == two_pass(longest, itemsize)
            if itemsize != 16:  # (a longdouble row that long streams: the next clause)
                assert auto(level, longest - 1, itemsize) == reload(longest - 1, itemsize)
            # the streaming rows: from AUTO_BLOCKED_TWO_PASS_ROW_BYTES for rows blocked_reload would take
            blocked = itemsize in (4, 8) and not intel
            row = _dispatch.AUTO_BLOCKED_TWO_PASS_ROW_BYTES if blocked else _dispatch.AUTO_TWO_PASS_ROW_BYTES
            n = row // max(itemsize, 4)  # float16: float32's row (reload keeps its exps in float32)
            to_stream = -(-_dispatch.STREAMING_FROM_BYTES // (n * itemsize))  # rows whose output streams
            assert auto(level, n, itemsize, n * to_stream) == two_pass(n, itemsize)
            assert auto(level, n, itemsize, n * (to_stream - 1)) == reload(n, itemsize)
            assert auto(level, n - 1, itemsize, n * to_stream * 2) == reload(n - 1, itemsize)


def test_auto_settings_follow_the_cpu():
    """blocked_reload and float64's two_pass clauses by vendor: measured on AMD (Zen 3), where
    blocked_reload takes rows of 3072 elements or more and float64 never runs two_pass; Intel keeps
    the rules measured there."""
    intel = bool(twopass.runtime_info()["cpu_features"].get("intel"))
    assert _dispatch.AUTO_F64_TWO_PASS == intel
    # more than the 2048 elements of one span (two sum blocks), which blocked_reload runs as reload
    assert _dispatch.AUTO_BLOCKED_RELOAD_FROM == (1 << 62 if intel else 3072)


def test_auto_rule_beyond_l2(monkeypatch):
    """The Intel clause: two_pass for float32 rows of AUTO_TWO_PASS_L2_ROW_BYTES or more once the job,
    input and output, exceeds AUTO_TWO_PASS_L2_JOB_BYTES (the L2 there; off elsewhere), whatever this
    CPU is; float64 keeps reload."""
    assert _dispatch.AUTO_TWO_PASS_L2_JOB_BYTES == (
        3 * _dispatch.L2_CACHE // 4 if twopass.runtime_info()["cpu_features"].get("intel") else 1 << 62)
    monkeypatch.setattr(_dispatch, "AUTO_TWO_PASS_L2_JOB_BYTES", 1 << 21)
    monkeypatch.setattr(_dispatch, "AUTO_TWO_PASS_FROM", 1 << 62)  # the other clauses off, whatever the caches
    monkeypatch.setattr(_dispatch, "AUTO_TWO_PASS_ROW_BYTES", 1 << 62)
    monkeypatch.setattr(_dispatch, "AUTO_BLOCKED_RELOAD_FROM", 1 << 62)  # Intel's setting
    monkeypatch.setattr(_dispatch, "AUTO_F64_TWO_PASS", True)
    auto, row = _dispatch.auto_algorithm, _dispatch.AUTO_TWO_PASS_L2_ROW_BYTES
    for level in LEVELS:
        native = level != "python"
        for itemsize in (4, 8):
            n, job = row // itemsize, (1 << 21) // (2 * itemsize)  # job: elements that fill 2 MiB in and out
            expected = "two_pass" if native and itemsize == 4 else "three_pass_reload"
            assert auto(level, n, itemsize, job + 1) == expected
            assert auto(level, job + 1, itemsize) == expected
            assert auto(level, n, itemsize, job) == "three_pass_reload"
            assert auto(level, job, itemsize) == "three_pass_reload"
            assert auto(level, n - 1, itemsize, 64 * job) == "three_pass_reload"


@pytest.mark.skipif(twopass.available_levels() == ["python"], reason="no kernel level on this CPU")
def test_auto_float16(monkeypatch):
    """The Intel clause of float16 (AUTO_F16_TWO_PASS_ROW_BYTES: 4 L2 on avx2, 5/4 of it on avx512f;
    off elsewhere): two_pass for rows of over that many bytes at 8 per element, whatever the job, on
    both paths of twopass.softmax, each level its own; reload below."""
    l2 = _dispatch.L2_CACHE
    assert _dispatch.AUTO_F16_TWO_PASS_ROW_BYTES == ((1 << 62, 4 * l2, 5 * l2 // 4)
                                                     if twopass.runtime_info()["cpu_features"].get("intel")
                                                     else (1 << 62,) * 3)
    monkeypatch.setattr(_dispatch, "AUTO_F16_TWO_PASS_ROW_BYTES", (1 << 62, 8 * 900, 8 * 1000))
    kernels = _dispatch._kernels
    two_pass_slices = lambda: kernels.thread_stats()["two_pass_slices"]  # noqa: E731

    def configure():
        _dispatch.configure_fast_path_auto()
    configure()
    rng = np.random.default_rng(8)
    try:
        for level in twopass.available_levels()[1:]:
            longest = 900 if level == "avx2" else 1000  # the longest row reload takes
            assert _dispatch.auto_algorithm(level, longest, 2, 1 << 30) == "three_pass_reload"
            assert _dispatch.auto_algorithm(level, longest + 1, 2, longest + 1) == "two_pass"
            assert _dispatch.auto_algorithm(level, longest + 1, 4, longest + 1) == "three_pass_reload"  # float16's
            assert _dispatch.auto_algorithm("python", longest + 1, 2) == "three_pass_reload"
            with twopass.use_isa(level):
                for n, chosen in ((longest, "three_pass_reload"), (longest + 1, "two_pass")):
                    x = rng.uniform(-4, 4, (300, n)).astype(np.float16)
                    expected = twopass.softmax(x, axis=-1, algorithm=chosen)
                    for given in (x, x.astype(x.dtype.newbyteorder())):  # the fast path, twopass._api's
                        # (two-pass and reload can give the same bits on AVX2: the count of slices
                        # that two-pass's pass 1 summed tells them apart)
                        before = two_pass_slices()
                        np.testing.assert_array_equal(twopass.softmax(given, axis=-1), expected, err_msg=f"{n}")
                        assert two_pass_slices() - before == (300 if chosen == "two_pass" else 0), (n, chosen)
    finally:
        monkeypatch.undo()
        configure()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_auto_log_softmax(level, dtype, monkeypatch):
    """log_softmax's own rule: two_pass for rows of AUTO_LOG_SOFTMAX_TWO_PASS_FROM elements or more
    (512), three_pass_reload below, whatever the job; the same on the fast path (C-contiguous,
    native order) and on twopass._api's (byteswapped); the python level always reloads. Also with
    the threshold moved, so that the fast path is seen to take it from configure_auto."""
    kernels = _dispatch._kernels
    assert _dispatch.AUTO_LOG_SOFTMAX_TWO_PASS_FROM == 512
    rng = np.random.default_rng(9)

    def configure():
        _dispatch.configure_fast_path_auto()
    try:
        for threshold in (512, 300):
            monkeypatch.setattr(_dispatch, "AUTO_LOG_SOFTMAX_TWO_PASS_FROM", threshold)
            configure()
            for n in (threshold - 1, threshold):
                want = "two_pass" if level != "python" and n >= threshold else "three_pass_reload"
                assert _dispatch.auto_algorithm(level, n, np.dtype(dtype).itemsize, 1 << 30, "log_softmax") == want
                x = rng.uniform(-4, 4, (400, n)).astype(dtype)
                expected = twopass.log_softmax(x, axis=-1, algorithm=want)
                if level != "python" and dtype == np.float64:  # the choice shows in the bits (float32's
                    # logsumexp as hi + lo makes both algorithms agree, and the fast path's rule does
                    # not look at the dtype)
                    other = "two_pass" if want == "three_pass_reload" else "three_pass_reload"
                    assert not np.array_equal(twopass.log_softmax(x, axis=-1, algorithm=other), expected)
                for given in (x, x.astype(x.dtype.newbyteorder())):
                    np.testing.assert_array_equal(twopass.log_softmax(given, axis=-1), expected, err_msg=f"{n}")
    finally:
        monkeypatch.undo()
        configure()


@pytest.fixture
def small_streaming_threshold():
    """Jobs of 256 KiB and more stream (and so take auto's streaming-job rule)."""
    kernels = _dispatch._kernels
    saved = kernels.streaming_threshold()
    kernels.set_streaming_threshold(256 * 1024)
    yield
    kernels.set_streaming_threshold(saved)


@pytest.fixture(params=["off", "small"])
def l2_job_bytes(request, monkeypatch):
    """auto's Intel clause off, or on for jobs over 256 KiB (in twopass._dispatch and the fast path)."""
    kernels = _dispatch._kernels
    job = 1 << 62 if request.param == "off" else 256 * 1024
    monkeypatch.setattr(_dispatch, "AUTO_TWO_PASS_L2_JOB_BYTES", job)

    def configure():
        _dispatch.configure_fast_path_auto()
    configure()
    yield job
    monkeypatch.undo()
    configure()


@pytest.fixture(params=["intel", "other"])
def vendor_rules(request, monkeypatch):
    """auto's blocked_reload and float64 settings of either vendor, whatever this CPU is (in
    twopass._dispatch and the fast path)."""
    intel = request.param == "intel"
    monkeypatch.setattr(_dispatch, "AUTO_BLOCKED_RELOAD_FROM", 1 << 62 if intel else 3072)
    monkeypatch.setattr(_dispatch, "AUTO_F64_TWO_PASS", intel)
    _dispatch.configure_fast_path_auto()
    yield request.param
    monkeypatch.undo()
    _dispatch.configure_fast_path_auto()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_auto_runs_the_algorithm_of_its_rule(level, dtype, small_streaming_threshold, l2_job_bytes, vendor_rules):
    """softmax and log_softmax with "auto" give bitwise the results of the algorithm auto_algorithm
    names for the job, on the typed layer's fast path and on twopass._api's (byteswapped input),
    with either vendor's settings; the python level always reloads. blocked_reload gives reload's
    bits, so the kernels' count of slices it ran tells the two apart. (float16's own clause:
    test_auto_float16.)"""
    rng = np.random.default_rng(5)
    itemsize = np.dtype(dtype).itemsize
    n_long = _dispatch.AUTO_TWO_PASS_ROW_BYTES // max(itemsize, 4)  # float16 rows count as float32's
    n_longer = _dispatch.AUTO_BLOCKED_TWO_PASS_ROW_BYTES // max(itemsize, 4)  # where blocked rows stream
    n_l2 = _dispatch.AUTO_TWO_PASS_L2_ROW_BYTES // itemsize
    blocked_slices = lambda: _dispatch._kernels.thread_stats()["blocked_slices"]  # noqa: E731
    chosen_once = set()
    longer = [(2, n_longer)] if level != "python" else []  # (the fallback always reloads; slow there)
    for shape in [(2, n_long - 8), (2, n_long), *longer, (300, 1000), (64, n_l2), (64, n_l2 - 8)]:
        values = rng.uniform(-80, 80, shape)
        for function in (twopass.softmax, twopass.log_softmax):
            chosen = _dispatch.auto_algorithm(level, shape[1], itemsize, values.size, function.__name__)
            # float32 around 70000, past the shift limit 2^16, where three-pass subtracts the max itself
            # and two-pass reduces x itself, so that their bits differ (on [-80, 80] both run the same
            # exp on the same m, t and q, and their outputs can agree to the bit); not for
            # blocked_reload, which runs reload itself there (its count tells it apart anyway)
            offset = 70000.0 if dtype == np.float32 and chosen != "blocked_reload" else 0.0
            x = (values + offset).astype(dtype)
            chosen_once.add(chosen)
            other = "three_pass_reload" if chosen == "two_pass" else "two_pass"
            expected = function(x, axis=-1, algorithm=chosen)
            if function is twopass.softmax and dtype == np.float32 and level != "python" and offset:
                # the choice shows in the bits (log_softmax: x - lse alike; float64 often agrees too)
                assert not np.array_equal(function(x, axis=-1, algorithm=other), expected)
            for given in (x, x.astype(x.dtype.newbyteorder())):
                before = blocked_slices()
                np.testing.assert_array_equal(function(given, axis=-1, algorithm="auto"), expected,
                                              err_msg=f"{shape} {function.__name__} {given.dtype}")
                assert blocked_slices() - before == (shape[0] if chosen == "blocked_reload" else 0), chosen
    blocked = level != "python" and itemsize != 2 and _dispatch.AUTO_BLOCKED_RELOAD_FROM < 1 << 62
    assert ("blocked_reload" in chosen_once) == blocked

    def reload(n):
        return "blocked_reload" if blocked and n >= _dispatch.AUTO_BLOCKED_RELOAD_FROM else "three_pass_reload"
    two_pass_clauses = level != "python" and (itemsize <= 4 or _dispatch.AUTO_F64_TWO_PASS)
    l2_clause = level != "python" and l2_job_bytes < 1 << 62 and itemsize == 4
    for n in (n_long, n_longer):  # streaming rows: two_pass from the row bytes of their reload
        row = _dispatch.AUTO_BLOCKED_TWO_PASS_ROW_BYTES if reload(n) == "blocked_reload" else _dispatch.AUTO_TWO_PASS_ROW_BYTES
        streams = two_pass_clauses and n * max(itemsize, 4) >= row
        assert _dispatch.auto_algorithm(level, n, itemsize, 64 * n) == ("two_pass" if streams or l2_clause
                                                                         else reload(n))
    if itemsize == 2:
        return
    assert _dispatch.auto_algorithm(level, n_long - 8, itemsize, 64 * n_long) == (
        "two_pass" if l2_clause else reload(n_long - 8))
    assert _dispatch.auto_algorithm(level, n_l2, itemsize, 64 * n_l2) == ("two_pass" if l2_clause else reload(n_l2))


def test_prefetch_distance_is_tuned_for_the_cpu_and_changes_no_result(level):
    """The exp passes prefetch 2 KiB ahead on Intel and 8 KiB elsewhere (common.h); the distance is a
    hint only: every algorithm gives the same bits with any distance."""
    kernels = _dispatch._kernels
    intel = twopass.runtime_info()["cpu_features"]["intel"]
    assert kernels.prefetch_ahead() == (kernels.PREFETCH_AHEAD_INTEL if intel else kernels.PREFETCH_AHEAD)
    assert (kernels.PREFETCH_AHEAD_INTEL, kernels.PREFETCH_AHEAD) == (2048, 8192)
    with pytest.raises(ValueError):
        kernels.set_prefetch_ahead((1 << 20) + 1)
    x = np.random.default_rng(3).uniform(-50, 50, (3, 50_000)).astype(np.float32)
    saved = kernels.prefetch_ahead()
    try:
        for algorithm in twopass.ALGORITHMS:
            results = []
            for distance in (0, 2048, 8192, 1 << 20):
                kernels.set_prefetch_ahead(distance)
                results.append(twopass.softmax(x, axis=-1, algorithm=algorithm))
            for y in results[1:]:
                np.testing.assert_array_equal(y, results[0], err_msg=algorithm)
    finally:
        kernels.set_prefetch_ahead(saved)
    assert kernels.prefetch_ahead() == saved


@pytest.fixture
def slow_path_calls():
    """The calls that reach twopass._api.softmax / log_softmax / logsumexp from the typed layer's entry
    points (those its fast path hands over), counted while the test runs."""
    from twopass import _api
    seen = []

    def spy(function):
        def handed_over(*args, **kwargs):
            seen.append(function.__name__)
            return function(*args, **kwargs)
        return handed_over

    def configure(softmax, log_softmax, logsumexp):
        _dispatch._kernels.configure_fast_path(_dispatch._level, softmax, log_softmax, _dispatch.check_threads,
                                               _dispatch.MAX_THREADS, _api._KERNEL_ALGORITHM, logsumexp)
    configure(spy(_api.softmax), spy(_api.log_softmax), spy(_api.logsumexp))
    try:
        yield seen
    finally:
        configure(_api.softmax, _api.log_softmax, _api.logsumexp)


@pytest.mark.skipif(_dispatch._kernels is None, reason="the typed layer is the compiled extension")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_whole_array_of_a_c_contiguous_array_takes_the_fast_path(level, dtype, slow_path_calls):
    """axis=None (the default: SciPy's softmax over the whole array) on a C-contiguous array of any
    shape is one row of x.size for the typed layer's fast path: the bits of the flattened array's, and
    twopass._api is not called (a (1, 1000) float32 softmax took 8.8 us through it, 1.0 us on the
    fast path). The python level, and arrays that are not C-contiguous, go through twopass._api."""
    rng = np.random.default_rng(11)
    for shape in [(1, 1000), (4, 1000), (3, 5, 7), (2, 3000)]:
        x = rng.uniform(-30, 30, shape).astype(dtype)
        for function in (twopass.softmax, twopass.log_softmax):
            del slow_path_calls[:]
            flat = function(x.ravel(), axis=None)
            out = np.empty_like(x)
            for result in (function(x), function(x, out=out)):
                assert result.shape == x.shape
                np.testing.assert_array_equal(result.ravel(), flat, err_msg=f"{shape} {function.__name__}")
            assert slow_path_calls == ([function.__name__] * 3 if level == "python" else []), shape
            del slow_path_calls[:]
            transposed = x.T  # not C-contiguous but for (1, n): twopass._api, which sums in its order
            np.testing.assert_array_equal(function(transposed), function(np.ascontiguousarray(transposed)))
            if not transposed.flags.c_contiguous:
                assert slow_path_calls[0] == function.__name__, shape


def narrow(shape, axis, dtype):
    """Whether the columns after `axis` are so few that twopass runs them as rows after a transposing
    copy (twopass.kernels.narrow_columns), which the fast path leaves to twopass._api."""
    inner = math.prod(shape[axis % len(shape) + 1:])
    return inner > 1 and _dispatch._kernels.narrow_columns(inner, np.dtype(dtype).itemsize)


@pytest.mark.skipif(_dispatch._kernels is None, reason="the typed layer is the compiled extension")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_other_axes_of_a_c_contiguous_array_take_the_fast_path(level, dtype, slow_path_calls):
    """An int axis that is not the last, for "auto" and "two_pass", runs the column kernels from the
    typed layer's fast path (axis=0 of (10, 100) float32: 1.9 us, 10.4 through twopass._api): the
    bits twopass._api gives, into a new array, into out= and in place, for every outer block, with
    NaN, +-inf and huge values in some columns (the columns three-pass takes on a copy); SciPy's
    values; x untouched; twopass._api not called on kernel levels. Nothing after the axis: it runs as
    rows. 2-4 columns (narrow_columns), other algorithms, bad axes, bad threads= and partly
    overlapping out= go to twopass._api, which copies, or raise before writing."""
    import scipy.special
    from twopass import _api
    rng = np.random.default_rng(13)
    tol = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-13}[dtype]
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    huge = {np.float16: 6e4, np.float32: 3e38, np.float64: 1e300}[dtype]
    for shape in [(10, 100), (3, 7, 5), (2, 3, 4, 1), (5, 1), (4, 300, 9)]:
        plain = rng.uniform(-30, 30, shape).astype(dtype)
        special = plain.copy().reshape(-1)
        positions = rng.choice(special.size, size=min(4, special.size), replace=False)
        special[positions] = [np.nan, np.inf, -np.inf, huge][: len(positions)]
        special = special.reshape(shape)
        for function in (twopass.softmax, twopass.log_softmax):
            name = function.__name__
            for axis in [a for a in range(-len(shape), len(shape)) if a % len(shape) != len(shape) - 1]:
                for algorithm in ("auto", "two_pass"):
                    for x in (plain, special):
                        case = f"{shape} {name} axis={axis} {algorithm} special={x is special}"
                        before = x.copy()
                        with np.errstate(all="ignore"):
                            expected = getattr(_api, name)(x, axis=axis, algorithm=algorithm)
                            reference = getattr(scipy.special, name)(x.astype(np.float64), axis=axis)
                        if x is plain:
                            np.testing.assert_allclose(expected, reference, rtol=tol, atol=tol, err_msg=case)
                        else:
                            np.testing.assert_array_equal(np.isnan(expected), np.isnan(reference), err_msg=case)
                        del slow_path_calls[:]
                        out = np.full_like(x, np.nan)
                        in_place = x.copy()
                        with np.errstate(all="ignore"):
                            results = (function(x, axis=axis, algorithm=algorithm),
                                       function(x, axis=axis, algorithm=algorithm, out=out),
                                       function(in_place, axis=axis, algorithm=algorithm, out=in_place))
                        handed_over = level == "python" or narrow(shape, axis, dtype)
                        assert slow_path_calls == ([name] * 3 if handed_over else []), case
                        assert results[1] is out and results[2] is in_place, case
                        np.testing.assert_array_equal(x.view(bits), before.view(bits), err_msg=case)
                        for result in results:
                            assert result.dtype == expected.dtype and result.shape == x.shape, case
                            np.testing.assert_array_equal(result.view(bits), expected.view(bits), err_msg=case)
            x = plain
            x_axis0 = function(x, axis=0)
            del slow_path_calls[:]
            np.testing.assert_allclose(function(x, axis=0, algorithm="three_pass_reload"), x_axis0, rtol=tol, atol=tol)
            rows = math.prod(shape[1:]) == 1  # axis 0 is then a row; else a transposing copy in twopass._api
            assert slow_path_calls == ([] if rows and level != "python" else [name]), shape
            del slow_path_calls[:]
            with pytest.raises(np.exceptions.AxisError):
                function(x, axis=x.ndim)
            out = np.full_like(x, 7)
            for threads, error in ((0, ValueError), (-1, ValueError), ("2", TypeError), (1.0, TypeError)):
                with pytest.raises(error):
                    function(x, axis=0, out=out, threads=threads)
            np.testing.assert_array_equal(out, 7)
            buffer = np.zeros(x.size + 1, dtype)
            buffer[1:] = x.ravel()
            with pytest.raises(ValueError, match="overlaps"):
                function(buffer[1:].reshape(shape), axis=0, out=buffer[:-1].reshape(shape))


@pytest.mark.skipif(_dispatch._kernels is None, reason="the typed layer is the compiled extension")
def test_numpy_integer_axes_take_the_fast_path(level, slow_path_calls):
    """An axis given as a NumPy integer (np.argmax's, a shape's, an arange's) runs where the same
    Python int runs (softmax over axis 1 of (10, 100) float32: 1.7 us, 10.4 through twopass._api): the
    same bits for softmax, log_softmax and logsumexp, last axis and columns, and twopass._api called
    only where the int axis calls it (the python level; narrow columns: axis 1 here). Out of
    range it raises NumPy's AxisError, through twopass._api, as does a Python int."""
    rng = np.random.default_rng(17)
    x = rng.uniform(-30, 30, (6, 40, 3)).astype(np.float32)
    kinds = (np.int64, np.int32, np.intp, np.uint8, np.int16)
    for function in (twopass.softmax, twopass.log_softmax, twopass.logsumexp):
        for axis in (-3, -2, -1, 0, 1, 2):
            del slow_path_calls[:]
            expected = function(x, axis=axis)
            int_calls = list(slow_path_calls)
            assert int_calls == ([function.__name__] if level == "python" or axis % 3 == 1 else []), axis
            for kind in kinds:
                if axis < 0 and np.dtype(kind).kind == "u":
                    continue
                case = f"{function.__name__} axis={kind.__name__}({axis})"
                del slow_path_calls[:]
                got = function(x, axis=kind(axis))
                assert slow_path_calls == int_calls, case
                assert type(got) is type(expected) and got.dtype == expected.dtype, case
                np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(expected).view(np.uint32),
                                              err_msg=case)
        for axis in (np.int64(3), np.int32(-4), np.uint8(7)):
            del slow_path_calls[:]
            with pytest.raises(np.exceptions.AxisError):
                function(x, axis=axis)
            assert slow_path_calls == [function.__name__], axis


@pytest.mark.skipif(_dispatch._kernels is None, reason="the typed layer is the compiled extension")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_logsumexp_fast_path_gives_what_twopass_api_gives(level, dtype, slow_path_calls):
    """Unweighted logsumexp of a C-contiguous array over any one int axis or the whole of it runs on the
    typed layer's fast path (1.1 us for 1000 floats here, 7.5 us through twopass._api; other axes
    down the columns): the same values, types and shapes as twopass._api.logsumexp, special values
    included, and twopass._api is not called on kernel levels, with keepdims too. Weights,
    return_sign, out= and axis tuples go to it."""
    from twopass import _api
    rng = np.random.default_rng(12)
    cases = [rng.uniform(-30, 30, shape).astype(dtype) for shape in [(1,), (1000,), (1, 1000), (4, 1000), (3, 5, 7)]]
    cases += [np.array(v, dtype) for v in ([np.nan, 1.0], [-np.inf, -np.inf], [np.inf, 1.0], [[1.0, -np.inf], [0.0, 2.0]])]
    for x in cases:
        for axis in [None] + list(range(-x.ndim, x.ndim)):
            for keepdims in (False, True):
                del slow_path_calls[:]
                fast = twopass.logsumexp(x, axis=axis, keepdims=keepdims)
                case = f"{x.shape} axis={axis} keepdims={keepdims}"
                handed_over = level == "python" or (axis is not None and narrow(x.shape, axis, dtype))
                assert slow_path_calls == (["logsumexp"] if handed_over else []), case
                expected = _api.logsumexp(x, axis=axis, keepdims=keepdims)
                assert type(fast) is type(expected) and np.shape(fast) == np.shape(expected), case
                assert np.asarray(fast).dtype == np.asarray(expected).dtype, case
                bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
                np.testing.assert_array_equal(np.asarray(fast).view(bits), np.asarray(expected).view(bits), err_msg=case)
    x = cases[3]
    for kwargs in (dict(b=np.ones(x.shape[-1], dtype)), dict(return_sign=True),
                   dict(out=np.empty(x.shape[:-1], dtype)), dict(axis=(0,))):
        del slow_path_calls[:]
        kwargs.setdefault("axis", -1)
        fast = twopass.logsumexp(x, **kwargs)
        assert slow_path_calls == ["logsumexp"], kwargs
    with pytest.raises(ValueError):
        twopass.logsumexp(x, threads=0)
    with pytest.raises(TypeError):
        twopass.logsumexp(x, threads=1.5)

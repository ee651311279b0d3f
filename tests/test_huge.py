"""Rows and arrays past 2^31 elements (8 GiB of float32): no 32-bit index or size anywhere.

Slow and memory-hungry, so deselected by default with -m "not slow" (.ci/slow-tests runs only
this file). One 2^31 + 17 element array exists at a time and every call runs in place (out=x), so
the peak is 8 GiB plus small temporaries.

The input is zeros with a few known values at known places (around 2^31 too), so the answer is known
exactly: in a row of n elements with specials v_k, zeros give 1 / S and specials exp(v_k) / S, with
S = (n - #specials) + sum exp(v_k). Every output is checked, in chunks.
"""
import math
import os
import time

import numpy as np
import pytest

import twopass

N = 2**31 + 17          # = 5 * 429496733
CHUNK = 2**24           # elements per verification chunk (64 MiB of float32)
KERNEL_LEVELS = list(twopass.available_levels()[1:])
ALGORITHMS = list(twopass.ALGORITHMS)
# flat index -> value: the start, the 4096-element sum blocks, both sides of 2^31 (the largest
# value right at 2^31), the last whole vector and the one-element masked tail
SPECIALS = {0: 3.0, 1: -2.0, 4095: 10.0, 4096: 1.5, 2**31 - 1: -1.0, 2**31: 20.0, 2**31 + 1: 0.5,
            N - 9: -np.inf, N - 2: -50.0, N - 1: 15.0}
# (rows, n): one row of 2^31 + 17; five rows of 429496733 (row offsets times n past 2^31);
# 429496733 rows of five (row indices past 2^28, offsets past 2^31)
LAYOUTS = [(1, N), (5, N // 5), (N // 5, 5)]

pytestmark = pytest.mark.slow  # deselected by default (pyproject.toml addopts); .ci/slow-tests runs it


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def huge():
    need = N * 4 + 2 * 2**30
    if mem_available() < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of available memory, "
                    f"{mem_available() / 2**30:.1f} GiB available")
    x = np.empty(N, np.float32)
    yield x
    del x


def fill(x):
    x[...] = 0.0
    for index, value in SPECIALS.items():
        x[index] = value


def expected_rows(n):
    """{row: (value of the zeros, {flat index: value of the special})} for the rows with specials;
    rows without them hold 1/n everywhere."""
    rows = {}
    for index in SPECIALS:
        rows.setdefault(index // n, {})[index] = SPECIALS[index]
    result = {}
    for row, specials in rows.items():
        total = math.fsum([n - len(specials)] + [math.exp(v) for v in specials.values()])
        result[row] = (1.0 / total, {i: math.exp(v) / total for i, v in specials.items()})
    return result


def verify(y, n):
    """Every output against the known answer: the specials one by one, then each run of equal
    expected values between them by its minimum and maximum (chunked; a NaN fails too). Returns
    (count of outputs checked, worst relative error)."""
    rows = expected_rows(n)
    worst = 0.0
    checked = 0
    for row, (zero_value, specials) in rows.items():
        for index, value in specials.items():
            got = float(y[index])
            if value == 0:
                assert got == 0, f"output {index} of -inf: got {got!r}"
                continue
            err = abs(got - value) / value
            assert err <= 1e-6, f"output {index}: got {got!r}, expected {value!r} (relative error {err:.3g})"
            worst = max(worst, err)
    checked += len(SPECIALS)
    cuts = {0, y.size} | {r * n for r in rows} | {(r + 1) * n for r in rows}
    cuts |= set(SPECIALS) | {i + 1 for i in SPECIALS}
    cuts = sorted(c for c in cuts if 0 <= c <= y.size)
    for a, b in zip(cuts, cuts[1:]):
        if b - a == 1 and a in SPECIALS:
            continue
        row = a // n
        value = rows[row][0] if row in rows else 1.0 / n
        for start in range(a, b, CHUNK):
            segment = y[start:min(b, start + CHUNK)]
            lo, hi = float(segment.min()), float(segment.max())
            err = max(abs(lo - value), abs(hi - value)) / value
            if not err <= 1e-6:
                bad = start + int(np.argmax(np.abs(segment.astype(np.float64) - value)))
                raise AssertionError(f"output {bad}: got {y[bad]!r}, expected {value!r} "
                                     f"(outputs {start}..{start + segment.size} span {lo!r}..{hi!r})")
            worst = max(worst, err)
            checked += segment.size
    return checked, worst


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("level", KERNEL_LEVELS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_past_2_to_the_31(huge, layout, level, algorithm):
    rows, n = layout
    t0 = time.perf_counter()
    fill(huge)
    x = huge.reshape(rows, n)
    t1 = time.perf_counter()
    with twopass.use_isa(level):
        result = twopass.softmax(x, axis=-1, out=x, algorithm=algorithm)
    t2 = time.perf_counter()
    assert result is x
    checked, worst = verify(huge, n)
    t3 = time.perf_counter()
    assert checked == N
    print(f"\n{layout} {level} {algorithm}: fill {t1 - t0:.1f} s, softmax {t2 - t1:.1f} s, "
          f"verify {t3 - t2:.1f} s, worst relative error {worst:.2e}")


def test_expected_answer_sums_to_one():
    # the analytic answer itself is right: every row sums to 1
    for rows, n in LAYOUTS:
        for row, (zero_value, specials) in expected_rows(n).items():
            assert math.fsum([zero_value * (n - len(specials))] + list(specials.values())) == \
                pytest.approx(1.0, rel=1e-12)

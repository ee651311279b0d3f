"""The shipped kernels.pxd: a tiny Cython module compiled against the installed package cimports the
nogil kernels and calls them."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import scipy.special

import twopass

from conftest import max_relative_error, reference_softmax

MODULE = textwrap.dedent("""
    # cython: language_level=3
    from libc.stddef cimport ptrdiff_t
    from twopass.kernels cimport (softmax_f32, softmax_f32_strided, softmax_f64, TWO_PASS, THREE_PASS_RELOAD,
                                  THREE_PASS_RECOMPUTE, ONLINE, BLOCKED_RELOAD, LEVEL_DEFAULT, LEVEL_AVX512F)

    def run(const float[:, ::1] x, float[:, ::1] out, int algorithm):
        cdef int status
        with nogil:
            status = softmax_f32(x, out, algorithm, LEVEL_DEFAULT)
        return status

    def run_strided(const float[:, ::1] x, float[:, ::1] out, int level):
        cdef int status
        with nogil:
            status = softmax_f32_strided(x.shape[0], x.shape[1], &x[0, 0], x.shape[1],
                                         &out[0, 0], out.shape[1], TWO_PASS, level)
        return status

    def run_strided_rows(const float[:, ::1] x_wide, float[:, ::1] out_wide, size_t n, int algorithm,
                         bint reverse, int level):
        # rows of n floats at the start of the rows of x_wide and out_wide; reverse: the last row
        # first, with negative strides
        cdef size_t rows = x_wide.shape[0]
        cdef ptrdiff_t x_stride = x_wide.shape[1], out_stride = out_wide.shape[1]
        cdef const float* x = &x_wide[0, 0]
        cdef float* out = &out_wide[0, 0]
        cdef int status
        if reverse:
            x, out = &x_wide[rows - 1, 0], &out_wide[rows - 1, 0]
            x_stride, out_stride = -x_stride, -out_stride
        with nogil:
            status = softmax_f32_strided(rows, n, x, x_stride, out, out_stride, algorithm, level)
        return status

    def run64(const double[:, ::1] x, double[:, ::1] out, int algorithm):
        cdef int status
        with nogil:
            status = softmax_f64(x, out, algorithm, LEVEL_DEFAULT)
        return status

    ALGORITHMS = (TWO_PASS, THREE_PASS_RELOAD, THREE_PASS_RECOMPUTE, ONLINE, BLOCKED_RELOAD)
    AVX512F = LEVEL_AVX512F
""")

SETUP = textwrap.dedent("""
    from setuptools import setup, Extension
    from Cython.Build import cythonize
    setup(ext_modules=cythonize([Extension("uses_twopass", ["uses_twopass.pyx"])]), script_args=["build_ext", "--inplace"])
""")


def test_cimport_from_another_cython_module(tmp_path):
    (tmp_path / "uses_twopass.pyx").write_text(MODULE)
    (tmp_path / "setup.py").write_text(SETUP)
    build = subprocess.run([sys.executable, "setup.py"], cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        import uses_twopass
    finally:
        sys.path.remove(str(tmp_path))
    x = np.random.default_rng(0).uniform(-30, 30, size=(5, 333)).astype(np.float32)
    expected = reference_softmax(x)
    kernel_levels = twopass.available_levels()[1:]
    for algorithm in uses_twopass.ALGORITHMS:
        out = np.zeros_like(x)
        status = uses_twopass.run(x, out, algorithm)
        if kernel_levels:
            assert status == 0
            assert max_relative_error(out, expected) <= 1e-6
        else:  # no kernels on this CPU: the C API refuses and writes nothing
            assert status == -1 and not out.any()
    x64 = x.astype(np.float64)
    expected64 = scipy.special.softmax(x64, axis=-1)
    for algorithm in uses_twopass.ALGORITHMS:
        out = np.zeros_like(x64)
        status = uses_twopass.run64(x64, out, algorithm)
        if kernel_levels:
            assert status == 0
            np.testing.assert_allclose(out, expected64, rtol=1e-14, atol=0)
        else:
            assert status == -1 and not out.any()
    assert uses_twopass.run64(x64, np.zeros((5, 332)), 0) == -1
    for bad_algorithm in (-1, len(uses_twopass.ALGORITHMS)):  # refused, nothing written
        out32, out64 = np.zeros_like(x), np.zeros_like(x64)
        assert uses_twopass.run(x, out32, bad_algorithm) == -1 and not out32.any()
        assert uses_twopass.run64(x64, out64, bad_algorithm) == -1 and not out64.any()
    # shape mismatch and unsupported levels are refused without writing
    out = np.zeros((5, 332), np.float32)
    assert uses_twopass.run(x, out, 0) == -1 and not out.any()
    out = np.zeros_like(x)
    status = uses_twopass.run_strided(x, out, uses_twopass.AVX512F)
    if "avx512f" in twopass.available_levels() or twopass.runtime_info()["best_level"] == "avx512f":
        assert status == 0 and max_relative_error(out, expected) <= 1e-6
    else:
        assert status == -1 and not out.any()
    # short rows (grouped in reload, tests/test_row_groups.py) at padded and negative strides, on every
    # kernel level: the bits of contiguous rows row by row, and nothing written outside the rows
    n = 40
    x_wide = np.random.default_rng(1).uniform(-30, 30, size=(301, n + 13)).astype(np.float32)
    x_wide[7, 3], x_wide[50, :n] = np.nan, -np.inf
    for level in kernel_levels:
        with twopass.use_isa(level):
            try:
                twopass.kernels.set_row_group_bytes(0)
                expected = twopass.softmax(np.ascontiguousarray(x_wide[:, :n]), axis=-1,
                                           algorithm="three_pass_reload", threads=1)
            finally:
                twopass.kernels.set_row_group_bytes()
        for reverse in (False, True):
            out_wide = np.full((301, n + 5), 123.0, np.float32)
            before = twopass.kernels.thread_stats()["grouped_jobs"]
            assert uses_twopass.run_strided_rows(x_wide, out_wide, n, uses_twopass.ALGORITHMS[1], reverse,
                                                 twopass.LEVELS.index(level)) == 0
            assert twopass.kernels.thread_stats()["grouped_jobs"] > before
            assert np.array_equal(out_wide[:, :n].view(np.uint32), expected.view(np.uint32)), (level, reverse)
            assert (out_wide[:, n:] == 123.0).all()

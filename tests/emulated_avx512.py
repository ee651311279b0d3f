"""Run the AVX-512F kernels on a CPU without AVX-512, through SIMDe (test-only helper).

src/avx512f/f32_kernels_avx512f.c, f64_ and f16_kernels_avx512f.c are compiled unchanged with -mavx2 -mfma -mf16c
(never -mavx512f) and
tests/avx512_emulation/ first on the include path: its immintrin.h includes the compiler's header
and then SIMDe's <simde/x86/avx512.h> with SIMDE_ENABLE_NATIVE_ALIASES, so every _mm512_* call in
the kernels runs SIMDe's portable version (on AVX2 underneath). The rest of the C library is
compiled natively as setup.py does (cpu.c, dispatch.c, softmax.c at the baseline, the AVX2 kernels
with -mavx2 -mfma), all linked into one shared library under build/emulated-avx512/ that is rebuilt
only when a source, the shim, the flags, gcc or SIMDe change. ctypes loads it:

    emu = emulated_avx512.load()                 # EmulationUnavailable if gcc/SIMDe/AVX2 missing
    emu.softmax_rows(x, y, 0)                    # twopass_softmax_f32_rows on the avx512f table
    emu.softmax_rows(x, y, 1, variants=["twopass_f32_raddextexp__avx512f_u64_acc2"])
    emu.kernel("twopass_f32_rmax__avx512f_u128_acc4")(x)    # one registered variant, NumPy args
    emu.variants(op="raddextexp")                # the registered avx512f variants of one op
    emu.variants(op="raddextexp", dtype=np.float64)   # ... of the float64 kernels
    emu.softmax_rows(x64, y64, 0)                # float64 arrays run the float64 drivers and kernels
    emu.softmax_rows(x16, y16, 0)                # float16 arrays the float16 ones

Run `python tests/emulated_avx512.py` to build and print what was built;
`python tests/emulated_avx512.py --guard-pages` runs every variant next to inaccessible pages (a
read or write past either end of an array is a SIGSEGV; the tests run it in a subprocess).

Environment: TWOPASS_EMULATION_CC (default gcc), TWOPASS_EMULATION_BUILD_DIR (default
<repo>/build/emulated-avx512).
"""
import ctypes
import hashlib
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIM_DIR = Path(__file__).resolve().parent / "avx512_emulation"
LEVEL_AVX2, LEVEL_AVX512F = 1, 2
# enum twopass_f32_op order (TWOPASS_F32_OPS in kernels.h), as the installed extension reports it
OPS = tuple(__import__("twopass.kernels").kernels.OP_NAMES)
# the ops over one contiguous 1-D slice (the *_columns and softmax_short_rows ones take 2-D blocks)
ROW_OPS = tuple(__import__("twopass.kernels").kernels.ROW_OPS)
# the kernel algorithms: name -> enum twopass_algorithm, as the installed package maps them
ALGORITHMS = dict(__import__("twopass._api")._api._KERNEL_ALGORITHM)

BASE_FLAGS = ["-O2", "-fPIC", "-fno-math-errno", "-Werror=implicit-function-declaration",
              "-DTWOPASS_HAVE_X86_KERNELS", "-I" + str(ROOT / "include")]
AVX2_FLAGS = ["-mavx2", "-mfma", "-mf16c"]
# The emulated files: AVX2 + FMA for SIMDe to build on, the shim before the system headers.
# TWOPASS_SHORT_ROWS_UNROLL empty (common.h): the short-rows kernels' vectors in loops, not unrolled:
# the same arithmetic, and the SIMDe files compile in 13-18 s instead of 14-35 s.
EMULATED_FLAGS = AVX2_FLAGS + ["-I" + str(SHIM_DIR), "-Wno-psabi", "-DTWOPASS_SHORT_ROWS_UNROLL="]
UNITS = [  # (source, extra flags)
    ("src/cpu.c", []),
    ("src/dispatch.c", []),
    ("src/softmax.c", ["-fopenmp"]),
    ("src/softmax_f64.c", []),
    ("src/softmax_f16.c", []),
    ("src/avx2/f32_kernels_avx2.c", AVX2_FLAGS),
    ("src/avx2/f64_kernels_avx2.c", AVX2_FLAGS),
    ("src/avx2/f16_kernels_avx2.c", AVX2_FLAGS),
    ("src/avx512f/f32_kernels_avx512f.c", EMULATED_FLAGS),
    ("src/avx512f/f64_kernels_avx512f.c", EMULATED_FLAGS),
    ("src/avx512f/f16_kernels_avx512f.c", EMULATED_FLAGS),
    ("tests/avx512_emulation/probes.c", EMULATED_FLAGS),
]


class EmulationUnavailable(RuntimeError):
    """The emulation cannot run here: no gcc, no SIMDe headers, no AVX2/FMA, or not x86-64 Linux."""


class EmulationBuildError(RuntimeError):
    """The tools are there but the build failed: a real problem (e.g. an intrinsic SIMDe lacks)."""


# ---------------------------------------------------------------------------------------------
# Build

def _run(cmd, **kwargs):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _toolchain():
    """(compiler, its version, SIMDe version) or EmulationUnavailable saying what is missing."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise EmulationUnavailable(f"the AVX-512 emulation needs x86-64 Linux, not "
                                   f"{sys.platform}/{platform.machine()}")
    flags = _cpu_flags()
    if flags is not None and not {"avx2", "fma"} <= flags:
        raise EmulationUnavailable("the AVX-512 emulation is compiled with -mavx2 -mfma, but this CPU "
                                   "lacks AVX2 or FMA")
    cc = os.environ.get("TWOPASS_EMULATION_CC", "gcc")
    if shutil.which(cc) is None:
        raise EmulationUnavailable(f"C compiler {cc!r} not found (set TWOPASS_EMULATION_CC or install gcc)")
    version = _run([cc, "-dumpfullversion", "-dumpversion"]).stdout.strip()
    probe = _run([cc, "-E", "-P", "-x", "c", "-"],
                 input="#include <simde/simde-common.h>\ntwopass_simde_version SIMDE_VERSION\n")
    if probe.returncode != 0:
        raise EmulationUnavailable("SIMDe headers not found (<simde/x86/avx512.h>): install them, e.g. "
                                   "`apt-get install libsimde-dev`, or put them on CPATH\n"
                                   + probe.stderr.strip()[-2000:])
    simde = [ln for ln in probe.stdout.splitlines() if ln.startswith("twopass_simde_version")]
    return cc, version, (simde[-1].split(None, 1)[1] if simde else "?")


def _inputs():
    """Every file the library depends on, for the cache key."""
    files = sorted(set((ROOT / "include").rglob("*.h")) | set((ROOT / "src").rglob("*.[ch]"))
                   | set(SHIM_DIR.glob("*.[ch]")))
    return files


def _cache_key(cc, cc_version, simde_version):
    h = hashlib.sha256()
    h.update(repr((cc, cc_version, simde_version, BASE_FLAGS, UNITS)).encode())
    for path in _inputs():
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(force=False, verbose=False):
    """Path of the shared library, compiled if missing or out of date."""
    cc, cc_version, simde_version = _toolchain()
    build_dir = Path(os.environ.get("TWOPASS_EMULATION_BUILD_DIR", ROOT / "build" / "emulated-avx512"))
    build_dir.mkdir(parents=True, exist_ok=True)
    lib = build_dir / f"libtwopass_emulated_avx512-{_cache_key(cc, cc_version, simde_version)}.so"
    if lib.exists() and not force:
        return lib
    with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
        jobs = []
        for source, flags in UNITS:  # compile in parallel; the SIMDe files take a few seconds
            obj = Path(tmp) / (Path(source).stem + ".o")
            cmd = [cc] + BASE_FLAGS + flags + ["-c", str(ROOT / source), "-o", str(obj)]
            if verbose:
                print(" ".join(cmd), flush=True)
            jobs.append((cmd, obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                     text=True)))
        errors = []
        for cmd, _, proc in jobs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"$ {' '.join(cmd)}\n{out}{err}")
        if errors:
            raise EmulationBuildError("building the emulated AVX-512 library failed:\n" + "\n".join(errors))
        tmp_lib = Path(tmp) / lib.name
        link = [cc, "-shared", "-fopenmp", "-o", str(tmp_lib)] + [str(obj) for _, obj, _ in jobs] + ["-lm"]
        res = _run(link)
        if res.returncode != 0:
            raise EmulationBuildError(f"linking failed:\n$ {' '.join(link)}\n{res.stdout}{res.stderr}")
        os.replace(tmp_lib, lib)  # atomic: concurrent builders agree on the same content
    for old in build_dir.glob("libtwopass_emulated_avx512-*.so"):
        if old != lib:
            try:
                old.unlink()
            except OSError:
                pass
    return lib


# ---------------------------------------------------------------------------------------------
# ctypes bindings

class _KernelInfo(ctypes.Structure):  # struct twopass_kernel_info
    _fields_ = [("name", ctypes.c_char_p), ("op", ctypes.c_int), ("level", ctypes.c_int),
                ("unroll", ctypes.c_int), ("accumulators", ctypes.c_int), ("streaming", ctypes.c_int),
                ("fn", ctypes.c_void_p)]


class _Kernels(ctypes.Structure):  # struct twopass_f32_kernels, _f64_ and _f16_ (same layout)
    _fields_ = ([(op, ctypes.c_void_p) for op in OPS]
                + [("streaming", ctypes.c_void_p), ("names", ctypes.c_char_p * len(OPS))])


_P, _N = ctypes.c_void_p, ctypes.c_size_t
# dtype -> (name in the C functions, scalar ctype); float16 kernels compute with float scalars
DTYPES = {np.dtype(np.float32): ("f32", ctypes.c_float), np.dtype(np.float64): ("f64", ctypes.c_double),
          np.dtype(np.float16): ("f16", ctypes.c_float)}
_DTYPE_OF_PREFIX = {f"twopass_{dt}_": dtype for dtype, (dt, _) in DTYPES.items()}


def _fn_types(_F):
    """The kernel function types of include/twopass/kernels.h, scalars of ctype _F."""
    return {
    "rmax": ctypes.CFUNCTYPE(_F, _N, _P),
    "raddextexp": ctypes.CFUNCTYPE(None, _N, _P, _P),
    "vscaleextexp": ctypes.CFUNCTYPE(None, _N, _P, _P, _F, _F),
    "raddexpminusmax": ctypes.CFUNCTYPE(_F, _N, _P, _F, _F),
    "raddstoreexpminusmax": ctypes.CFUNCTYPE(_F, _N, _P, _P, _F, _F, _P),
    "vscaleexpminusmax": ctypes.CFUNCTYPE(None, _N, _P, _P, _F, _F, _F),
    "vscale": ctypes.CFUNCTYPE(None, _N, _P, _P, _F),
    "vsubc": ctypes.CFUNCTYPE(None, _N, _P, _P, _F, _F),
    "raddonline": ctypes.CFUNCTYPE(None, _N, _P, _P),
    "raddextexp_columns": ctypes.CFUNCTYPE(None, _N, _N, _P, ctypes.c_ssize_t, _P, _P),
    "vscaleextexp_columns": ctypes.CFUNCTYPE(None, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_ssize_t, _P, _P),
    "vsubc_columns": ctypes.CFUNCTYPE(None, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_ssize_t, _P, _P),
    "softmax_short_rows": ctypes.CFUNCTYPE(ctypes.c_int, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_ssize_t),
    }


_FN_TYPES = {dtype: _fn_types(ctype) for dtype, (_, ctype) in DTYPES.items()}


def _ptr(a, writable=False, dtype=np.float32):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1 or not a.flags.c_contiguous:
        raise TypeError(f"expected a contiguous 1-D {np.dtype(dtype)} array")
    if writable and not a.flags.writeable:
        raise ValueError("output array is read-only")
    return a.ctypes.data


class Kernel:
    """One registered kernel variant, called with NumPy arrays of its dtype (n = x.size):

    rmax(x) -> float;  raddextexp(x) -> (mantissa, exponent);  vscaleextexp(x, y, scale, exponent);
    raddexpminusmax(x, shift, exponent) -> float;  raddstoreexpminusmax(x, y, shift, exponent) -> float,
    raddstoreexpminusmax(x, y, shift, exponent, True) -> (sum, max x) (its max output);
    vscaleexpminusmax(x, y, shift, exponent, scale);  vscale(x, y, scale);  vsubc(x, y, c_hi, c_lo);
    (float16's raddstoreexpminusmax writes, and its vscale reads, float32 exps: x_dtype, y_dtype);
    softmax_short_rows(x, y[, rows, n, x_stride, y_stride]) -> 1, or 0 for rows over 512 bytes or 16 vectors.
    """

    def __init__(self, info, lib):
        self.lib = lib
        self.name = info.name.decode()
        self.op = OPS[info.op]
        self.level = info.level
        self.unroll = info.unroll
        self.accumulators = info.accumulators
        self.info = info
        self.dtype = _DTYPE_OF_PREFIX[self.name[:len("twopass_f32_")]]
        self.scalar_dtype = np.dtype(np.float64 if self.dtype == np.float64 else np.float32)
        # reload's stored exps are of the scalar type (kernels.h: float16's in float32)
        self.x_dtype = self.scalar_dtype if self.op == "vscale" else self.dtype
        self.y_dtype = self.scalar_dtype if self.op == "raddstoreexpminusmax" else self.dtype
        self.fn = _FN_TYPES[self.dtype][self.op](info.fn)

    def __repr__(self):
        return f"<Kernel {self.name}>"

    def __call__(self, x, *args):
        """With MXCSR.FTZ set, as the drivers (and twopass.kernels.run_kernel) run the kernels."""
        n, px = x.size, _ptr(x, dtype=self.x_dtype)
        if n == 0:
            raise ValueError("kernels require n >= 1")
        csr = self.lib.twopass_flush_to_zero_begin()
        try:
            return self._call(n, px, x, *args)
        finally:
            self.lib.twopass_flush_to_zero_end(csr)

    def _call(self, n, px, x, *args):
        op = self.op
        if op == "rmax":
            return self.fn(n, px)
        if op in ("raddextexp", "raddonline"):
            out = np.zeros(2, self.scalar_dtype)
            self.fn(n, px, out.ctypes.data)
            return float(out[0]), float(out[1])
        if op == "raddexpminusmax":
            return self.fn(n, px, *args)
        if op == "softmax_short_rows":  # (y, rows, n, x_stride, y_stride) over flat buffers; 1 row by default
            y, rows, length, x_stride, y_stride = args if len(args) == 5 else (args[0], 1, n, n, n)
            if (rows - 1) * x_stride + length > n or (rows - 1) * y_stride + length > y.size:
                raise ValueError("the rows do not fit the buffers")
            return self.fn(rows, length, px, x_stride, _ptr(y, writable=True, dtype=self.dtype), y_stride)
        y, rest = args[0], args[1:]
        if y.size != n:
            raise ValueError("x and y differ in size")
        py = _ptr(y, writable=True, dtype=self.y_dtype)
        if op == "raddstoreexpminusmax":
            (shift, exponent), track_max = rest[:2], len(rest) > 2 and rest[2]
            top = np.full(1, np.nan, self.scalar_dtype)
            total = self.fn(n, px, py, shift, exponent, top.ctypes.data if track_max else None)
            return (total, float(top[0])) if track_max else total
        return self.fn(n, px, py, *rest)


class EmulatedAVX512:
    """The loaded library: softmax on the (emulated) avx512f table, and every registered variant."""

    def __init__(self, path):
        self.path = Path(path)
        lib = self.lib = ctypes.CDLL(str(path))
        lib.twopass_flush_to_zero_begin.restype = ctypes.c_uint
        lib.twopass_flush_to_zero_begin.argtypes = []
        lib.twopass_flush_to_zero_end.restype = None
        lib.twopass_flush_to_zero_end.argtypes = [ctypes.c_uint]
        self.registry = []
        for dt, _ in DTYPES.values():
            getattr(lib, f"twopass_{dt}_kernels_for").restype = ctypes.POINTER(_Kernels)
            getattr(lib, f"twopass_{dt}_kernels_for").argtypes = [ctypes.c_int]
            getattr(lib, f"twopass_{dt}_kernels_with").restype = ctypes.c_int
            getattr(lib, f"twopass_{dt}_kernels_with").argtypes = [ctypes.POINTER(_Kernels),
                                                                   ctypes.POINTER(_KernelInfo)]
            getattr(lib, f"twopass_{dt}_kernel_registry").restype = ctypes.POINTER(_KernelInfo)
            getattr(lib, f"twopass_{dt}_kernel_registry").argtypes = [ctypes.POINTER(ctypes.c_size_t)]
            for fn in ("softmax", "log_softmax"):
                getattr(lib, f"twopass_{fn}_{dt}_rows").restype = None
                getattr(lib, f"twopass_{fn}_{dt}_rows").argtypes = [
                    ctypes.POINTER(_Kernels), ctypes.c_int, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_ssize_t,
                    ctypes.c_int]
            count = ctypes.c_size_t()
            registry = getattr(lib, f"twopass_{dt}_kernel_registry")(ctypes.byref(count))
            self.registry += [Kernel(registry[i], lib) for i in range(count.value)]
        self._by_name = {k.name: k for k in self.registry}
        for name in ("scalef", "scalef_pd", "roundscale", "max", "mask_ops", "reduce"):
            getattr(lib, "twopass_emu_probe_" + name).restype = None

    # -- kernels --
    def variants(self, op=None, level=LEVEL_AVX512F, dtype=np.float32):
        """Registered variants of a level (default avx512f) and dtype, optionally of one op, in list
        order."""
        return [k for k in self.registry if k.level == level and (op is None or k.op == op)
                and k.dtype == dtype]

    def kernel(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no registered kernel {name!r}; have {sorted(self._by_name)}") from None

    def table(self, level=LEVEL_AVX512F, variants=(), dtype=np.float32):
        """A private copy of a level's kernel table of a dtype, with the given variants (names)
        swapped in."""
        dt = DTYPES[np.dtype(dtype)][0]
        base = getattr(self.lib, f"twopass_{dt}_kernels_for")(level)
        if not base:
            raise RuntimeError(f"no kernel table for level {level}")
        table = _Kernels.from_buffer_copy(base.contents)
        for name in variants:
            k = self.kernel(name)
            if (k.level != level or k.dtype != dtype
                    or getattr(self.lib, f"twopass_{dt}_kernels_with")(ctypes.byref(table), ctypes.byref(k.info))):
                raise ValueError(f"{name} cannot replace a pass of level {level}")
        return table

    def table_names(self, level=LEVEL_AVX512F, variants=(), dtype=np.float32):
        t = self.table(level, variants, dtype)
        return {op: t.names[i].decode() for i, op in enumerate(OPS)}

    # -- softmax --
    def softmax_rows(self, x, out, algorithm, variants=(), level=LEVEL_AVX512F, threads=1, log=False):
        """out[r] = softmax(x[r]) (log_softmax if log) for 2-D float32, float64 or float16 x and out of equal
        shape and dtype, rows contiguous (any row stride); out may be x. algorithm: a name of
        ALGORITHMS or its number; threads: OpenMP threads of the driver."""
        algorithm = ALGORITHMS.get(algorithm, algorithm)
        dtype = getattr(x, "dtype", None)
        if dtype not in DTYPES:
            raise TypeError("expected 2-D float32, float64 or float16 arrays with contiguous rows")
        size = dtype.itemsize
        for a in (x, out):
            if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 2
                    or (a.shape[1] > 1 and a.strides[1] != size) or a.strides[0] % size):
                raise TypeError(f"expected 2-D {dtype} arrays with contiguous rows")
        if x.shape != out.shape:
            raise ValueError("x and out differ in shape")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        rows, n = x.shape
        if rows == 0 or n == 0:
            return out
        table = self.table(level, variants, dtype)
        fn = getattr(self.lib, f"twopass_{'log_' if log else ''}softmax_{DTYPES[dtype][0]}_rows")
        fn(ctypes.byref(table), int(algorithm), rows, n, x.ctypes.data, x.strides[0] // size, out.ctypes.data,
           out.strides[0] // size, threads)
        return out

    def softmax_columns(self, x, out, level=LEVEL_AVX512F, threads=1, log=False):
        """Two-pass softmax (log_softmax if log) down the columns of 2-D float32, float64 or float16 x (rows
        contiguous, any row stride) into out, with the columns kernels (each lane follows one column)."""
        dtype = getattr(x, "dtype", None)
        if dtype not in DTYPES:
            raise TypeError("expected 2-D float32, float64 or float16 arrays with contiguous rows")
        size = dtype.itemsize
        for a in (x, out):
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 2 or a.strides[1] != size:
                raise TypeError(f"expected 2-D {dtype} arrays with contiguous rows")
        if x.shape != out.shape:
            raise ValueError("x and out differ in shape")
        table = self.table(level, (), dtype)
        fn = getattr(self.lib, f"twopass_{'log_' if log else ''}softmax_{DTYPES[dtype][0]}_columns")
        fn.argtypes = [ctypes.c_void_p, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_ssize_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        status = fn(ctypes.addressof(table), x.shape[0], x.shape[1], x.ctypes.data, x.strides[0] // size,
                    out.ctypes.data, out.strides[0] // size, threads)
        if status != 0:
            raise MemoryError("the columns driver failed")
        return out

    def logsumexp_columns(self, x, level=LEVEL_AVX512F, threads=1):
        """logsumexp down the columns of 2-D float32, float64 or float16 x (rows contiguous, any row
        stride) with the columns kernels' pass 1: a float64 array of one value per column."""
        dtype = getattr(x, "dtype", None)
        if dtype not in DTYPES or x.ndim != 2 or x.strides[1] != dtype.itemsize:
            raise TypeError("expected 2-D float32, float64 or float16 arrays with contiguous rows")
        out = np.empty(x.shape[1])
        table = self.table(level, (), dtype)
        fn = getattr(self.lib, f"twopass_logsumexp_{DTYPES[dtype][0]}_columns")
        fn.argtypes = [ctypes.c_void_p, _N, _N, _P, ctypes.c_ssize_t, _P, ctypes.c_int]
        fn.restype = ctypes.c_int
        if fn(ctypes.addressof(table), x.shape[0], x.shape[1], x.ctypes.data, x.strides[0] // dtype.itemsize,
              out.ctypes.data, threads) != 0:
            raise MemoryError("the columns driver failed")
        return out

    def softmax(self, x, algorithm=0, variants=(), level=LEVEL_AVX512F, dtype=np.float32):
        """softmax of a 1-D array (a copy in dtype: float32, float64 or float16), as a new array."""
        x2 = np.ascontiguousarray(x, dtype=dtype).reshape(1, -1)
        return self.softmax_rows(x2, np.empty_like(x2), algorithm, variants, level)[0]

    def blocked_slices(self):
        """Slices that ran blocked reload's own passes since the library loaded (thread_stats)."""
        stats = (ctypes.c_long * 6)()  # struct twopass_thread_stats: teams ... two_pass_slices
        self.lib.twopass_get_thread_stats(ctypes.byref(stats))
        return stats[4]

    # -- probes of single emulated intrinsics (tests/avx512_emulation/probes.c) --
    @staticmethod
    def _vec(a, n):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, np.float32), (n,)))

    def _lanes(self, *arrays):
        n = max(np.size(a) for a in arrays)
        padded = -(-n // 16) * 16
        vecs = [np.resize(self._vec(a, n), padded).astype(np.float32) for a in arrays]
        return n, padded, vecs

    def scalef(self, a, b):
        n, padded, (va, vb) = self._lanes(a, b)
        out = np.empty(padded, np.float32)
        self.lib.twopass_emu_probe_scalef(_N(padded), _P(va.ctypes.data), _P(vb.ctypes.data), _P(out.ctypes.data))
        return out[:n]

    def roundscale(self, a):
        n, padded, (va,) = self._lanes(a)
        out = np.empty(padded, np.float32)
        self.lib.twopass_emu_probe_roundscale(_N(padded), _P(va.ctypes.data), _P(out.ctypes.data))
        return out[:n]

    def max(self, a, b):
        n, padded, (va, vb) = self._lanes(a, b)
        out = np.empty(padded, np.float32)
        self.lib.twopass_emu_probe_max(_N(padded), _P(va.ctypes.data), _P(vb.ctypes.data), _P(out.ctypes.data))
        return out[:n]

    def mask_max_add(self, src, mask, a, b):
        """(_mm512_mask_max_ps(src, mask, a, b), _mm512_mask_add_ps(src, mask, a, b)) on 16 lanes."""
        src, a, b = (self._vec(v, 16) for v in (src, a, b))
        out, out2 = np.empty(16, np.float32), np.empty(16, np.float32)
        self.lib.twopass_emu_probe_mask_ops(_P(src.ctypes.data), ctypes.c_uint(mask), _P(a.ctypes.data),
                                            _P(b.ctypes.data), _P(out.ctypes.data), _P(out2.ctypes.data))
        return out, out2

    def scalef_pd(self, a, b):
        """_mm512_scalef_pd(a, b) over float64 arrays of one length."""
        a, b = (np.ascontiguousarray(v, np.float64).ravel() for v in np.broadcast_arrays(a, b))
        n = a.size
        padded = -(-n // 8) * 8
        va, vb = np.resize(a, padded), np.resize(b, padded)
        out = np.empty(padded, np.float64)
        self.lib.twopass_emu_probe_scalef_pd(_N(padded), _P(va.ctypes.data), _P(vb.ctypes.data), _P(out.ctypes.data))
        return out[:n]

    def reduce_max_add(self, v):
        """(_mm512_reduce_max_ps(v), _mm512_reduce_add_ps(v)) of 16 floats."""
        v = self._vec(v, 16)
        out = np.empty(2, np.float32)
        self.lib.twopass_emu_probe_reduce(_P(v.ctypes.data), _P(out.ctypes.data))
        return float(out[0]), float(out[1])


_loaded = {}


def load(force=False):
    """The emulated library, built if needed and loaded once per process.

    Raises EmulationUnavailable when this machine cannot build or run it, EmulationBuildError when
    the build itself fails."""
    if force or "lib" not in _loaded:
        _loaded["lib"] = EmulatedAVX512(build(force=force))
    return _loaded["lib"]


# ---------------------------------------------------------------------------------------------
# Guard pages: every kernel variant and algorithm with the arrays flush against PROT_NONE pages.

def _guarded(pages_data, dtype=np.float32):
    """A view (dtype) of `pages_data` pages with an inaccessible page on each side."""
    page = mmap.PAGESIZE
    mm = mmap.mmap(-1, (pages_data + 2) * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    data = np.frombuffer(mm, dtype, count=pages_data * page // np.dtype(dtype).itemsize, offset=page)
    for addr in (base, base + (pages_data + 1) * page):
        if libc.mprotect(addr, page, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    return mm, data


def guard_page_main(max_tail=40):
    """Exit status 0 if nothing touched the guard pages (else the process dies by SIGSEGV, the
    last line printed naming the call). Every float32, float64 and float16 variant of both levels
    (the AVX2 ones run natively) and every algorithm; softmax_short_rows also on three strided rows
    whose last one ends at the page."""
    emu = load()
    calls = 0
    for dtype in DTYPES:
        pages = 2 * np.dtype(dtype).itemsize  # room for 8192 elements
        _, xbuf = _guarded(pages, dtype)
        _, ybuf = _guarded(pages, dtype)
        _, wbuf = _guarded(8, np.float32)  # float16's stored exps, float32 (kernels.h), as many
        cap = xbuf.size
        rng = np.random.default_rng(7)
        xbuf[:] = rng.uniform(-10, 10, cap).astype(dtype)
        wbuf[:] = rng.uniform(0, 1, wbuf.size)
        cases = []
        for k in emu.variants(dtype=dtype) + emu.variants(level=LEVEL_AVX2, dtype=dtype):
            lengths = sorted({t for t in range(1, max_tail + 1)} | {k.unroll + t for t in range(max_tail + 1)})
            cases += [(k.name, n) for n in lengths]
        cases += [(alg, n) for alg in ALGORITHMS for n in list(range(1, max_tail + 1)) + [4095, 4096, 4097, 4113]]
        for what, n in cases:
            for where in ("end", "start"):  # flush against the guard page after, or before, the array
                k = None if what in ALGORITHMS else emu.kernel(what)
                xb = wbuf if k is not None and k.x_dtype != dtype else xbuf
                yb = wbuf if k is not None and k.y_dtype != dtype else ybuf
                x = xb[xb.size - n:] if where == "end" else xb[:n]
                y = yb[yb.size - n:] if where == "end" else yb[:n]
                print(f"{dtype} {what} n={n} arrays at the {where} of their pages", flush=True)
                calls += 1
                if k is None:
                    emu.softmax_rows(x.reshape(1, n), y.reshape(1, n), ALGORITHMS[what])
                    continue
                if k.op.endswith("_columns"):
                    emu.softmax_columns(x.reshape(1, n), y.reshape(1, n))
                    continue
                args = {"rmax": (), "raddextexp": (), "vscaleextexp": (y, 1.0, 3.0),
                        "raddexpminusmax": (0.0, 14.0), "raddstoreexpminusmax": (y, 0.0, 14.0),
                        "vscaleexpminusmax": (y, 0.0, 14.0, 0.5), "vscale": (y, 0.5),
                        "vsubc": (y, 1.5, 1e-6), "raddonline": (), "softmax_short_rows": (y,)}[k.op]
                k(x, *args)
                if k.op == "softmax_short_rows":  # rows n + 1 apart, the last flush against the page
                    span = 2 * (n + 1) + n
                    xs = xbuf[cap - span:] if where == "end" else xbuf[:span]
                    ys = ybuf[cap - span:] if where == "end" else ybuf[:span]
                    k(xs, ys, 3, n, n + 1, n + 1)
    print(f"ok: {calls} calls, no access outside the arrays")
    return 0


if __name__ == "__main__":
    if "--guard-pages" in sys.argv[1:]:
        sys.exit(guard_page_main())
    path = build(force="--force" in sys.argv[1:], verbose=True)
    emu = load()
    print(f"built {path}")
    print("avx512f table:", emu.table_names())
    print("avx512f variants:", [k.name for k in emu.variants()])

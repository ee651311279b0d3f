"""Build of twopass: one extension, twopass.kernels, at the x86-64 baseline, plus one object per ISA.

Only src/avx512f/ and src/avx2/ are compiled with their ISA's flags; the Cython layer, the CPU
detection and the algorithms stay at the baseline, so importing twopass never runs an instruction
the CPU lacks. On other architectures the extension is built without kernels (the NumPy fallback
runs); if the extension cannot be imported at all, the package still imports and uses the fallback.
"""
import os
import platform

import numpy

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# Per-ISA kernel sources and the flags they alone are compiled with.
ISA_SOURCES = {
    "avx512f": (["src/avx512f/f32_kernels_avx512f.c", "src/avx512f/f64_kernels_avx512f.c",
                 "src/avx512f/f16_kernels_avx512f.c"], ["-mavx512f", "-mavx2", "-mfma", "-mf16c"]),
    "avx2": (["src/avx2/f32_kernels_avx2.c", "src/avx2/f64_kernels_avx2.c", "src/avx2/f16_kernels_avx2.c",
              "src/avx2/bandwidth_avx2.c"], ["-mavx2", "-mfma", "-mf16c"]),
}
# A pointer of the wrong element type (float* for float16's uint16_t*) is an error, not a warning.
COMMON_CFLAGS = ["-O3", "-fno-math-errno", "-Werror=incompatible-pointer-types"]
# The drivers (src/softmax.c) and the Cython layer run their threads with OpenMP (libgomp).
OPENMP_FLAGS = ["-fopenmp"]
HEADERS = [os.path.join(d, f) for d in ("include/twopass", "src", "src/avx2", "src/avx512f")
           for f in sorted(os.listdir(os.path.join(HERE, d))) if f.endswith(".h")]


class build_ext_per_isa(build_ext):
    """Compile each ISA's sources with that ISA's flags and link the objects into the extension."""

    def build_extension(self, ext):
        if IS_X86_64 and ext.name == "twopass.kernels":
            for isa, (sources, flags) in ISA_SOURCES.items():
                objects = self.compiler.compile(
                    sources, output_dir=self.build_temp, include_dirs=ext.include_dirs, macros=ext.define_macros,
                    extra_postargs=COMMON_CFLAGS + flags, depends=HEADERS)
                ext.extra_objects = [o for o in ext.extra_objects if o not in objects] + objects
        super().build_extension(ext)


extension = Extension(
    "twopass.kernels",
    sources=["pyx/twopass/kernels.pyx", "src/cpu.c", "src/dispatch.c", "src/softmax.c", "src/softmax_f64.c", "src/softmax_f16.c"],
    include_dirs=["include", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    + ([("TWOPASS_HAVE_X86_KERNELS", "1")] if IS_X86_64 else []),
    extra_compile_args=COMMON_CFLAGS + OPENMP_FLAGS,
    extra_link_args=OPENMP_FLAGS,
    depends=HEADERS + [s for sources, _ in ISA_SOURCES.values() for s in sources],
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={
            "language_level": 3,
            "boundscheck": os.environ.get("TWOPASS_DEBUG") == "1",
            "wraparound": False,
            "initializedcheck": os.environ.get("TWOPASS_DEBUG") == "1",
            "cdivision": True,
        },
    ),
    cmdclass={"build_ext": build_ext_per_isa},
)

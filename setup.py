"""Build of twopass: one extension, twopass.kernels, at the x86-64 baseline, plus one object per ISA.

Only src/avx512f/ and src/avx2/ are compiled with their ISA's flags; the Cython layer, the CPU
detection and the algorithms stay at the baseline, so importing twopass never runs an instruction
the CPU lacks. On other architectures the extension is built without kernels (the NumPy fallback
runs); if the extension cannot be imported at all, the package still imports and uses the fallback.
"""
import os
import platform
from concurrent.futures import ThreadPoolExecutor

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
# TWOPASS_OPTIMIZE replaces -O3 for builds that only check the code (.ci/sanitize: -O1, the level
# the sanitizers are meant for, compiles in half the time); what ships is -O3.
COMMON_CFLAGS = [os.environ.get("TWOPASS_OPTIMIZE", "-O3"), "-fno-math-errno", "-Werror=incompatible-pointer-types"]
# The drivers (src/softmax.c) and the Cython layer run their threads with OpenMP (libgomp).
OPENMP_FLAGS = ["-fopenmp"]
HEADERS = [os.path.join(d, f) for d in ("include/twopass", "src", "src/avx2", "src/avx512f")
           for f in sorted(os.listdir(os.path.join(HERE, d))) if f.endswith(".h")]


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class build_ext_per_isa(build_ext):
    """Compile each ISA's sources with that ISA's flags and link the objects into the extension.

    Every source file compiles in its own compiler process, as many at once as build_ext's
    -j/--parallel says, else one per usable core: the Cython module and the six softmax kernel files take
    most of the build (38 s one after another on 2 cores, 22 s side by side)."""

    def build_extension(self, ext):
        jobs = self.parallel if type(self.parallel) is int and self.parallel > 0 else usable_cores()  # -j, or True
        # (sources, flags) of each ISA, compiled along with the main sources and linked in
        isa_batches = list(ISA_SOURCES.values()) if IS_X86_64 and ext.name == "twopass.kernels" else []
        for sources, _ in isa_batches:
            objects = self.compiler.object_filenames(sources, output_dir=self.build_temp)
            ext.extra_objects = [o for o in ext.extra_objects if o not in objects] + objects
        compile_batch = self.compiler.compile

        def compile_all(sources, **kwargs):
            """build_ext's compile of the main sources (it links right after), and the ISA sources:
            one compiler process per file, the main ones (the large Cython module) first."""
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                main = [pool.submit(compile_batch, [src], **kwargs) for src in sources]
                isa = [pool.submit(compile_batch, [src], output_dir=self.build_temp, include_dirs=ext.include_dirs,
                                   macros=ext.define_macros, extra_postargs=COMMON_CFLAGS + flags, depends=HEADERS)
                       for isa_sources, flags in isa_batches for src in isa_sources]
                objects = [obj for job in main for obj in job.result()]
                for job in isa:
                    job.result()
            return objects

        self.compiler.compile = compile_all
        try:
            super().build_extension(ext)
        finally:
            self.compiler.compile = compile_batch


extension = Extension(
    "twopass.kernels",
    sources=["pyx/twopass/kernels.pyx", "src/cpu.c", "src/dispatch.c", "src/softmax.c", "src/softmax_f64.c", "src/softmax_f16.c",
             "src/output_cache.c"],
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

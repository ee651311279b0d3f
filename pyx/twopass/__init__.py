"""twopass: the Two-Pass Softmax algorithm (Dukhan and Ablavatski, 2020) and the classic
three-pass algorithms, as AVX-512 and AVX2 kernels chosen at run time, with a NumPy fallback.

    import twopass
    y = twopass.softmax(x, axis=-1)            # same as scipy.special.softmax(x, axis=-1)
    twopass.show_runtime()                     # what the CPU has, which kernels run
    with twopass.use_isa("avx2"): ...          # cap the ISA level in a block
"""
import os

from twopass import _api, _dispatch
from twopass._api import (ALGORITHMS, extsum, fallback_calls, logsumexp, logsumexp_from_extsum,
                          merge_extsum, softmax_from_extsum)
from twopass._dispatch import (LEVELS, available_levels, get_num_threads, output_cache_info, set_num_threads,
                               set_output_cache, use_isa)

if _dispatch._kernels is not None:
    _dispatch._kernels.configure_fast_path(_dispatch._level, _api.softmax, _api.log_softmax,
                                           _dispatch.check_threads, _dispatch.MAX_THREADS, _api._KERNEL_ALGORITHM,
                                           _api.logsumexp)
    _dispatch.configure_fast_path_auto()
    _dispatch._kernels.set_streaming_threshold(_dispatch.STREAMING_FROM_BYTES)
    softmax, log_softmax = _dispatch._kernels.softmax, _dispatch._kernels.log_softmax
    logsumexp = _dispatch._kernels.logsumexp
else:
    softmax, log_softmax = _api.softmax, _api.log_softmax

__version__ = "0.1.0"
__all__ = ["softmax", "log_softmax", "logsumexp", "extsum", "merge_extsum", "logsumexp_from_extsum",
           "softmax_from_extsum", "runtime_info", "show_runtime", "use_isa", "available_levels",
           "set_num_threads", "get_num_threads", "set_output_cache", "output_cache_info",
           "LEVELS", "ALGORITHMS"]


def runtime_info():
    """What the CPU has, the levels in force and the kernels each dtype uses, as a dict."""
    level = _dispatch.current_level()
    kernels = _dispatch._kernels
    calls = dict(kernels.call_counts()) if kernels is not None else {lv: 0 for lv in LEVELS}
    calls["python"] += fallback_calls["python"]
    fallback = "numpy fallback (" + ", ".join(ALGORITHMS[1:]) + ")"
    on_kernels = kernels is not None and level != "python"
    f32 = kernels.kernel_names(LEVELS.index(level)) if on_kernels else fallback
    f64 = kernels.kernel_names(LEVELS.index(level), "float64") if on_kernels else fallback
    f16 = kernels.kernel_names(LEVELS.index(level), "float16") if on_kernels else fallback
    f16_row_bytes = _dispatch.AUTO_F16_TWO_PASS_ROW_BYTES[LEVELS.index(level)]
    return {
        "version": __version__,
        "extension": "loaded" if kernels is not None else f"not loaded: {_dispatch.EXTENSION_ERROR}",
        "cpu_features": dict(_dispatch.CPU_FEATURES),
        "best_level": _dispatch.BEST_LEVEL,
        "TWOPASS_ISA": os.environ.get("TWOPASS_ISA") or None,
        "process_level": _dispatch.PROCESS_LEVEL,
        "active_level": level,
        "available_levels": list(available_levels()),
        "kernels": {
            "float32": f32,
            "float16": f16,
            "float64": f64,
            "longdouble": fallback,
        },
        "auto_algorithm": (f"softmax: three_pass_reload for rows under {_dispatch.AUTO_TWO_PASS_FROM} elements "
                           + (f"(float64: {max(1, _dispatch.AUTO_TWO_PASS_FROM // 2)}), "
                              if _dispatch.AUTO_F64_TWO_PASS else "(float64: at any length), ")
                           + f"two_pass from there and for rows of {_dispatch.AUTO_TWO_PASS_ROW_BYTES} bytes or "
                           f"more in jobs whose output reaches {_dispatch.STREAMING_FROM_BYTES} bytes"
                           + ("" if _dispatch.AUTO_F64_TWO_PASS else " (not float64)")
                           + (f"; blocked_reload in place of three_pass_reload for float32 and float64 rows of "
                              f"{_dispatch.AUTO_BLOCKED_RELOAD_FROM} elements or more (in jobs whose output "
                              f"streams: two_pass from {_dispatch.AUTO_BLOCKED_TWO_PASS_ROW_BYTES} bytes)"
                              if _dispatch.AUTO_BLOCKED_RELOAD_FROM < 1 << 62 else "")
                           + (f"; float32 rows of {_dispatch.AUTO_TWO_PASS_L2_ROW_BYTES} bytes or more in jobs over "
                              f"{_dispatch.AUTO_TWO_PASS_L2_JOB_BYTES} bytes in and out (Intel: 3/4 of L2)"
                              if _dispatch.AUTO_TWO_PASS_L2_JOB_BYTES < 1 << 62 else "")
                           + "; float16 rows count 4 bytes per element"
                           + (f", and two_pass for rows over {f16_row_bytes} bytes at 8 per element (Intel: "
                              + ("5/4" if level == "avx512f" else "4x") + " the L2)" if f16_row_bytes < 1 << 62 else "")
                           + f"; log_softmax: two_pass for rows of {_dispatch.AUTO_LOG_SOFTMAX_TWO_PASS_FROM} "
                           "elements or more, three_pass_reload below"
                           if level != "python" else "three_pass_reload"),
        "prefetch_ahead_bytes": kernels.prefetch_ahead() if kernels is not None else None,
        "streaming_stores": ({"from_output_bytes": _dispatch.STREAMING_FROM_BYTES,
                              "kernels": kernels.streaming_kernel_names(LEVELS.index(level)),
                              "kernels_float64": kernels.streaming_kernel_names(LEVELS.index(level), "float64"),
                              "kernels_float16": kernels.streaming_kernel_names(LEVELS.index(level), "float16")}
                             if kernels is not None and level != "python" else None),
        "threads": {"default": get_num_threads(), "openmp": "libgomp" if kernels is not None else None,
                    "parallel_from_elements": kernels.PARALLEL_MIN if kernels is not None else None},
        "output_cache": output_cache_info(),
        "calls": calls,
    }


def show_runtime():
    """Print runtime_info() readably."""
    info = runtime_info()
    features = info.pop("cpu_features")
    kernels = info.pop("kernels")
    width = max(len(k) for k in info)
    print("twopass runtime")
    for key, value in info.items():
        print(f"  {key:<{width}} : {value}")
    have = sorted(name for name, ok in features.items() if ok)
    print(f"  {'cpu_features':<{width}} : {' '.join(have) or '(none detected)'}")
    print("  kernels:")
    for dtype, names in kernels.items():
        if isinstance(names, dict):
            print(f"    {dtype}:")
            for op, name in names.items():
                print(f"      {op:<22} {name}")
        else:
            print(f"    {dtype}: {names}")

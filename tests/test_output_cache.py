"""The output cache (include/twopass/output_cache.h): large fresh results come from NumPy's handler
"twopass_output_cache", are right, are placed 2048 bytes past the input modulo 4096, and reuse
the mapping of a freed result; the limits hold; arrays from it behave as any other (resize, free);
the allocator's C functions keep their contracts (calloc zeroes, realloc keeps the data, sizes that
overflow give NULL); a child forked while another thread holds the cache's lock can still allocate;
bad limits raise as set_num_threads's bad counts do."""
import ctypes
import gc
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import twopass
from twopass import kernels

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy < 2
    from numpy.core.multiarray import get_handler_name

from conftest import max_relative_error, reference_softmax

HANDLER = kernels.OUTPUT_HANDLER_NAME
MIN_BYTES = kernels.OUTPUT_CACHE_MIN_BYTES
PLACE_MIN = kernels.OUTPUT_PLACE_MIN_BYTES
# float32 elements of one result just above the cache's threshold (kept small: the suite runs under
# qemu and valgrind too)
N = MIN_BYTES // 4 + 64 * 1024


@pytest.fixture
def cache():
    """A cache of the default limit, empty at the start and the end of the test."""
    previous = twopass.set_output_cache(0)
    twopass.set_output_cache(kernels.OUTPUT_CACHE_DEFAULT_LIMIT)
    yield
    gc.collect()
    twopass.set_output_cache(0)
    twopass.set_output_cache(previous)


def big_input(rows=1, seed=0):
    return np.random.default_rng(seed).uniform(-50, 50, (rows, N // rows)).astype(np.float32)


def test_large_results_come_from_the_cache_on_every_level(cache, level):
    x = big_input(rows=64)
    y = twopass.softmax(x, axis=-1)
    assert get_handler_name(y) == HANDLER
    assert y.flags.owndata and y.flags.c_contiguous and y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(y, twopass.softmax(x, axis=-1, out=np.empty_like(x)))
    assert max_relative_error(y[::16], reference_softmax(x[::16])) < 1e-6
    z = twopass.log_softmax(x, axis=-1)
    assert get_handler_name(z) == HANDLER
    assert np.array_equal(z, twopass.log_softmax(x, axis=-1, out=np.empty_like(x)))


@pytest.mark.parametrize("path", ["rows", "columns", "axis_none", "api_rows", "api_columns_f_order", "float64"])
def test_every_result_path_uses_the_cache(cache, path):
    x = big_input(rows=64)
    if path == "rows":
        call = lambda out=None: twopass.softmax(x, axis=1, out=out)  # noqa: E731 (the fast path)
    elif path == "columns":
        call = lambda out=None: twopass.softmax(x, axis=0, out=out)  # noqa: E731
    elif path == "axis_none":
        call = lambda out=None: twopass.log_softmax(x, out=out)  # noqa: E731
    elif path == "api_rows":  # a tuple axis goes through twopass._api
        call = lambda out=None: twopass.softmax(x, axis=(1,), out=out)  # noqa: E731
    elif path == "api_columns_f_order":
        x = np.asfortranarray(x)
        call = lambda out=None: twopass.softmax(x, axis=1, out=out)  # noqa: E731
    else:
        x = x[:, : x.shape[1] // 2].astype(np.float64)
        call = lambda out=None: twopass.softmax(x, axis=1, out=out)  # noqa: E731
    y = call()
    assert get_handler_name(y) == HANDLER
    assert np.array_equal(y, call(out=np.empty_like(y)))


def test_small_results_keep_numpys_allocator(cache):
    x = np.ones((4, 1000), np.float32)
    before = twopass.output_cache_info()
    y = twopass.softmax(x, axis=-1)
    assert get_handler_name(y) != HANDLER
    assert twopass.output_cache_info()["misses"] == before["misses"]


def test_a_freed_result_is_reused_and_the_new_result_is_right(cache):
    x = big_input()
    y = twopass.softmax(x)
    address = y.ctypes.data
    del y
    info = twopass.output_cache_info()
    assert info["cached_blocks"] == 1 and info["cached_bytes"] >= x.nbytes
    x2 = big_input(seed=1)
    y2 = twopass.softmax(x2)
    assert twopass.output_cache_info()["hits"] == info["hits"] + 1
    assert abs(y2.ctypes.data - address) < 4096  # same mapping (the placement follows x2)
    assert 2048 - 63 <= (y2.ctypes.data - x2.ctypes.data) % 4096 <= 2048
    assert np.array_equal(y2, twopass.softmax(x2, out=np.empty_like(x2)))
    assert twopass.output_cache_info()["cached_blocks"] == 0


@pytest.mark.parametrize("offset_floats", [0, 1, 4, 16, 500, 1023])
def test_results_are_placed_2048_bytes_past_the_input(cache, offset_floats):
    base = big_input()
    x = base.reshape(-1)[offset_floats:]
    y = twopass.softmax(x)
    assert get_handler_name(y) == HANDLER
    distance = (y.ctypes.data - x.ctypes.data) % 4096
    assert 2048 - 63 <= distance <= 2048 and y.ctypes.data % 64 == 0
    assert np.array_equal(y, twopass.softmax(x, out=np.empty_like(x)))


@pytest.mark.parametrize("path", ["fast", "api"])
def test_mid_size_results_never_lie_just_past_their_input(cache, path):
    """From OUTPUT_PLACE_MIN_BYTES, a result NumPy's allocator put 1-128 bytes past its input modulo
    4096 is allocated again by the handler, placed 2048 bytes past it. x is laid 32 bytes before
    where a probe of the result's size just was, so that malloc, which often hands that block out
    again, puts the result in that window: no result may stay there, the ones moved are right, and
    (where malloc reuses blocks at once: not under ASan, whose quarantine holds them) some are moved."""
    moved = 0
    for trial, n in enumerate([PLACE_MIN // 4, 100_000, 262_144, 1_000_000, 3_000_000] * 4):
        buffer = np.random.default_rng(trial).uniform(-30, 30, n + 2048).astype(np.float32)
        probe = np.empty(n, np.float32)
        where = probe.ctypes.data
        del probe
        start = ((where - 32 - buffer.ctypes.data) % 4096) // 4
        x = buffer[start:start + n]
        y = twopass.softmax(x) if path == "fast" else twopass.softmax(x, axis=(0,))
        distance = (y.ctypes.data - x.ctypes.data) % 4096
        assert not 0 < distance <= 128, (n, distance)
        if get_handler_name(y) == HANDLER:
            moved += 1
            assert 2048 - 63 <= distance <= 2048 and y.ctypes.data % 64 == 0, (n, distance)
            assert np.array_equal(y, twopass.softmax(x, out=np.empty_like(x))), n
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        assert moved > 0


def test_small_results_are_never_moved(cache):
    """Below OUTPUT_PLACE_MIN_BYTES the result stays where NumPy's allocator puts it, even just past
    the input (the handler's switch would cost more than 4K aliasing does there)."""
    n = PLACE_MIN // 4 - 16
    buffer = np.ones(n + 2048, np.float32)
    probe = np.empty(n, np.float32)
    where = probe.ctypes.data
    del probe
    start = ((where - 32 - buffer.ctypes.data) % 4096) // 4
    y = twopass.softmax(buffer[start:start + n])
    assert get_handler_name(y) != HANDLER


def test_limits_bound_what_the_cache_keeps(cache):
    x = big_input()
    results = [twopass.softmax(x) for _ in range(kernels.OUTPUT_CACHE_MAX_BLOCKS + 2)]
    assert all(get_handler_name(y) == HANDLER for y in results)
    del results
    gc.collect()
    info = twopass.output_cache_info()
    assert info["cached_blocks"] == kernels.OUTPUT_CACHE_MAX_BLOCKS
    assert info["cached_bytes"] <= info["limit"]
    # a limit below one block keeps nothing, and drops what is there
    assert twopass.set_output_cache(MIN_BYTES) == kernels.OUTPUT_CACHE_DEFAULT_LIMIT
    assert twopass.output_cache_info()["cached_blocks"] == 0
    del_me = twopass.softmax(x)
    del del_me
    assert twopass.output_cache_info()["cached_bytes"] == 0


def test_a_limit_of_zero_turns_the_cache_off(cache):
    twopass.set_output_cache(0)
    x = big_input()
    y = twopass.softmax(x)
    assert get_handler_name(y) != HANDLER
    assert np.array_equal(y, twopass.softmax(x, out=np.empty_like(x)))


def test_arrays_from_the_cache_resize_and_free_like_any_other(cache):
    x = big_input()
    y = twopass.softmax(x.reshape(-1))
    assert get_handler_name(y) == HANDLER
    expected = y.copy()
    y.resize(N // 3, refcheck=False)  # shrinks: realloc keeps the block or moves the prefix
    assert np.array_equal(y, expected[: N // 3])
    y.resize(3 * N, refcheck=False)  # grows: a new block with the data copied (NumPy zeroes the rest)
    assert np.array_equal(y[: N // 3], expected[: N // 3])
    assert not y[N:].any()
    del y
    gc.collect()
    assert twopass.output_cache_info()["cached_blocks"] >= 1


def test_threads_share_the_cache_safely(cache):
    """Four threads take and give back blocks through the C functions at once (ctypes drops the GIL
    around each call, so only the cache's own lock orders them): every block a thread holds keeps
    the pattern it wrote, and no block is handed out twice."""
    lib = TestAllocatorContracts.lib
    size = MIN_BYTES + 4096
    failures = []

    def work(seed):
        for i in range(40):
            p = lib.twopass_output_malloc(None, size)
            if p is None:
                failures.append("NULL")
                return
            mark = (seed * 41 + i) % 251 + 1
            ctypes.memset(p, mark, size)
            q = lib.twopass_output_malloc(None, size)  # a second block while the first is held
            ctypes.memset(q, 255 - mark, size)
            for where in (0, size // 2, size - 1):
                if ctypes.c_ubyte.from_address(p + where).value != mark:
                    failures.append(f"block handed out twice (thread {seed}, round {i})")
            lib.twopass_output_free(None, q, size)
            lib.twopass_output_free(None, p, size)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    info = twopass.output_cache_info()
    assert info["cached_blocks"] <= kernels.OUTPUT_CACHE_MAX_BLOCKS and info["cached_bytes"] <= info["limit"]
    x = big_input()
    expected = twopass.softmax(x, out=np.empty_like(x))
    assert np.array_equal(twopass.softmax(x), expected)


class TestAllocatorContracts:
    """The C functions NumPy calls, through ctypes on the extension itself."""

    lib = ctypes.CDLL(kernels.__file__)
    for name, restype, argtypes in (
            ("twopass_output_malloc", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t]),
            ("twopass_output_calloc", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]),
            ("twopass_output_realloc", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
            ("twopass_output_free", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
            ("twopass_output_cache_align_like", None, [ctypes.c_void_p])):
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes

    def test_calloc_zeroes_a_reused_block(self, cache):
        p = self.lib.twopass_output_malloc(None, MIN_BYTES)
        ctypes.memset(p, 0x5A, MIN_BYTES)
        self.lib.twopass_output_free(None, p, MIN_BYTES)
        q = self.lib.twopass_output_calloc(None, MIN_BYTES // 8, 8)
        assert q == p  # the same block, with its old bytes zeroed
        assert not np.frombuffer((ctypes.c_char * MIN_BYTES).from_address(q), np.uint8).any()
        self.lib.twopass_output_free(None, q, MIN_BYTES)

    def test_realloc_keeps_the_data(self, cache):
        p = self.lib.twopass_output_malloc(None, 4096)
        ctypes.memmove(p, bytes(range(256)) * 16, 4096)
        q = self.lib.twopass_output_realloc(None, p, MIN_BYTES)
        assert bytes((ctypes.c_char * 4096).from_address(q)) == bytes(range(256)) * 16
        r = self.lib.twopass_output_realloc(None, q, 100)
        assert bytes((ctypes.c_char * 100).from_address(r)) == bytes(range(100))
        self.lib.twopass_output_free(None, r, 100)
        self.lib.twopass_output_free(None, None, 0)  # free(NULL) does nothing

    def test_small_blocks_come_from_malloc(self, cache):
        """Sizes below the cache's blocks (what a garbage collection run inside the handler's window
        may allocate) take malloc, aligned, and leave the cache alone."""
        before = twopass.output_cache_info()
        p = self.lib.twopass_output_malloc(None, 1000)
        assert p is not None and p % 64 == 0
        ctypes.memmove(p, bytes(range(200)) * 5, 1000)
        q = self.lib.twopass_output_realloc(None, p, MIN_BYTES)  # grows into a mapping
        assert bytes((ctypes.c_char * 1000).from_address(q)) == bytes(range(200)) * 5
        r = self.lib.twopass_output_realloc(None, q, 10)  # and back to malloc
        assert bytes((ctypes.c_char * 10).from_address(r)) == bytes(range(10))
        z = self.lib.twopass_output_calloc(None, 100, 10)
        assert not bytes((ctypes.c_char * 1000).from_address(z)).strip(b"\0")
        for block in (r, z):
            self.lib.twopass_output_free(None, block, 0)
        after = twopass.output_cache_info()
        assert after["misses"] == before["misses"] + 1  # the one mapping

    @pytest.mark.parametrize("size", [1000, 300_000, 5 << 20, MIN_BYTES + 4096])
    def test_blocks_are_placed_for_their_input(self, cache, size):
        """Given an input (align_like), malloc's blocks and the mappings alike start 2048 bytes past
        it modulo 4096 (rounded down to 64 bytes), for inputs at any address; without one, 64-byte
        aligned. Each block holds its size: written to the last byte, freed."""
        for x_address in (0x10000, 0x10010, 0x10030, 0x107C0, 0x10FF0):
            self.lib.twopass_output_cache_align_like(x_address)
            p = self.lib.twopass_output_malloc(None, size)
            assert ((x_address + 2048) & 4095) & ~63 == p % 4096, (size, hex(x_address), hex(p))
            ctypes.memset(p, 7, size)
            self.lib.twopass_output_free(None, p, size)
        p = self.lib.twopass_output_malloc(None, size)  # the hint was used up
        assert p % 64 == 0
        ctypes.memset(p, 7, size)
        self.lib.twopass_output_free(None, p, size)

    @pytest.mark.parametrize("size", [300_000, MIN_BYTES + 4096])
    def test_realloc_stays_inside_a_placed_block(self, cache, size):
        """A block placed far into its room (input 4080 bytes into a page) grown by almost that room:
        realloc keeps it only if it really has the bytes (ASan and valgrind see a write past it)."""
        self.lib.twopass_output_cache_align_like(0x10FF0)
        p = self.lib.twopass_output_malloc(None, size)
        ctypes.memset(p, 3, size)
        q = self.lib.twopass_output_realloc(None, p, size + 4000)
        ctypes.memset(q, 5, size + 4000)
        assert bytes((ctypes.c_char * 8).from_address(q + size + 3992)) == b"\5" * 8
        self.lib.twopass_output_free(None, q, size + 4000)

    def test_sizes_that_overflow_give_null(self, cache):
        huge = 2**64 - 1
        assert self.lib.twopass_output_malloc(None, huge) is None
        assert self.lib.twopass_output_calloc(None, 2**33, 2**33) is None
        p = self.lib.twopass_output_malloc(None, 0)  # 0 bytes: a valid pointer, as NumPy's allocators give
        assert p is not None and p % 64 == 0
        assert self.lib.twopass_output_realloc(None, p, huge) is None  # the old block stays valid
        ctypes.memset(p, 1, 1)
        self.lib.twopass_output_free(None, p, 0)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                        (None, TypeError)])
def test_bad_limits_raise(bad, error):
    with pytest.raises(error):
        twopass.set_output_cache(bad)


def test_the_environment_sets_the_limit():
    code = "import twopass; print(twopass.output_cache_info()['limit'])"
    env = dict(os.environ, TWOPASS_OUTPUT_CACHE="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12345"
    env["TWOPASS_OUTPUT_CACHE"] = "lots"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "TWOPASS_OUTPUT_CACHE" in bad.stderr


def test_runtime_info_reports_the_cache(cache):
    info = twopass.runtime_info()["output_cache"]
    assert info["limit"] == kernels.OUTPUT_CACHE_DEFAULT_LIMIT and info["min_block_bytes"] == MIN_BYTES


SLOW_MADVISE_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
/* madvise(MADV_FREE) that creates the file $SLOW_MADVISE_MARK and then takes half a second: the
 * cache's free holds its lock that long, and the test knows when it has begun. */
int madvise(void* addr, size_t length, int advice)
{
    static int (*real)(void*, size_t, int);
    if (real == NULL) {
        real = (int (*)(void*, size_t, int))dlsym(RTLD_NEXT, "madvise");
    }
    const char* mark = getenv("SLOW_MADVISE_MARK");
    if (advice == MADV_FREE && mark != NULL) {
        close(open(mark, O_CREAT | O_WRONLY, 0600));
        usleep(500000);
    }
    return real(addr, length, advice);
}
"""


def test_a_child_forked_while_a_thread_holds_the_cache_lock_can_allocate(tmp_path):
    """A fork while another thread is inside the cache (here: in free's madvise, slowed to half a
    second by an LD_PRELOAD shim that says when it has begun) must not leave the child a held lock:
    its next large allocation would wait forever. The child allocates, writes and frees a block; the
    parent gives it 30 s, then allocates too (the lock must be free on both sides of the fork)."""
    cc = shutil.which("gcc")
    if cc is None:
        if os.environ.get("TWOPASS_REQUIRE_EMULATION") == "1":  # CI, which has gcc for the SIMDe build too
            pytest.fail("gcc is needed to build the madvise shim")
        pytest.skip("no gcc for the madvise shim")
    source = tmp_path / "slow_madvise.c"
    source.write_text(SLOW_MADVISE_SHIM)
    shim = tmp_path / "slow_madvise.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", str(source), "-o", str(shim), "-ldl"], check=True)
    code = f"""
import ctypes, os, sys, threading, time
from twopass import kernels
lib = ctypes.CDLL(kernels.__file__)
lib.twopass_output_malloc.restype = ctypes.c_void_p
lib.twopass_output_malloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.twopass_output_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
size = {MIN_BYTES + 4096}
p = lib.twopass_output_malloc(None, size)
freeing = threading.Thread(target=lib.twopass_output_free, args=(None, p, size))
freeing.start()
mark = os.environ["SLOW_MADVISE_MARK"]
deadline = time.monotonic() + 30
while not os.path.exists(mark):  # then the thread is in madvise, under the cache's lock
    if time.monotonic() > deadline:
        sys.exit("free never reached madvise")
    time.sleep(0.001)
pid = os.fork()
if pid == 0:
    q = lib.twopass_output_malloc(None, size)
    ctypes.memset(q, 1, size)
    lib.twopass_output_free(None, q, size)
    os._exit(0 if q else 3)
freeing.join()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(os.waitstatus_to_exitcode(status))
        q = lib.twopass_output_malloc(None, size)  # the parent's lock is free too
        lib.twopass_output_free(None, q, size)
        sys.exit(0 if q else 4)
    time.sleep(0.05)
os.kill(pid, 9)
sys.exit("the child hung on the cache's lock")
"""
    preload = ":".join(filter(None, [os.environ.get("LD_PRELOAD"), str(shim)]))  # after ASan's, under .ci/sanitize
    env = dict(os.environ, LD_PRELOAD=preload, SLOW_MADVISE_MARK=str(tmp_path / "in_madvise"))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.returncode, res.stderr)

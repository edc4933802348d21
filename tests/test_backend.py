"""The shim: backend resolution and its clear errors, with and without CuPy and a GPU."""

import importlib.util
import re
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from gpunet import backend as backends
from gpunet import bench
from gpunet.cli import cli
from gpunet.errors import BackendUnavailable, ConfigError
from tests.conftest import NO_CUDA
from tests.fake_device import cuda_namespaces

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def one_line_error(*args):
    r = CliRunner().invoke(cli, ["train", *args])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return r.exit_code, lines[0]


def fake_cupy(count=1, dot=np.dot, multiply=np.multiply, compute_capability="90"):
    """A stand-in for CuPy on NumPy: `count` devices; `dot` and `multiply` can be swapped for failing ones.

    Its `compute_types` lists the (dtype, compute type) pairs gpunet set for cuBLAS.
    """
    compute_types = []
    cuda, core = cuda_namespaces(count, compute_capability, compute_types)
    return types.SimpleNamespace(cuda=cuda, _core=core, asarray=np.asarray, empty=np.empty, dot=dot,
                                 multiply=multiply, asnumpy=np.asarray, compute_types=compute_types)


def raises(error):
    """A stand-in for a CuPy call that raises `error`."""

    def call(*args, **kwargs):
        raise error

    return call


# what CuPy 14.2 raises on a machine whose wheel lacks its CUDA libraries (seen on this project's CI machine)
NO_CUBLAS = ImportError('Failure finding "libcublasLt.so.13 or libcublasLt.so.12": No such file: libcublasLt.so.13')
NO_NVRTC = RuntimeError('Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file: libnvrtc.so.13')


def test_cpu_round_trip():
    b = backends.resolve("cpu")
    a = b.asarray(np.arange(6.0).reshape(2, 3).T, np.float32)
    assert a.flags.c_contiguous and a.dtype == np.float32
    assert np.array_equal(b.to_numpy(a), np.arange(6.0).reshape(2, 3).T)
    assert b.name == "cpu" and b.device and b.note == ""


def test_cuda_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    with pytest.raises(BackendUnavailable, match=re.escape("'cupy-cuda12x[ctk]'")):
        backends.resolve("cuda")
    code, line = one_line_error("--backend", "cuda")
    assert code == 2 and "CuPy is not installed" in line and "cupy-cuda13x" in line


def test_auto_without_cupy_falls_back_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    b = backends.resolve("auto")
    assert b.name == "cpu" and "CuPy is not installed" in b.note
    r = CliRunner().invoke(cli, ["train", "--backend", "auto", "--epochs", "10"])
    assert r.exit_code == 0 and r.stderr.strip() == b.note


def test_a_cupy_not_found_is_remembered_until_one_is_there(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])  # nothing to find it in
    monkeypatch.setattr(backends, "_MISSES", {})
    looked = []
    monkeypatch.setattr(backends, "_stamps", lambda path, stamps=backends._stamps: looked.append(1) or stamps(path))
    for _ in range(3):
        with pytest.raises(BackendUnavailable, match="CuPy is not installed"):
            backends.resolve("cuda")
    assert list(backends._MISSES) == [(str(tmp_path),)] and len(looked) == 1  # remembered, not looked at again
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(0))  # imported meanwhile (a test's stand-in): taken at once
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        backends.resolve("cuda")
    monkeypatch.delitem(sys.modules, "cupy")
    (tmp_path / "cupy").mkdir()  # CuPy installed since: found once a second has passed
    (tmp_path / "cupy" / "__init__.py").write_text("raise ImportError('this stand-in CuPy was found')\n")
    monkeypatch.setattr(backends, "LOOK_AGAIN", 0.0)
    with pytest.raises(BackendUnavailable, match="CuPy is not installed"):
        backends.resolve("cuda")  # its ImportError, no longer the remembered miss
    with pytest.raises(ImportError, match="stand-in CuPy was found"):
        backends._import_cupy()


@pytest.mark.skipif(not HAS_CUPY or not NO_CUDA, reason="needs CuPy installed on a machine without a usable GPU")
def test_real_cupy_without_a_gpu_names_the_cuda_error():
    with pytest.raises(BackendUnavailable, match="CUDA cannot be used: cuda") as e:
        backends.resolve("cuda")
    assert "--backend cpu" in str(e.value)
    code, line = one_line_error("--backend", "cuda")
    assert code == 2 and "cudaError" in line
    assert backends.resolve("auto").name == "cpu"


@pytest.mark.parametrize("count, device, says", [(0, 0, "no CUDA device"), (2, 5, "2 CUDA device(s)"), (1, -1, "1 CUDA")])
def test_device_count_messages(monkeypatch, count, device, says):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count))
    with pytest.raises(BackendUnavailable, match=re.escape(says)):
        backends.resolve("cuda", device)
    code, line = one_line_error("--backend", "cuda", "--device", str(device))
    assert code == 2 and says in line


@pytest.mark.gpu
@pytest.mark.skipif(bool(NO_CUDA), reason=NO_CUDA or "")
def test_real_gpu_device_out_of_range():
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    with pytest.raises(BackendUnavailable, match=f"{count} CUDA device"):
        backends.resolve("cuda", count)
    b = backends.resolve("cuda", 0)
    assert b.name == "cuda" and b.device
    assert backends.resolve("auto").name == "cuda"


def test_a_usable_device_is_proven_and_its_product_is_dot(monkeypatch):
    calls = []
    fake = fake_cupy(dot=lambda a, b, out: calls.append("dot") or np.dot(a, b, out=out),
                     multiply=lambda *a, **k: calls.append("multiply") or np.multiply(*a, **k))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    b = backends.resolve("cuda")
    assert (b.name, b.device, b.index, b.tf32, b.note) == ("cuda", "Fake", 0, False, "")
    assert calls == ["dot", "multiply"]  # one product, one elementwise kernel
    assert b.matmul is fake.dot and backends.resolve("cpu").matmul is np.dot
    auto = backends.resolve("auto")
    assert auto.name == "cuda" and auto.note == "auto: using CUDA device 0 (Fake)" and auto.matmul is fake.dot
    assert calls == ["dot", "multiply"]  # proven once per process: each estimator fit or predict resolves again


@pytest.mark.parametrize("failing, error, says", [
    ("dot", NO_CUBLAS, "libcublasLt.so.13"),
    ("multiply", NO_NVRTC, "libnvrtc.so.13"),
    ("multiply", None, "CompileException"),
    ("dot", "wrong", "a 2x2 test product gave [[0.0, 0.0], [0.0, 0.0]]"),
])
def test_cuda_that_fails_its_test_product(monkeypatch, failing, error, says):
    fake = fake_cupy()
    if error is None:
        error = fake.cuda.compiler.CompileException()
    call = (lambda a, b, out: out.fill(0)) if error == "wrong" else raises(error)
    setattr(fake, failing, call)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailable, match=re.escape(says)) as e:
        backends.resolve("cuda")
    assert "failed a test product" in str(e.value) and "[ctk]>=14" in str(e.value) and "--backend cpu" in str(e.value)
    code, line = one_line_error("--backend", "cuda")
    assert code == 2 and says in line and "[ctk]" in line
    auto = backends.resolve("auto")  # falls back, with the cause and without the fix
    assert auto.name == "cpu" and says in auto.note and "[ctk]" not in auto.note


def test_tf32_is_off_unless_asked_and_only_on_ampere_or_newer(monkeypatch):
    fake = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("CUPY_TF32", "1")  # must not change gpunet's float32 results
    assert backends.resolve("cuda").tf32 is False
    assert fake.compute_types[-1] == (np.dtype(np.float32), 1)  # cuBLAS's plain float32
    assert backends.resolve("cuda", tf32=True).tf32 is True
    assert fake.compute_types[-1] == (np.dtype(np.float32), 7)  # TF32
    assert backends.resolve("cuda").tf32 is False and fake.compute_types[-1] == (np.dtype(np.float32), 1)
    assert backends.resolve("cpu", tf32=True).tf32 is False
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(compute_capability="75"))
    with pytest.raises(ConfigError, match=r"compute capability 8.0 or newer; device 0 has 7.5: drop --tf32"):
        backends.resolve("auto", tf32=True)
    assert backends.resolve("cuda").tf32 is False


@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy installed")
def test_real_cupy_float32_products_ignore_cupy_tf32_in_the_environment(monkeypatch):
    import cupy
    from cupy._core import _routines_linalg as linalg

    monkeypatch.setenv("CUPY_TF32", "1")
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TBD)  # as before CuPy's first float32 product
    try:
        backends._set_tf32(cupy, 0, False)
        # without it CuPy would read CUPY_TF32 here, and choose TF32 (or, without a GPU, fail to ask the device)
        assert cupy._core.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
    finally:
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TBD)


def test_unknown_backend_name():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        backends.resolve("tpu")


def test_pool_high_water_counts_bytes_in_use_not_bytes_held():
    hook = bench.PoolHighWater(in_use=1000)  # bytes already in use when measuring starts
    hook.malloc_postprocess(device_id=0, size=500, mem_size=512, mem_ptr=1, pmem_id=1)
    hook.malloc_postprocess(device_id=0, size=2000, mem_size=2048, mem_ptr=2, pmem_id=2)
    hook.free_postprocess(device_id=0, mem_size=2048, mem_ptr=2, pmem_id=2)
    hook.malloc_postprocess(device_id=0, size=1024, mem_size=1024, mem_ptr=3, pmem_id=3)  # a reused block
    hook.malloc_postprocess(device_id=0, size=10**9, mem_size=10**9, mem_ptr=0, pmem_id=0)  # failed: not in use
    assert hook.in_use == 1000 + 512 + 1024 and hook.peak == 1000 + 512 + 2048
    assert hook.peak_above_start() == 512 + 2048


@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy installed")
def test_pool_high_water_is_a_registered_cupy_memory_hook():
    import cupy

    pool = types.SimpleNamespace(used_bytes=lambda: 256)
    xp = types.SimpleNamespace(cuda=cupy.cuda, get_default_memory_pool=lambda: pool)
    hooks = cupy.cuda.memory_hook.get_memory_hooks()
    with bench.pool_high_water(xp) as hook:
        assert isinstance(hook, cupy.cuda.MemoryHook) and hooks[hook.name] is hook
        for h in hooks.values():  # what CuPy's pool does around a malloc and a free (cupy/cuda/memory.pyx)
            h.malloc_preprocess(device_id=0, size=100, mem_size=512)
            h.alloc_preprocess(device_id=0, mem_size=512)
            h.alloc_postprocess(device_id=0, mem_size=512, mem_ptr=7)
            h.malloc_postprocess(device_id=0, size=100, mem_size=512, mem_ptr=7, pmem_id=9)
            h.free_preprocess(device_id=0, mem_size=512, mem_ptr=7, pmem_id=9)
            h.free_postprocess(device_id=0, mem_size=512, mem_ptr=7, pmem_id=9)
    assert hook.name not in hooks
    assert (hook.start, hook.in_use, hook.peak, hook.peak_above_start()) == (256, 256, 768, 512)


def test_asarray_gives_contiguous_arrays_and_keeps_0d_ones_0d():
    """ascontiguousarray alone turns a 0-d array 1-d: an optimizer's scalars moved so cost twice the time."""
    b = backends.resolve("cpu")
    assert b.asarray(np.float64(0.5)).shape == () and b.asarray(np.zeros(()), np.float32).dtype == np.float32
    t = b.asarray(np.ones((3, 4)).T)
    assert t.flags.c_contiguous and t.shape == (4, 3)

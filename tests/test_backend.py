"""The shim: backend resolution and its clear errors, with and without CuPy and a GPU."""

import importlib.util
import re
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from gpunet import backend as backends
from gpunet.cli import cli
from gpunet.errors import BackendUnavailable
from tests.conftest import NO_CUDA

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def one_line_error(*args):
    r = CliRunner().invoke(cli, ["train", *args])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return r.exit_code, lines[0]


def fake_cupy(count):
    """A stand-in for CuPy that reports `count` devices (for the messages that need a number of GPUs)."""
    runtime = types.SimpleNamespace(getDeviceCount=lambda: count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_cpu_round_trip():
    b = backends.resolve("cpu")
    a = b.asarray(np.arange(6.0).reshape(2, 3).T, np.float32)
    assert a.flags.c_contiguous and a.dtype == np.float32
    assert np.array_equal(b.to_numpy(a), np.arange(6.0).reshape(2, 3).T)
    assert b.name == "cpu" and b.device and b.note == ""


def test_cuda_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    with pytest.raises(BackendUnavailable, match="cupy-cuda12x"):
        backends.resolve("cuda")
    code, line = one_line_error("--backend", "cuda")
    assert code == 2 and "CuPy is not installed" in line and "cupy-cuda13x" in line


def test_auto_without_cupy_falls_back_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    b = backends.resolve("auto")
    assert b.name == "cpu" and "CuPy is not installed" in b.note
    r = CliRunner().invoke(cli, ["train", "--backend", "auto", "--epochs", "10"])
    assert r.exit_code == 0 and r.stderr.strip() == b.note


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


def test_unknown_backend_name():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        backends.resolve("tpu")

"""A stand-in for CuPy with one device, on the CPU: the paths that take and give CuPy arrays, run here.

Its arrays are NumPy arrays of a type whose module is `cupy`, with CuPy's `.get()` (a host copy) and
`.device`; its functions are NumPy's, giving such arrays; `cuda` holds what gpunet's backend resolution
calls. `host_copies` counts the .get() calls, so that a test can see what came back to the host.

What it cannot do is refuse NumPy's implicit conversion as CuPy does: np.asarray of an ndarray subclass
succeeds, so a scikit-learn function handed a device array passes here and raises on CuPy. The real-CuPy
test in test_sklearn_device.py covers that where a GPU is usable.
"""

import sys
import types

import numpy as np


class ndarray(np.ndarray):
    device = types.SimpleNamespace(id=0)
    host_copies = []

    def get(self):
        ndarray.host_copies.append(self.shape)
        return np.array(self)


ndarray.__module__ = "cupy"


def _on_device(fn):
    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        return out.view(ndarray) if type(out) is np.ndarray else out
    return call


def cuda_namespaces(count=1, compute_capability="90", compute_types=None):
    """(cuda, _core): what gpunet's backend resolution and synchronisation call of CuPy, for `count`
    devices; the (dtype, compute type) pairs gpunet sets for cuBLAS are appended to `compute_types`."""
    record = (lambda dtype, t: compute_types.append((np.dtype(dtype), t))) if compute_types is not None else None
    linalg = types.SimpleNamespace(COMPUTE_TYPE_DEFAULT=1, COMPUTE_TYPE_TF32=7,
                                   set_compute_type=record or (lambda dtype, t: None))
    device = types.SimpleNamespace(use=lambda: None, compute_capability=compute_capability)
    runtime = types.SimpleNamespace(getDeviceCount=lambda: count, getDeviceProperties=lambda i: {"name": b"Fake"})
    compiler = types.SimpleNamespace(CompileException=type("CompileException", (Exception,), {}))
    stream = types.SimpleNamespace(synchronize=lambda: None)
    cuda = types.SimpleNamespace(runtime=runtime, Device=lambda i: device, compiler=compiler,
                                 get_current_stream=lambda: stream)
    return cuda, types.SimpleNamespace(_routines_linalg=linalg)


def module():
    """A fresh fake `cupy` module."""
    fake = types.ModuleType("cupy")
    fake.cuda, fake._core = cuda_namespaces()
    fake.asnumpy = lambda a: a.get() if isinstance(a, ndarray) else np.asarray(a)

    def attribute(name):
        value = getattr(np, name)
        return _on_device(value) if callable(value) and not isinstance(value, type) else value

    fake.__getattr__ = attribute
    return fake


def install(monkeypatch):
    """Make `import cupy` give a fresh fake for the rest of the test; returns it."""
    fake = module()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    ndarray.host_copies.clear()
    return fake


def to_device(a):
    """`a` as one of the fake's device arrays."""
    return np.array(a).view(ndarray)

"""The array-module shim: the only place that imports CuPy.

`resolve("cpu" | "cuda" | "auto", device, tf32)` returns a `Backend` whose `xp` is NumPy or CuPy.
The network is written once against `backend.xp` and the few helpers here.
"""

import functools
import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from gpunet.errors import BackendUnavailable, ConfigError

BACKENDS = ("cpu", "cuda", "auto")
ENV_VAR = "GPUNET_BACKEND"
CUDA_EXTRAS_HINT = (
    "install it with pip install 'cupy-cuda12x[ctk]' (CUDA 12 driver) or 'cupy-cuda13x[ctk]' (CUDA 13 driver), "
    "gpunet's extras [cuda12] and [cuda13]"
)


@dataclass(frozen=True)
class Backend:
    """An array module and the device it runs on.

    Attributes:
        name: "cpu" or "cuda".
        xp: the array module (numpy or cupy).
        device: a human-readable device name (CPU model or GPU name).
        index: the CUDA device index, or None on the CPU.
        note: why `auto` chose this backend (empty when it was asked for by name).
        tf32: whether float32 matrix products may round their inputs to TF32 (CUDA only; see `resolve`).
    """

    name: str
    xp: object
    device: str
    index: int | None = None
    note: str = field(default="", compare=False)
    tf32: bool = False
    # matmul(a, b, out=o): o[...] = a @ b, `o` C-contiguous of the exact dtype and shape, written in place.
    matmul: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # dot on both: cheaper than matmul (PERF-NOTES); CuPy's matmul is its dot behind a gufunc wrapper (13.x) or
        # checks (14.x). The training passes call their left operand's bound dot, which skips NumPy's dispatch.
        object.__setattr__(self, "matmul", self.xp.dot)

    def take(self, a, rows, out):
        """out[...] = a[:, rows]: gather columns on the device, into `out` without a temporary."""
        if self.name == "cuda":
            return self.xp.take(a, rows, axis=1, out=out)
        return a.take(rows, axis=1, out=out, mode="clip")  # the method: 1.0 us, np.take 2.6; "raise" would buffer

    def asarray(self, a, dtype=None):
        """Move a host array to this backend (a copy only where needed), as C-contiguous `dtype`; a 0-d array
        stays 0-d (ascontiguousarray would make it 1-d, and NumPy takes a (1,) operand at half the speed)."""
        a = self.xp.asarray(a, dtype=dtype)
        return a if a.ndim == 0 else self.xp.ascontiguousarray(a)

    def to_numpy(self, a):
        """Bring an array back to the host as a NumPy array."""
        return a.get() if self.name == "cuda" else np.asarray(a)

    def synchronize(self):
        """Wait until the device has finished all queued work (a no-op on the CPU)."""
        if self.name == "cuda":
            self.xp.cuda.get_current_stream().synchronize()

    def nccl(self):
        """CuPy's NCCL bindings, or None (on the CPU, or a CuPy without NCCL)."""
        if self.name != "cuda":
            return None
        try:
            from cupy.cuda import nccl
        except ImportError:
            return None
        return nccl if getattr(nccl, "available", True) else None

    def out_of_memory(self, error):
        """Whether `error` is CuPy's out-of-memory error."""
        if self.name != "cuda":
            return False
        return isinstance(error, self.xp.cuda.memory.OutOfMemoryError)

    def versions(self):
        """Library versions that matter for this backend's numbers."""
        v = {"numpy": np.__version__}
        if self.name == "cuda":
            v["cupy"] = self.xp.__version__
            v["cuda_runtime"] = self.xp.cuda.runtime.runtimeGetVersion()
            v["cuda_driver"] = self.xp.cuda.runtime.driverGetVersion()
        return v


def on_device(a):
    """Whether `a` is a CuPy array (known by its type's module: nothing is imported)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(a):
    """The array module of `a`: CuPy for a CuPy array (imported here, as everywhere: CuPy made `a`), else NumPy."""
    if on_device(a):
        import cupy

        return cupy
    return np


@functools.cache
def cpu_name():
    """The CPU model as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu():
    return Backend("cpu", np, cpu_name())


def _prove(cupy):
    """Run a tiny matrix product (cuBLAS) and an elementwise kernel (NVRTC) on the current device; raise if either fails."""
    a = cupy.asarray(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    out = cupy.empty((2, 2), np.float32)
    cupy.dot(a, a.T, out=out)  # loads cuBLAS and makes the device's handle
    cupy.multiply(out, 0.5, out=out)  # compiles (or loads from CuPy's cache, which still needs NVRTC) one kernel
    got = cupy.asnumpy(out)  # waits for both
    if not np.array_equal(got, np.array([[2.5, 5.5], [5.5, 12.5]], np.float32)):
        raise RuntimeError(f"a 2x2 test product gave {got.tolist()}")


def _libraries_hint():
    """The fix for CUDA libraries that CuPy cannot find (cuBLAS, NVRTC), naming the CuPy wheel installed."""
    wheel = "cupy-cuda13x"
    for candidate in ("cupy-cuda12x", "cupy-cuda13x"):
        try:
            importlib.metadata.version(candidate)
            wheel = candidate
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"install CuPy's CUDA libraries: pip install '{wheel}[ctk]>=14' (or a CUDA Toolkit), or use --backend cpu"


def _set_tf32(cupy, index, tf32):
    """Set CuPy's float32 matrix-product compute type for this process: TF32 when asked, else plain float32."""
    # CuPy reads $CUPY_TF32 once, at its first float32 product, into this per-process setting
    # (cupy/_core/_routines_linalg.pyx, 13.x and 14.x); setting it here overrides the environment either way.
    linalg = cupy._core._routines_linalg
    if tf32:
        cc = int(cupy.cuda.Device(index).compute_capability)
        if cc < 80:
            raise ConfigError(f"--tf32 needs a GPU of compute capability 8.0 or newer; device {index} has "
                              f"{cc // 10}.{cc % 10}: drop --tf32")
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_DEFAULT)


_PROVEN = {}  # CUDA device index -> the CuPy module whose test product passed on it in this process


_MISSES = {}  # sys.path (a tuple) -> (when `import cupy` last found nothing in it, its folders' times of change)
LOOK_AGAIN = 1.0  # seconds after which a remembered miss looks whether sys.path's folders changed


def _import_cupy():
    """CuPy, or ImportError. Python does not remember an import that found nothing: each try searches every path
    again (0.08 ms here, with 5 entries in sys.path), so a miss is remembered for as long as sys.path is the same
    and its folders unchanged (a CuPy installed since is found), looked at no more than once a second."""
    path = tuple(sys.path)
    miss = _MISSES.get(path)
    if "cupy" not in sys.modules and miss is not None:
        now = time.monotonic()
        if now - miss[0] >= LOOK_AGAIN:  # a while since the last look: have the folders changed?
            miss = None if _stamps(path) != miss[1] else (now, miss[1])
        if miss is not None:
            _MISSES[path] = miss
            raise ImportError("No module named 'cupy'")
    try:
        import cupy
    except ModuleNotFoundError:
        if "cupy" not in sys.modules:  # not found (a module set to None in sys.modules is a test's stand-in)
            _MISSES[path] = (time.monotonic(), _stamps(path))
        raise
    return cupy


def _stamps(path):
    """When each folder of `path` last changed (None for an entry that is not one)."""
    out = []
    for entry in path:
        try:
            out.append(os.stat(entry or ".").st_mtime_ns)
        except (OSError, TypeError, ValueError):
            out.append(None)
    return tuple(out)


def _cuda(device):
    """The CUDA backend on `device` with TF32 off, proven usable, or BackendUnavailable saying why not."""
    try:
        cupy = _import_cupy()
    except ImportError:
        raise BackendUnavailable(f"CuPy is not installed; {CUDA_EXTRAS_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except RuntimeError as e:  # CUDARuntimeError: no driver, driver too old, ...
        raise BackendUnavailable(
            f"CUDA cannot be used: {e}; check the NVIDIA driver, or use --backend cpu"
        ) from None
    if count == 0:
        raise BackendUnavailable("CUDA cannot be used: no CUDA device found; use --backend cpu")
    if not 0 <= device < count:
        raise BackendUnavailable(
            f"--device {device} is out of range: this machine has {count} CUDA device(s), "
            f"numbered 0 to {count - 1}"
        )
    try:
        cupy.cuda.Device(device).use()
        name = cupy.cuda.runtime.getDeviceProperties(device)["name"]
        _set_tf32(cupy, device, False)
    except RuntimeError as e:
        raise BackendUnavailable(f"CUDA device {device} cannot be used: {e}") from None
    try:
        if _PROVEN.get(device) is not cupy:  # once per process and device: a proof costs a synchronisation
            _prove(cupy)
            _PROVEN[device] = cupy
    except (ImportError, RuntimeError, cupy.cuda.compiler.CompileException) as e:
        # a CuPy 14 wheel without its libraries: ImportError (cuBLAS), RuntimeError (NVRTC): 'Failure finding "libcublasLt.so.13...'
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendUnavailable(
            f"CUDA device {device} failed a test product ({reason}); {_libraries_hint()}"
        ) from None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return Backend("cuda", cupy, name, device)


def default_backend():
    """The backend name to use when none is given: $GPUNET_BACKEND, else "auto"."""
    return os.environ.get(ENV_VAR, "auto")


def resolve(name="auto", device=0, tf32=False):
    """Turn a backend name and device index into a usable `Backend`.

    CUDA counts as usable once a tiny matrix product and an elementwise kernel have run on the device.

    Args:
        name: "cpu", "cuda" or "auto" (CUDA when usable, else the CPU).
        device: the CUDA device index; ignored on the CPU.
        tf32: on CUDA, let float32 matrix products round their inputs to TF32 (10-bit mantissa) on tensor
            cores: faster, and float32 results then differ from the CPU's by more than rounding. Off by
            default, and off means off: a `CUPY_TF32=1` in the environment is overridden, so float32 results
            do not depend on it. CuPy keeps this setting per process: the last CUDA backend resolved sets it.
            Ignored on the CPU (the Backend's `tf32` is then False).

    Returns:
        A Backend. For "auto", its `note` says which backend was chosen and why.

    Raises:
        BackendUnavailable: the name is unknown, or CUDA was asked for and cannot be used.
        ConfigError: tf32 on a GPU older than compute capability 8.0 (Ampere).
    """
    name = (name or "auto").lower()
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "cpu":
        return _cpu()
    if name == "cuda":
        b = _cuda(device)
    else:
        try:
            b = _cuda(device)
        except BackendUnavailable as e:
            reason = str(e).split(";", 1)[0]  # the cause, without the fix for `--backend cuda`
            return Backend("cpu", np, cpu_name(), note=f"auto: using the CPU ({reason})")
        b = replace(b, note=f"auto: using CUDA device {device} ({b.device})")
    if tf32:
        _set_tf32(b.xp, device, True)
        b = replace(b, tf32=True)
    return b

"""The array-module shim: the only place that imports CuPy.

`resolve("cpu" | "cuda" | "auto", device)` returns a `Backend` whose `xp` is NumPy or CuPy.
The network is written once against `backend.xp` and the few helpers here.
"""

import os
import platform
from dataclasses import dataclass, field

import numpy as np

from gpunet.errors import BackendUnavailable

BACKENDS = ("cpu", "cuda", "auto")
ENV_VAR = "GPUNET_BACKEND"
CUDA_EXTRAS_HINT = (
    "install it with pip install cupy-cuda12x (CUDA 12 driver) or cupy-cuda13x (CUDA 13 driver), "
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
    """

    name: str
    xp: object
    device: str
    index: int | None = None
    note: str = field(default="", compare=False)
    # matmul(a, b, out=o): o[...] = a @ b, `o` C-contiguous of the exact dtype and shape. NumPy's dot is
    # its cheapest call for this (PERF-NOTES); CuPy's matmul writes in place. Chosen once, not per call.
    matmul: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "matmul", self.xp.matmul if self.name == "cuda" else np.dot)

    def take(self, a, rows, out):
        """out[...] = a[:, rows]: gather columns on the device, into `out` without a temporary."""
        if self.name == "cuda":
            return self.xp.take(a, rows, axis=1, out=out)
        return np.take(a, rows, axis=1, out=out, mode="clip")  # 'raise' would buffer; rows are in range

    def asarray(self, a, dtype=None):
        """Move a host array to this backend (a copy only where needed), as C-contiguous `dtype`."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        """Bring an array back to the host as a NumPy array."""
        return a.get() if self.name == "cuda" else np.asarray(a)

    def synchronize(self):
        """Wait until the device has finished all queued work (a no-op on the CPU)."""
        if self.name == "cuda":
            self.xp.cuda.get_current_stream().synchronize()

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


def _cuda(device):
    """The CUDA backend on `device`, or BackendUnavailable saying why not."""
    try:
        import cupy
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
    except RuntimeError as e:
        raise BackendUnavailable(f"CUDA device {device} cannot be used: {e}") from None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return Backend("cuda", cupy, name, device)


def default_backend():
    """The backend name to use when none is given: $GPUNET_BACKEND, else "auto"."""
    return os.environ.get(ENV_VAR, "auto")


def resolve(name="auto", device=0):
    """Turn a backend name and device index into a usable `Backend`.

    Args:
        name: "cpu", "cuda" or "auto" (CUDA when usable, else the CPU).
        device: the CUDA device index; ignored on the CPU.

    Returns:
        A Backend. For "auto", its `note` says which backend was chosen and why.

    Raises:
        BackendUnavailable: the name is unknown, or CUDA was asked for and cannot be used.
    """
    name = (name or "auto").lower()
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "cpu":
        return _cpu()
    if name == "cuda":
        return _cuda(device)
    try:
        b = _cuda(device)
    except BackendUnavailable as e:
        reason = str(e).split(";", 1)[0]  # the cause, without the fix for `--backend cuda`
        return Backend("cpu", np, cpu_name(), note=f"auto: using the CPU ({reason})")
    return Backend(b.name, b.xp, b.device, b.index, note=f"auto: using CUDA device {device} ({b.device})")

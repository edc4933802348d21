"""Training throughput, measured: interleaved timed runs, the matrix-product ceiling, peak memory, the machine.

A *runner* is anything with `name`, `backend`, `run() -> seconds` (one full training from the same
start, the device synchronized before each clock read) and `final_loss()` (the last run's final loss).
`measure` times several runners in turns, so that a noisy machine hurts them alike.
"""

import math
import os
import platform
import statistics
import time
import tracemalloc
from dataclasses import asdict, replace

import numpy as np

from gpunet import __version__
from gpunet.agree import TOLERANCES, compare, difference
from gpunet.backend import cpu_name
from gpunet.train import Trainer, initial_draws
from gpunet.workloads import matmul_flops, needed_bytes

CEILING_SIZE = 4096


class GpunetRunner:
    """gpunet itself on one backend; data generation and transfer happen here, outside the timed region."""

    name = "gpunet"

    def __init__(self, config, backend, comm=None):
        self.backend, self.comm = backend, comm
        # one log point, at the end: the loss is reduced and copied to the host once
        self.trainer = Trainer(replace(config, log_every=config.epochs), backend, comm=comm)
        self.result = None

    def run(self):
        self.trainer.reset()
        self.result = self.trainer.run(copy_params=False)
        if self.comm is not None and self.comm.size > 1:  # the slowest rank's: every rank then agrees on the rounds
            return max(self.comm.allgather(self.result.train_seconds))
        return self.result.train_seconds

    def final_loss(self):
        return self.result.final_loss

    def buffer_bytes(self):
        return self.trainer.buffer_bytes()


def measure(runners, repeats=5, warmup=1, progress=None, settle=0.2, min_seconds=1.0):
    """Time runners in turns; return {runner: [seconds of each timed run]}.

    Each runner runs `warmup` times untimed, then `repeats` rounds. In a round each runner in turn
    rests `settle` seconds (so that the threads a library leaves spinning after its last call have
    gone idle) and then runs enough times back to back for `min_seconds` over all rounds: short
    trainings get many runs, so their median is not one burst of a noisy machine.
    """
    say = progress or (lambda message: None)
    per_round = {}
    for r in runners:
        for _ in range(warmup):
            say(f"{r.name} on {r.backend.name}: warm-up")
            first = r.run()
        per_round[r] = max(1, min(100, math.ceil(min_seconds / repeats / max(first, 1e-9)))) if warmup else 1
    times = {r: [] for r in runners}
    for i in range(repeats):
        for r in runners:
            say(f"{r.name} on {r.backend.name}: round {i + 1}/{repeats}")
            time.sleep(settle)
            times[r].extend(r.run() for _ in range(per_round[r]))
    return times


def summarize(seconds, config, ceiling=None):
    """Median, min, max, time per epoch, GFLOP/s and percent of the ceiling for a list of run times."""
    med = statistics.median(seconds)
    gflops = matmul_flops(config) * config.epochs / med / 1e9
    return {
        "runs": len(seconds),
        "seconds": seconds,
        "median_s": med,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "seconds_per_epoch": med / config.epochs,
        "gflops": gflops,
        "pct_of_ceiling": 100 * gflops / ceiling if ceiling else None,
    }


def matmul_ceiling(backend, size=CEILING_SIZE, repeats=3):
    """The backend's float32 matrix-product rate in GFLOP/s: median of `repeats` (size x size) products."""
    xp = backend.xp
    rng = np.random.default_rng(0)
    a, b = (backend.asarray(rng.standard_normal((size, size)), np.float32) for _ in range(2))
    out = xp.empty((size, size), np.float32)
    backend.matmul(a, b, out=out)  # warm-up: library load, workspace, clocks
    runs = []
    for _ in range(repeats):
        backend.synchronize()
        t = time.perf_counter()
        backend.matmul(a, b, out=out)
        backend.synchronize()
        runs.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(runs) / 1e9


class PoolHighWater:
    """A CuPy memory hook's arithmetic: the most bytes the memory pool had in use at once while it was registered.

    CuPy calls `malloc_postprocess` when the pool hands out a block and `free_postprocess` when a block comes
    back (cupy/cuda/memory.pyx, 13.x and 14.x), with the block's rounded size, the same figure as the pool's
    `used_bytes()`. Blocks the pool keeps but does not use, and memory outside the pool (cuBLAS's workspace,
    the CUDA context) are not counted.
    """

    name = "gpunet.PoolHighWater"

    def __init__(self, in_use=0):
        self.start = self.in_use = self.peak = in_use

    def malloc_postprocess(self, mem_size, mem_ptr, **_):
        if mem_ptr:  # 0: the allocation failed
            self.in_use += mem_size
            self.peak = max(self.peak, self.in_use)

    def free_postprocess(self, mem_size, **_):
        self.in_use -= mem_size

    def peak_above_start(self):
        """Bytes in use at the high-water mark, above those in use when the hook was made."""
        return self.peak - self.start


def pool_high_water(xp):
    """A PoolHighWater as a `cupy.cuda.MemoryHook` (registered in a `with` block), counting from the pool's use now."""
    hook = type("PoolHighWaterHook", (PoolHighWater, xp.cuda.MemoryHook), {})  # MemoryHook: registration, no-ops
    return hook(xp.get_default_memory_pool().used_bytes())


def peak_training_bytes(config, backend, comm=None):
    """Peak memory while placing the data, building the network's buffers and training once.

    The data and initial parameters are drawn on the host first, in the run's dtype (as the trainer
    keeps them), and not counted, nor is the copy of the final parameters handed back. On the CPU: the peak of the allocations traced by tracemalloc (NumPy
    reports its own). On CUDA: the high-water mark of the bytes in use in CuPy's memory pool (`PoolHighWater`),
    above those in use before.
    """
    config = replace(config, log_every=config.epochs)
    data, start = initial_draws(config)
    data, start = data.astype(config.dtype), start.astype(config.dtype)
    if backend.name == "cuda":
        with pool_high_water(backend.xp) as hook:
            Trainer(config, backend, data, start, comm).run(copy_params=False)
            backend.synchronize()
        backend.xp.get_default_memory_pool().free_all_blocks()  # back to the device, for whoever runs next
        return hook.peak_above_start()
    tracemalloc.start()
    try:
        Trainer(config, backend, data, start, comm).run(copy_params=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def blas_info():
    """NumPy's BLAS library and its threads, as far as NumPy and threadpoolctl (if installed) tell."""
    info = {}
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=deps.get("name"), version=deps.get("version"))
    except Exception:  # the layout of show_config differs between NumPy versions
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            info.update(library=pools[0].get("internal_api"), threads=pools[0].get("num_threads"))
    except ImportError:
        info["threads"] = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    return info


def machine_info(backends):
    """The machine and library versions, for the record beside the figures."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpunet": __version__,
        "blas": blas_info(),
    }
    for b in backends:
        if b.name == "cuda":
            cp = b.xp
            props = cp.cuda.runtime.getDeviceProperties(b.index)
            info["gpu"] = {
                "name": b.device,
                "memory_bytes": int(props["totalGlobalMem"]),
                "driver": cp.cuda.runtime.driverGetVersion(),
                "runtime": cp.cuda.runtime.runtimeGetVersion(),
                "cupy": cp.__version__,
            }
    return info


def bench(workloads, backends, repeats=5, extra_runners=None, progress=None, comm=None):
    """Benchmark gpunet (and any extra runners) on the named workloads and backends.

    Args:
        workloads: {name: Config}.
        backends: resolved gpunet Backends.
        extra_runners: optional callable(config, backend) -> runners (the peers), timed in turns with gpunet.
        progress: optional callable(message) for long runs.
        comm: a bound communicator (gpunet.comm) to time data-parallel training with its ranks (no peers).

    Returns:
        A JSON-ready dict: `machine`, `ceilings_gflops` per backend, `records` (one per workload, backend
        and system) and `agreement` (gpunet across backends as in `gpunet check`; each peer's final loss
        against gpunet's on the same backend).
    """
    say = progress or (lambda message: None)
    ceilings = {}
    for b in backends:
        say(f"matrix-product ceiling on {b.name}")
        ceilings[b.name] = matmul_ceiling(b)
    records, agreement = [], []
    for wname, config in workloads.items():
        results = {}
        for b in backends:
            ours = GpunetRunner(config, b, comm)
            runners = [ours, *(extra_runners(config, b) if extra_runners and comm is None else [])]
            times = measure(runners, repeats, progress=lambda m, w=wname: say(f"{w}: {m}"))
            results[b.name] = ours.result
            for r in runners:
                rec = {"workload": wname, "system": r.name, "backend": b.name, "device": b.device,
                       "config": asdict(config), **summarize(times[r], config, ceilings[b.name]),
                       "final_loss": r.final_loss(), **getattr(r, "extra", {})}
                if r is ours:
                    say(f"{wname}: gpunet on {b.name}: peak memory")
                    rec.update(peak_bytes=peak_training_bytes(config, b, comm), buffer_bytes=ours.buffer_bytes(),
                               needed_bytes=needed_bytes(config))
                else:
                    d, rel = difference([r.final_loss()], [ours.final_loss()])
                    tol = TOLERANCES[config.dtype]
                    agreement.append({"workload": wname, "a": f"{r.name}/{b.name}", "b": f"gpunet/{b.name}",
                                      "quantity": "final_loss", "max_abs": d, "max_rel": rel, "tol": tol,
                                      "ok": rel <= tol})
                records.append(rec)
        names = list(results)
        for other in names[1:]:
            for row in compare(results[other], results[names[0]]):
                agreement.append({"workload": wname, "a": f"gpunet/{other}", "b": f"gpunet/{names[0]}",
                                  **asdict(row), "ok": row.ok})
    machine = {**machine_info(backends), **({"ranks": comm.size, "communicator": comm.name}
                                             if comm is not None and comm.size > 1 else {})}
    return {"machine": machine, "ceilings_gflops": ceilings, "records": records, "agreement": agreement}

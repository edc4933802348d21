"""Communicators for data-parallel training: every rank computes the gradient of its own rows, and one
in-place sum over the ranks of the flat gradient buffer gives every rank the gradient of the whole batch.

A communicator has a rank, a size and a few collective verbs; the Trainer calls `allreduce` once per
step and `sum` at log points, and never needs to know how many ranks there are. `Single` is one process;
`MPIComm` runs over mpi4py (a launcher such as `mpiexec -n P`), with the gradient moved by NCCL between
GPUs, by CUDA-aware MPI on the device buffer, or staged through host memory.
"""

import os
import signal
import sys
import time

import numpy as np

from gpunet.errors import ConfigError

COMMS = ("auto", "nccl", "mpi", "host")
ABORT_GRACE_S = 0.5  # for a failing rank's last line to reach the launcher before MPI's abort
MPI_HINT = "pip install mpi4py mpich (gpunet's extra [mpi]), or mpi4py built against your cluster's MPI"
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # the user's choice wins
_blas_limits = None  # this rank's BLAS thread limit, held for the life of the process


class Single:
    """One process: every collective is the identity."""

    rank, size, local_rank, name, note = 0, 1, 0, "none", ""

    def bind(self, backend, how="auto"):
        """Check `how` as MPIComm.bind does (one rank moves nothing); return self."""
        _check_how(backend, how)
        return self

    def allreduce(self, buf):
        """buf = the sum of buf over the ranks, in place (one rank: as it is)."""
        return buf

    def sum(self, values):
        """The sum over the ranks of a host array (float64)."""
        return np.asarray(values, np.float64)

    def max(self, values):
        """The elementwise largest over the ranks of a host array (float64)."""
        return np.asarray(values, np.float64)

    def allgather(self, obj):
        return [obj]

    def any(self, flag):
        return bool(flag)

    def abort(self, code):
        raise SystemExit(code)


class MPIComm:
    """The ranks of an MPI launch (mpi4py's COMM_WORLD).

    `bind(backend, how)` chooses how the gradient buffer travels: `mpi` hands the buffer to MPI as it
    is (host memory, or device memory for a CUDA-aware MPI), `host` stages a device buffer through a
    host copy, `nccl` uses NCCL between GPUs (its id broadcast over MPI); `auto` takes NCCL on CUDA when
    CuPy has it, else `host`, and `mpi` on the CPU.
    """

    def __init__(self, mpi):
        self.MPI, self.world = mpi, mpi.COMM_WORLD
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        node = self.world.Split_type(mpi.COMM_TYPE_SHARED)  # the ranks on this node
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        self.name, self.note, self._move = "mpi", "", None

    def bind(self, backend, how="auto"):
        """Choose the gradient's transport for `backend`; return self."""
        _check_how(backend, how)
        self.backend = backend
        if backend.name != "cuda":
            self.name, self._move = "mpi", self._mpi
            return self
        if how == "auto":
            how = "nccl" if backend.nccl() is not None else "host"
        self.name = how
        self._move = {"mpi": self._mpi, "host": self._staged, "nccl": self._nccl}[how]
        if how == "nccl":
            self._start_nccl(backend)
        return self

    def allreduce(self, buf):
        """buf = the sum of buf over the ranks, in place."""
        self._move(buf)
        return buf

    def _mpi(self, buf):
        self.backend.synchronize()  # a device buffer: MPI does not see CuPy's stream (a no-op on the CPU)
        self.world.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def _staged(self, buf):
        host = self.backend.to_numpy(buf)  # waits for the device
        self.world.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        buf.set(host)

    def _start_nccl(self, backend):
        nccl = backend.nccl()
        if nccl is None:
            raise ConfigError("--comm nccl: this CuPy has no NCCL; use --comm host or --comm mpi")
        uid = self.world.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self.nccl, self.nccl_comm = nccl, nccl.NcclCommunicator(self.size, uid, self.rank)

    def _nccl(self, buf):
        kind = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}[buf.dtype]
        stream = self.backend.xp.cuda.get_current_stream().ptr
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, self.nccl.NCCL_SUM, stream)

    def sum(self, values):
        """The sum over the ranks of a host array (float64)."""
        return self._reduce(values, self.MPI.SUM)

    def max(self, values):
        """The elementwise largest over the ranks of a host array (float64)."""
        return self._reduce(values, self.MPI.MAX)

    def _reduce(self, values, op):
        out = np.array(values, np.float64)
        self.world.Allreduce(self.MPI.IN_PLACE, out, op=op)
        return out

    def allgather(self, obj):
        """Every rank's `obj` (small Python objects), in rank order."""
        return self.world.allgather(obj)

    def any(self, flag):
        """Whether `flag` is true on any rank."""
        return bool(self.world.allreduce(bool(flag), op=self.MPI.LOR))

    def abort(self, code):
        """End every rank at once with exit code `code` (no rank is left waiting in a collective).

        What this rank printed is flushed and given a moment to travel through the launcher first:
        MPI's abort tears down the launcher's output forwarding, which would otherwise lose it.
        """
        sys.stdout.flush()
        sys.stderr.flush()
        for sig in (signal.SIGINT, signal.SIGTERM):  # another rank's abort may reach this one meanwhile
            signal.signal(sig, signal.SIG_DFL)
        time.sleep(ABORT_GRACE_S)
        self.world.Abort(code)
        os._exit(code)  # MPICH's abort may return to the caller while the launcher ends the ranks


def _check_how(backend, how):
    if how not in COMMS:
        raise ConfigError(f"unknown --comm {how!r}: choose one of {', '.join(COMMS)}")
    if how == "nccl" and backend.name != "cuda":
        raise ConfigError("--comm nccl needs --backend cuda: NCCL moves GPU buffers")


def launch(distributed):
    """The communicator of this process: Single, or the ranks of an MPI launch when `distributed`.

    The ranks of a launch limit their BLAS threads to their share of the node's cores, unless
    OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS is set.

    Raises:
        ConfigError: `distributed` without mpi4py (exit 2, naming the extra).
    """
    if not distributed:
        return Single()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"--distributed needs mpi4py: {MPI_HINT}") from None
    if MPI.COMM_WORLD.Get_size() == 1:
        single = Single()
        single.note = "--distributed: not launched by an MPI launcher (e.g. mpiexec -n 2 gpunet ...); one rank"
        return single
    comm = MPIComm(MPI)
    _share_blas_threads(comm.local_size)
    return comm


def _share_blas_threads(ranks_here):
    """Limit BLAS to this rank's share of the node's cores, unless the environment sets its threads."""
    global _blas_limits
    if any(os.environ.get(var) for var in BLAS_THREAD_VARS):
        return
    from threadpoolctl import threadpool_limits

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _blas_limits = threadpool_limits(limits=max(1, cores // ranks_here), user_api="blas")


def device_of(comm, device):
    """The CUDA device index to use: `device` when given, else the rank's index on its node (0 alone)."""
    return comm.local_rank if device is None else device


def shard_range(n, size, rank):
    """The rows [lo, hi) of n that rank `rank` of `size` holds: contiguous, their counts differing by one at most."""
    return n * rank // size, n * (rank + 1) // size

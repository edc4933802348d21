"""The exchange's share of a data-parallel step: run under `mpiexec -n P python bench/dist_bench.py`.

For each workload, every rank builds its share of the full-batch step; then, in rounds, the ranks time
their gradient (forward and backward passes over their rows) and the in-place allreduce of the flat
gradient buffer, each between barriers, and rank 0 prints the medians and the allreduce's share of the
step. The model beside it is the ring allreduce's: 2 (P - 1) / P x bytes over the link's bandwidth.
"""

import os
import statistics
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpunet.backend import resolve  # noqa: E402
from gpunet.comm import launch  # noqa: E402
from gpunet.losses import loss_factor  # noqa: E402
from gpunet.report import format_rows, format_seconds  # noqa: E402
from gpunet.train import Trainer  # noqa: E402
from gpunet.workloads import workload  # noqa: E402


def timed(comm, backend, fn):
    """Seconds of fn() on this rank, the ranks lined up before and the device synchronized after."""
    comm.world.Barrier()
    t = time.perf_counter()
    fn()
    backend.synchronize()
    return time.perf_counter() - t


def measure(comm, backend, name, rounds):
    """(median gradient seconds, median allreduce seconds, gradient bytes) of workload `name` on this rank."""
    trainer = Trainer(workload(name), backend, comm=comm)
    ws, net, config = trainer.workspaces[0], trainer.net, trainer.config
    scale = loss_factor(config.loss, trainer.data.n_train, config.d_out)
    grads, reduces = [], []
    for _ in range(rounds + 1):  # the first round warms up
        grads.append(timed(comm, backend, lambda: ws.gradient(scale)))
        reduces.append(timed(comm, backend, lambda: comm.allreduce(net.grads)))
    return statistics.median(grads[1:]), statistics.median(reduces[1:]), int(net.grads.nbytes)


@click.command()
@click.option("--workload", "names", default="medium,large", show_default=True, help="Comma-separated workloads.")
@click.option("--backend", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--comm", "how", default="auto", show_default=True, help="auto, nccl, mpi or host.")
@click.option("--rounds", default=7, show_default=True, type=int, help="Timed steps per workload.")
def main(names, backend, how, rounds):
    """Time the gradient and its allreduce per step on every rank; rank 0 prints the medians (slowest rank's)."""
    comm = launch(True)
    if comm.size == 1:
        raise click.UsageError("run under an MPI launcher: mpiexec -n 2 python bench/dist_bench.py")
    b = resolve(backend, comm.local_rank)
    comm.bind(b, how)
    rows = []
    for name in names.split(","):
        grad, reduce, nbytes = measure(comm, b, name, rounds)
        grad, reduce = (max(comm.allgather(v)) for v in (grad, reduce))  # the slowest rank sets the pace
        rows.append((name, comm.size, comm.name, f"{nbytes / 2**20:.2f} MiB", format_seconds(grad),
                     format_seconds(reduce), f"{100 * reduce / (grad + reduce):.1f}%",
                     f"{2 * (comm.size - 1) / comm.size * nbytes / reduce / 1e9:.2f} GB/s"))
    if comm.rank == 0:
        click.echo(format_rows(("workload", "ranks", "comm", "gradient", "gradient time", "allreduce time",
                                "allreduce share", "bus bandwidth"), rows))


if __name__ == "__main__":
    main()

"""`gpunet check`, `gradcheck` and `bench`: backends compared, gradients against finite differences, throughput."""

import sys
from dataclasses import replace

import click

from gpunet import gradcheck
from gpunet import backend as shim
from gpunet.agree import compare
from gpunet.cli import (DEVICE_DEFAULT, backend_options, distributed_options, explicit_options, failing_together,
                        network_options, parse_hidden, split_config, split_list, stderr_progress, tf32_option,
                        training_options, use_backend)
from gpunet.comm import device_of, launch
from gpunet.config import HIDDEN_ACTIVATIONS
from gpunet.data import DEFAULT_SEED
from gpunet.errors import GpunetError
from gpunet.files import check_writable, write_json
from gpunet.losses import LOSSES
from gpunet.model import INITS
from gpunet.report import bench_table, describe, format_rows
from gpunet.train import Config, train
from gpunet.workloads import workload as workload_config


@click.command("check")
@network_options
@training_options
@click.option("--workload", default=None, help="Start from a named workload (seed, medium, large, mnist); options given override it.")
@click.option("--backends", default="cpu,cuda", show_default=True, help="Comma-separated backends to train and compare.")
@click.option("--device", default=None, show_default=DEVICE_DEFAULT, type=int, help="CUDA device index.")
@click.option("--reference", is_flag=True, help="Also compare each backend with a float64 NumPy run.")
@tf32_option
@distributed_options("check")
@click.pass_context
def check_cmd(ctx, workload, backends, device, reference, tf32, distributed, comm, **options):
    """Train one configuration on several backends from the same start and compare them.

    Compares the losses at the log points, the final loss and every final parameter tensor, as the
    max absolute and max relative difference (relative to the tensor's largest magnitude), against a tolerance for
    the dtype: float64 1e-9 (summation order only), float32 5e-3 (rounding grows over epochs; a
    wrong gradient gives 1e-2 and more). Exit code 0 when all agree, 1 when any does not, 2 when a
    backend cannot be used.
    """
    given = explicit_options(ctx, options)
    config = workload_config(workload, **given) if workload else split_config(options)[0]
    names = split_list(backends)
    if len(names) < 2 and not reference:
        raise click.UsageError("nothing to compare: give two or more --backends, or --reference")
    ranks = launch(distributed)
    with failing_together(ranks):
        device = device_of(ranks, device)
        resolved = [shim.resolve(n, device, tf32=tf32) for n in names]  # every backend usable before any training
        say = click.echo if ranks.rank == 0 else (lambda *args, **kw: None)
        say(f"Checking {describe(config)}" + (", TF32 products on CUDA" if tf32 else "")
            + (f", {ranks.size} ranks" if ranks.size > 1 else ""))
        results = {b.name: train(config, backend=b, comm=ranks.bind(b, comm)) for b in resolved}
        pairs = [(f"{n} vs {names[0]}", results[n], results[names[0]]) for n in names[1:]]
        if reference:
            cpu = shim.resolve("cpu")
            ref = train(replace(config, dtype="float64"), backend=cpu, comm=ranks.bind(cpu, "mpi" if comm == "nccl" else comm))
            pairs += [(f"{n} vs float64 reference", results[n], ref) for n in names]
    report_agreement(ctx, pairs, say)


def report_agreement(ctx, pairs, say):
    """check's table of (label, result, reference) pairs, its verdict, and exit code 1 on a disagreement."""
    table, failed = [], 0
    for label, a, b in pairs:
        for row in compare(a, b):
            failed += not row.ok
            table.append((label, row.quantity, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.tol:.0e}",
                          "PASS" if row.ok else "FAIL"))
    say(format_rows(("compared", "quantity", "max abs diff", "max rel diff", "tolerance", "result"), table))
    if failed:
        say(f"FAIL: {failed} of {len(table)} comparisons above tolerance")
        ctx.exit(1)
    say(f"PASS: all {len(table)} comparisons within tolerance")


@click.command("gradcheck")
@backend_options
@click.option("--n", default=8, show_default=True, type=int, help="Number of observations.")
@click.option("--d-in", default=3, show_default=True, type=int, help="Number of input features.")
@click.option("--hidden", default="32", show_default=True, callback=parse_hidden, help="Hidden layer widths, comma-separated.")
@click.option("--d-out", default=1, show_default=True, type=int, help="Number of outputs.")
@click.option("--loss", default="sse", show_default=True, type=click.Choice(LOSSES),
              help="Loss function (ce: over --d-out classes, 2 or more).")
@click.option("--activation", default="relu", show_default=True, type=click.Choice(HIDDEN_ACTIVATIONS),
              help="The hidden layers' activation.")
@click.option("--weight-decay", default=0.0, show_default=True, type=float, help="L2 penalty, checked with the rest.")
@click.option("--init", default="he", show_default=True, type=click.Choice(INITS), help="Initialisation.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed for the data and parameters.")
@click.option("--eps", default=gradcheck.DEFAULT_EPS, show_default=True, type=float, help="Finite-difference step.")
@click.option("--tol", default=gradcheck.DEFAULT_TOL, show_default=True, type=float, help="Largest relative error that passes.")
@click.pass_context
def gradcheck_cmd(ctx, backend, device, n, d_in, hidden, d_out, loss, activation, weight_decay, init, seed, eps, tol):
    """Check the hand-written backward pass against central finite differences, in float64.

    Uses the training code's own forward and backward passes, at a generic point (the initial
    parameters plus noise of standard deviation 0.1, so that no unit sits on ReLU's kink). Prints the max
    relative error per weight and bias tensor; exit code 1 when any is above --tol.
    """
    # validates the sizes and values
    Config(n=n, d_in=d_in, hidden=hidden, d_out=d_out, loss=loss, init=init, activation=activation,
           weight_decay=weight_decay)
    if loss == "ce" and d_out < 2:
        raise click.UsageError(f"--loss ce needs two or more classes: give --d-out 2 or more, got {d_out}")
    b = use_backend(backend, device)
    ws = gradcheck.generic_network(b, [d_in, *hidden, d_out], n=n, seed=seed, init=init, activation=activation,
                                   loss=loss)
    decay = f", weight decay {weight_decay:g}" if weight_decay else ""
    click.echo(f"Gradient check on {b.name}: n={n} sizes={[d_in, *hidden, d_out]} {loss}, {activation}{decay}, "
               f"float64, eps {eps:g}")
    rows = gradcheck.gradcheck(ws, weight_decay, eps)
    shapes = [s for w, bias in ws.net.layout.unpack(ws.net.params) for s in (w.shape, bias.shape)]
    table = [(name, "x".join(map(str, shape)), f"{err:.2e}", "PASS" if err <= tol else "FAIL")
             for (name, err), shape in zip(rows, shapes)]
    click.echo(format_rows(("tensor", "shape", "max rel error", "result"), table))
    worst = max(err for _, err in rows)
    if worst > tol:
        click.echo(f"FAIL: max relative error {worst:.2e} is above {tol:g}")
        ctx.exit(1)
    click.echo(f"PASS: max relative error {worst:.2e} (tolerance {tol:g})")


def resolve_backend_list(value, device, tf32=False):
    """'cpu,cuda' -> Backends; 'all' -> the CPU, plus CUDA when it is usable (said on stderr when it is not)."""
    names = split_list(value)
    if names == ["all"]:
        try:
            return [shim.resolve("cpu"), shim.resolve("cuda", device, tf32=tf32)]
        except GpunetError as e:
            click.echo(f"bench: CPU only ({str(e).split(';')[0]})", err=True)
            return [shim.resolve("cpu")]
    return [shim.resolve(n, device, tf32=tf32) for n in names]


@click.command("bench")
@network_options
@click.option("--workload", "workloads", default="seed,medium,large,mnist", show_default=True,
              help="Comma-separated workloads: seed, medium, large, mnist, custom (custom: the tutorial changed by "
              "the options).")
@click.option("--backend", "backend_list", default="all", show_default=True,
              help="Comma-separated backends, or all (the CPU, plus CUDA when usable).")
@click.option("--device", default=None, show_default=DEVICE_DEFAULT, type=int, help="CUDA device index.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help="Timed rounds per workload and backend.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write every figure to this JSON file.")
@tf32_option
@distributed_options("bench")
@click.pass_context
def bench_cmd(ctx, workloads, backend_list, device, repeats, json_path, tf32, distributed, comm, **options):
    """Measure training throughput per workload and backend.

    Workloads (float32 unless --dtype says otherwise): seed (the tutorial: n=100, 3-32-1, 200 epochs),
    medium (n=8192, 256-1024-16, 20 epochs), large (n=4096, 1024-4096-1024, 3 epochs), mnist (n=8192,
    784-512-10 classes, softmax cross-entropy, 10 epochs). Network options given on the command line
    change every selected workload.

    Each workload runs once untimed, then in --repeats rounds of back-to-back runs that add up to a
    second, the device synchronized before each clock read; data generation and transfer are outside the timed region. Reports the median, min and max,
    time per epoch, GFLOP/s of the matrix products and their share of the backend's float32
    matrix-product ceiling (measured in the same run), and peak memory beside the bytes the math needs.
    Where two backends ran a workload, their results are compared as in `gpunet check`. With
    --distributed, one backend's training by every rank of the launch (a run's time is its slowest rank's).
    """
    from gpunet.bench import bench

    given = explicit_options(ctx, options)
    ranks = launch(distributed)
    with failing_together(ranks):
        lead = ranks.rank == 0
        if json_path and lead:
            check_writable(json_path, "--json")
        chosen = {name: workload_config(name, **given) for name in split_list(workloads)}
        resolved = resolve_backend_list(backend_list, device_of(ranks, device), tf32)
        if ranks.size > 1:
            if len(resolved) != 1:
                raise click.UsageError("--distributed benchmarks one backend: give --backend cpu or --backend cuda")
            ranks.bind(resolved[0], comm)
        report = bench(chosen, resolved, repeats=repeats, progress=stderr_progress() if lead else None, comm=ranks)
    if not lead:
        return
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)
    if json_path:
        write_json(json_path, report)
    click.echo(bench_table(report))
    if not all(a["ok"] for a in report["agreement"]):
        ctx.exit(1)

"""Command-line options shared by the benches that alternate ways of doing the same work."""

import click


def alternating(runs=3):
    """--runs (alternating runs of each way), --backend (gpunet's) and --blas-threads, as keyword arguments runs,
    backend and blas_threads."""
    options = [
        click.option("--runs", default=runs, show_default=True, type=click.IntRange(min=1),
                     help="Alternating runs of each way; the medians are reported."),
        click.option("--backend", default="cpu", show_default=True, help="gpunet's backend: cpu, cuda or auto."),
        click.option("--blas-threads", default=1, show_default=True, type=click.IntRange(min=1),
                     help="BLAS threads (on a shared machine, more threads than free cores wait on each other)."),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate

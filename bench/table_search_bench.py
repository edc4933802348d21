"""`gpunet search` as it runs now (each fold's candidates one stack, gpunet/stack_train.py) beside the same search
with every fit trained alone by gpunet.train, as it ran before the stack.

Workloads: iris (150 x 4, 3 classes) and digits (1797 x 64, 10 classes, from scikit-learn), with the table
defaults of `gpunet train --data` (Adam, batches of 200, 100 hidden units, early stopping on the validation loss);
the candidates are every pair of --lr and --weight-decay, cross-validated over --folds folds. Runs alternate between
the two ways; the figures are medians. Each way's scores are compared (largest absolute difference: both train the
same models, so 0 up to float32 rounding).
Run from the repository root: python bench/table_search_bench.py --help
"""

import os
import platform
import statistics
import sys
import time

import click
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.options import alternating  # noqa: E402
from gpunet import search as gsearch  # noqa: E402
from gpunet.backend import cpu_name, resolve  # noqa: E402
from gpunet.data import missing_targets, target_columns  # noqa: E402
from gpunet.table_run import table_run  # noqa: E402
from gpunet.tabular import as_table, read_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def iris():
    return read_table(os.path.join(ROOT, "examples", "iris.csv")), "species"


def digits():
    from sklearn import datasets

    frame = datasets.load_digits(as_frame=True).frame
    frame["target"] = frame["target"].map(lambda d: f"digit {d}")  # classes as text, as a user's table has them
    return as_table(frame), "target"


WORKLOADS = {"iris": iris, "digits": digits}


def one_by_one(table, target, given, cands, folds, backend):
    """The search of gpunet.search.search with each fit trained alone: every candidate's scores."""
    _, whole, _ = table_run(table, given, target=target)
    options = {"target": target, "task": "regression" if whole.classes is None else "classification"}
    labelled = np.flatnonzero(~missing_targets(table, target_columns(table, target)))
    held_out = np.array_split(np.random.default_rng([42, 3]).permutation(labelled), folds)
    scores = []
    for cand in cands:
        for test in held_out:
            result = gsearch._fit(gsearch._rows(table, np.setdiff1d(labelled, test)),
                                  {**given, **cand.options, "seed": 42}, backend, options)
            scores.append(gsearch._score(result.model, gsearch._rows(table, np.sort(test)), backend))
    return scores


def stacked(table, target, given, cands, folds, backend):
    found = gsearch.search(table, given, cands, folds, 1, backend, refit=False, target=target)
    by_options = {str(c.options): c.scores for c in found.ranked}
    return [v for c in cands for v in by_options[str(c.options)]]


@click.command()
@click.option("--workload", "names", multiple=True, type=click.Choice(list(WORKLOADS)), default=list(WORKLOADS),
              show_default=True)
@click.option("--lr", "lrs", default="1e-3,3e-3,1e-2", show_default=True, help="Learning rates, comma-separated.")
@click.option("--weight-decay", "decays", default="1e-4,1e-2", show_default=True, help="Weight decays.")
@click.option("--folds", default=3, show_default=True, type=int)
@click.option("--epochs", default=None, type=int, help="Most epochs per fit  [default: the table default, 1000]")
@alternating()
def main(names, lrs, decays, folds, epochs, runs, backend, blas_threads):
    """Time gpunet search stacked against its fits trained one by one."""
    import numpy

    b = resolve(backend)
    where = cpu_name() if b.name == "cpu" else b.device
    click.echo(f"# {where}, {os.cpu_count()} CPUs; Python {platform.python_version()}, NumPy {numpy.__version__}; "
               f"BLAS threads {blas_threads}; medians of {runs} alternating runs")
    parse = lambda s: [float(v) for v in s.split(",")]  # noqa: E731
    given = {} if epochs is None else {"epochs": epochs}
    with threadpool_limits(blas_threads):
        for name in names:
            table, target = WORKLOADS[name]()
            ways = {"one by one": one_by_one, "stacked": stacked}
            for fn in ways.values():  # warm-up: imports (pandas, at the first score), allocations
                fn(table, target, {"epochs": 1}, gsearch.candidates([1e-3]), 2, b)
            times, scores = {w: [] for w in ways}, {}
            for _ in range(runs):
                for way, fn in ways.items():
                    cands = gsearch.candidates(parse(lrs), parse(decays))
                    start = time.perf_counter()
                    scores[way] = fn(table, target, given, cands, folds, b)
                    times[way].append(time.perf_counter() - start)
            fits = len(parse(lrs)) * len(parse(decays)) * folds
            one, st = (statistics.median(times[w]) for w in ways)
            diff = np.max(np.abs(np.subtract(scores["one by one"], scores["stacked"])))
            click.echo(f"{name}: {fits} fits; one by one {one:.2f} s, stacked {st:.2f} s: {one / st:.2f}x; "
                       f"largest score difference {diff:.2g}; runs {[round(t, 2) for t in times['stacked']]} vs "
                       f"{[round(t, 2) for t in times['one by one']]}")


if __name__ == "__main__":
    main()

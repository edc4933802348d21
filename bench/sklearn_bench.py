"""gpunet.sklearn's MLPRegressor beside scikit-learn's, the same settings in one run, timed in turns.

Two workloads: scikit-learn-shaped (make_regression 20,000 x 64, hidden (256, 256), adam, batch 200,
float32) and small (load_diabetes' 353 training rows x 10, hidden 16, adam, batch 32, float64). Each
run fits both estimators for a fixed number of epochs (tol=0: no early stop), alternating; the figures
are medians per epoch, and the loss curves' largest relative difference says they trained the same
(in float32, also each curve's distance from scikit-learn's float64 one).
Run from the repository root: python bench/sklearn_bench.py --help
"""

import os
import platform
import statistics
import sys
import time
import warnings

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sklearn  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402

from gpunet.backend import cpu_name, resolve  # noqa: E402
from gpunet.sklearn import MLPRegressor  # noqa: E402


def large():
    x, y = datasets.make_regression(n_samples=20_000, n_features=64, n_informative=32, noise=1.0, random_state=0)
    return x.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32), (256, 256), 200


def small():
    x, y = datasets.load_diabetes(return_X_y=True)
    x, _, y, _ = train_test_split(x, y, test_size=0.2, random_state=0)  # 353 rows
    return (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std(), (16,), 32


WORKLOADS = {"large": large, "small": small}


def fit_seconds(estimator, x, y):
    start = time.perf_counter()
    estimator.fit(x, y)
    return time.perf_counter() - start, estimator.loss_curve_


def run(name, backend, epochs, runs):
    """Median seconds per epoch of gpunet and scikit-learn, and their loss curves' largest relative difference."""
    x, y, hidden, batch = WORKLOADS[name]()
    kw = dict(hidden_layer_sizes=hidden, solver="adam", batch_size=batch, max_iter=epochs, tol=0.0,
              n_iter_no_change=epochs + 1, random_state=0)
    ours, theirs = MLPRegressor(backend=backend, **kw), SkRegressor(**kw)
    fit_seconds(MLPRegressor(backend=backend, **{**kw, "max_iter": 1}), x, y)  # warm-up: imports, first allocation
    times = {"gpunet": [], "scikit-learn": []}
    for _ in range(runs):
        t, curve_ours = fit_seconds(ours, x, y)
        times["gpunet"].append(t / epochs)
        t, curve_theirs = fit_seconds(theirs, x, y)
        times["scikit-learn"].append(t / epochs)
    diffs = {"gpunet vs scikit-learn": rel_diff(curve_ours, curve_theirs)}
    if x.dtype != np.float64:  # float32 rounding moves both curves: how far is each from float64's?
        _, curve_64 = fit_seconds(SkRegressor(**kw), x.astype(np.float64), y.astype(np.float64))
        diffs.update({"gpunet vs float64": rel_diff(curve_ours, curve_64),
                      "scikit-learn vs float64": rel_diff(curve_theirs, curve_64)})
    return {k: statistics.median(v) for k, v in times.items()}, diffs, x


def rel_diff(a, b):
    """The largest relative difference between two loss curves."""
    return float(np.max(np.abs(np.subtract(a, b)) / np.abs(b)))


@click.command()
@click.option("--backend", default="cpu", show_default=True, help="gpunet's backend: cpu, cuda or auto.")
@click.option("--workloads", default="large,small", show_default=True, help="Comma-separated: large, small.")
@click.option("--runs", default=5, show_default=True, help="Alternating runs per workload; the median is reported.")
@click.option("--epochs-large", default=3, show_default=True, help="Epochs per fit on the large workload.")
@click.option("--epochs-small", default=50, show_default=True, help="Epochs per fit on the small workload.")
@click.option("--rounds", default=1, show_default=True,
              help="Times to run the whole comparison; with more than one, a last line per workload gives the "
                   "median of the rounds' figures and the range of their ratios.")
def cli(backend, workloads, runs, epochs_large, epochs_small, rounds):
    """Time gpunet.sklearn.MLPRegressor beside scikit-learn's MLPRegressor, per epoch."""
    warnings.simplefilter("ignore")
    b = resolve(backend)
    click.echo(f"gpunet on {b.name} ({b.device}); scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
               f"python {platform.python_version()}, {cpu_name()}, {os.cpu_count()} cores")
    names = workloads.split(",")
    seen = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            epochs = epochs_large if name == "large" else epochs_small
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # another process halves BLAS
            med, diffs, x = run(name, backend, epochs, runs)
            seen[name].append(med)
            curves = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            click.echo(f"{name:6s} {x.shape[0]} x {x.shape[1]} {x.dtype}: gpunet {med['gpunet'] * 1e3:.3f} ms/epoch, "
                       f"scikit-learn {med['scikit-learn'] * 1e3:.3f} ms/epoch, "
                       f"ratio {med['scikit-learn'] / med['gpunet']:.2f}x; loss curves (largest relative difference): "
                       f"{curves}; load average {load:.2f}")
    for name, meds in seen.items():
        if len(meds) > 1:
            ours, theirs = (statistics.median(m[k] for m in meds) * 1e3 for k in ("gpunet", "scikit-learn"))
            ratios = sorted(m["scikit-learn"] / m["gpunet"] for m in meds)
            click.echo(f"{name:6s} median of {len(meds)} rounds: gpunet {ours:.3f} ms/epoch, scikit-learn "
                       f"{theirs:.3f} ms/epoch, ratio {statistics.median(ratios):.2f}x "
                       f"({ratios[0]:.2f}x-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    cli()

"""A fitted classifier's predict, predict_proba and score: gpunet.sklearn's beside scikit-learn's MLPClassifier
fitted alike, on 1 row, 30 rows (a fold of iris: what a search scores) and 360 rows (a fold of digits). Then fits
with early stopping (a score after every epoch): gpunet's accuracy and R^2 (gpunet/sklearn_metrics.py) against
scikit-learn's accuracy_score and r2_score put in their place.

Each call is timed over many repeats, the ways alternating; the figures are medians of the runs, in microseconds
per call, with the predictions compared (labels equal, probabilities' largest difference).
Run from the repository root: python bench/predict_bench.py --help
"""

import os
import platform
import statistics
import sys
import time
import warnings

import click
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sklearn  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402

from bench.options import alternating  # noqa: E402
from gpunet import sklearn as gs  # noqa: E402
from gpunet.backend import cpu_name  # noqa: E402

CASES = {"iris, 1 row": ("iris", 1), "iris, 30 rows": ("iris", 30), "digits, 360 rows": ("digits", 360)}


def per_call(fn, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


@click.command()
@alternating(runs=5)
@click.option("--repeats", default=200, show_default=True, type=click.IntRange(min=1), help="Calls per timing.")
def cli(runs, backend, blas_threads, repeats):
    """Time predict, predict_proba and score of gpunet's and scikit-learn's classifiers, per call."""
    warnings.simplefilter("ignore")
    click.echo(f"{cpu_name()}, {os.cpu_count()} CPUs, {blas_threads} BLAS thread(s), Python "
               f"{platform.python_version()}, NumPy {np.__version__}, scikit-learn {sklearn.__version__}")
    loaders = {"iris": datasets.load_iris, "digits": datasets.load_digits}
    with threadpool_limits(blas_threads, user_api="blas"):
        for case, (data, rows) in CASES.items():
            x, y = loaders[data](return_X_y=True)
            kw = dict(hidden_layer_sizes=(32,), max_iter=50, random_state=0)
            models = {"gpunet": gs.MLPClassifier(backend=backend, **kw).fit(x, y),
                      "scikit-learn": sk.MLPClassifier(**kw).fit(x, y)}
            xt, yt = x[:rows], y[:rows]
            calls = {"predict": lambda m: m.predict(xt), "predict_proba": lambda m: m.predict_proba(xt),
                     "score": lambda m: m.score(xt, yt)}
            for what, call in calls.items():
                times = {name: [] for name in models}
                for _ in range(runs):
                    for name, m in models.items():
                        times[name].append(per_call(lambda: call(m), repeats))
                ours, theirs = (statistics.median(times[n]) for n in models)
                same = call(models["gpunet"]), call(models["scikit-learn"])
                agree = ("labels equal" if np.array_equal(*same) else "labels DIFFER") if what == "predict" else (
                    f"largest difference {np.max(np.abs(np.subtract(*same))):.1e}")
                click.echo(f"{case:17s} {what:13s} gpunet {ours:7.1f} us, scikit-learn {theirs:7.1f} us, "
                           f"{theirs / ours:.2f}x; {agree}")
        early_stopping(runs, backend)


def early_stopping(runs, backend):
    """Fits of 200 epochs with early stopping, scored by gpunet's metric and by scikit-learn's, alternating."""
    from sklearn.metrics import accuracy_score, r2_score

    cases = {"regressor, diabetes": (gs.MLPRegressor, datasets.load_diabetes, "r2", r2_score),
             "classifier, iris": (gs.MLPClassifier, datasets.load_iris, "accuracy", accuracy_score)}
    for name, (cls, load, attr, theirs) in cases.items():
        x, y = load(return_X_y=True)
        ours = getattr(gs, attr)
        kw = dict(hidden_layer_sizes=(32,), max_iter=200, early_stopping=True, n_iter_no_change=1000, random_state=0,
                  backend=backend)
        times, scores = {"gpunet": [], "scikit-learn": []}, {}
        try:
            for _ in range(runs):
                for way, metric in (("gpunet", ours), ("scikit-learn", theirs)):
                    setattr(gs, attr, metric)
                    start = time.perf_counter()
                    scores[way] = cls(**kw).fit(x, y).validation_scores_
                    times[way].append(time.perf_counter() - start)
        finally:
            setattr(gs, attr, ours)
        a, b = (statistics.median(times[w]) * 1e3 for w in times)
        click.echo(f"{name}, early stopping, 200 epochs: {a:.1f} ms a fit scored by gpunet's {attr}, {b:.1f} ms by "
                   f"scikit-learn's {theirs.__name__}, {b / a:.2f}x; validation scores "
                   f"{'equal' if scores['gpunet'] == scores['scikit-learn'] else 'DIFFER'}")


if __name__ == "__main__":
    cli()

"""A grid search whose MLP fits train as stacks (gpunet.search_cv.GridSearchCV) beside scikit-learn's GridSearchCV
fitting gpunet.sklearn's estimators one by one, and beside scikit-learn's GridSearchCV over scikit-learn's own MLP.

iris: 20 candidates (4 alphas x 5 learning rates) x 5 folds = 100 fits of the tutorial-sized network
(150 x 4 -> 32 -> 3, adam, max_iter 200); digits: the same grid on 1797 x 64 -> 64 -> 10 (adam, batch 200, max_iter
30). Runs alternate between the ways; the figures are medians of the runs, with, for the stacked search in one
process, the seconds spent in fit_stack (the rest: planning the fits and scikit-learn's own pass, which scores every
fit). Each way's cv_results_ scores are compared with the stacked search's (largest absolute difference) and its
best_params_ with the stacked one's.
Run from the repository root: python bench/search_bench.py --help
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
from sklearn import model_selection as skm  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.options import alternating  # noqa: E402
from gpunet import search_cv  # noqa: E402
from gpunet import sklearn as gs  # noqa: E402
from gpunet.backend import cpu_name  # noqa: E402

GRID = dict(alpha=list(np.logspace(-5, -1, 4)), learning_rate_init=list(np.logspace(-4, -1, 5)))


def iris():
    x, y = datasets.load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y, dict(hidden_layer_sizes=(32,), solver="adam", max_iter=200)


def digits():
    x, y = datasets.load_digits(return_X_y=True)
    return StandardScaler().fit_transform(x), y, dict(hidden_layer_sizes=(64,), solver="adam", batch_size=200,
                                                      max_iter=30)


WORKLOADS = {"iris": iris, "digits": digits}


def ways(kw, backend, n_jobs):
    """name: a function (x, y) -> the fitted search."""
    ours = gs.MLPClassifier(backend=backend, random_state=0, **kw)
    theirs = sk.MLPClassifier(random_state=0, **kw)
    return {
        "stacked": lambda x, y: search_cv.GridSearchCV(ours, GRID, cv=5, n_jobs=n_jobs).fit(x, y),
        "one by one": lambda x, y: skm.GridSearchCV(ours, GRID, cv=5, n_jobs=n_jobs).fit(x, y),
        "scikit-learn's MLP": lambda x, y: skm.GridSearchCV(theirs, GRID, cv=5, n_jobs=n_jobs).fit(x, y),
    }


def timing_stacks(spent):
    """Make search_cv time its fit_stack calls into the list `spent` (in this process: with n_jobs=None)."""
    fit_stack = search_cv.fit_stack

    def timed(*args, **kwargs):
        start = time.perf_counter()
        fitted = fit_stack(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return fitted

    search_cv.fit_stack = timed


def score_diff(a, b):
    """The largest absolute difference between two searches' split test scores."""
    keys = [k for k in b.cv_results_ if k.startswith("split") and k.endswith("test_score")]
    return max(float(np.max(np.abs(a.cv_results_[k] - b.cv_results_[k]))) for k in keys)


@click.command()
@click.option("--workload", "workloads", multiple=True, default=["iris", "digits"], show_default=True,
              help="iris or digits, repeatable.")
@alternating()
@click.option("--n-jobs", default=None, type=int, help="Every search's n_jobs (default: None, one process).")
@click.option("--skip-sklearn-mlp", is_flag=True, help="Leave out scikit-learn's own MLP (the slowest way).")
def main(workloads, runs, backend, blas_threads, n_jobs, skip_sklearn_mlp):
    """Time a 5-fold grid search of 20 candidates three ways; print medians, speed-ups and the agreement."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    threadpool_limits(blas_threads, user_api="blas")
    click.echo(f"{cpu_name() if backend == 'cpu' else backend}, {os.cpu_count()} CPUs, {blas_threads} BLAS "
               f"thread(s), Python {platform.python_version()}, NumPy {np.__version__}, scikit-learn "
               f"{sklearn.__version__}, n_jobs={n_jobs}")
    spent = []
    timing_stacks(spent)
    for name in workloads:
        x, y, kw = WORKLOADS[name]()
        searches = ways(kw, backend, n_jobs)
        if skip_sklearn_mlp:
            del searches["scikit-learn's MLP"]
        search_cv.GridSearchCV(gs.MLPClassifier(backend=backend, random_state=0, **{**kw, "max_iter": 1}),
                               {"alpha": [1e-4, 1e-3]}, cv=2, n_jobs=n_jobs).fit(x, y)  # warm-up: imports, workers
        times, fitted, in_stacks = {way: [] for way in searches}, {}, []
        for _ in range(runs):
            for way, search in searches.items():
                spent.clear()
                start = time.perf_counter()
                fitted[way] = search(x, y)
                times[way].append(time.perf_counter() - start)
                if way == "stacked":
                    in_stacks.append(sum(spent))
        med = {way: statistics.median(ts) for way, ts in times.items()}
        stacked = fitted["stacked"]
        click.echo(f"{name}: {len(stacked.cv_results_['params'])} candidates x 5 folds, "
                   f"{stacked.stacked_fits_} fits served by stacks of {stacked.stack_sizes_}, {runs} runs")
        for way, t in med.items():
            line = f"  {way:>18}: {t:8.3f} s  runs: " + " ".join(f"{s:.3f}" for s in times[way])
            if way == "stacked" and n_jobs is None:
                line += f"  (in fit_stack: {statistics.median(in_stacks):.3f} s)"
            if way != "stacked":
                same = fitted[way].best_params_ == stacked.best_params_
                line += (f"  stacked {t / med['stacked']:.2f}x faster; scores' largest difference "
                         f"{score_diff(fitted[way], stacked):.1e}, best_params_ {'agree' if same else 'DIFFER'}")
            click.echo(line)


if __name__ == "__main__":
    main()

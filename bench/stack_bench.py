"""A grid of gpunet.sklearn candidates fitted one by one beside the same grid fitted as one stack (fit_stack).

digits: 20 candidates (4 alphas x 5 learning rates), 1797 x 64 -> 64 -> 10, adam, batch 200,
max_iter 30, float64 (--dtype float32 for float32); tutorial: K candidates of the tutorial-sized network (100 x 3 -> 32
-> 1, batch 100); seeds: K such networks differing only in random_state, 200 epochs each. Runs alternate
(one by one, then the stack); the figures are medians of the runs, and the largest relative difference between
the two ways' weights says they trained the same.
Run from the repository root: python bench/stack_bench.py --help
"""

import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings

import click
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sklearn import datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.options import alternating  # noqa: E402
from gpunet.backend import cpu_name  # noqa: E402
from gpunet.sklearn import MLPClassifier, MLPRegressor, fit_stack  # noqa: E402


def digits(k):
    x, y = datasets.load_digits(return_X_y=True)
    alphas, rates = np.logspace(-5, -1, 4), np.logspace(-4, -1, max(1, k // 4))
    grid = [dict(alpha=a, learning_rate_init=r) for a in alphas for r in rates][:k]
    kw = dict(hidden_layer_sizes=(64,), solver="adam", batch_size=200, max_iter=30, random_state=0)
    return MLPClassifier, StandardScaler().fit_transform(x), y, kw, grid


def tutorial(k):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(100)
    grid = [dict(alpha=a, learning_rate_init=r) for a, r in zip(np.logspace(-5, -1, k), np.tile([1e-3, 1e-2], k))]
    kw = dict(hidden_layer_sizes=(32,), solver="adam", batch_size=100, max_iter=200, random_state=0)
    return MLPRegressor, x, y, kw, grid


def seeds(k):
    """K tutorial-sized networks that differ only in random_state, each trained its whole 200 epochs."""
    x, y, kw = tutorial(1)[1:4]
    grid = [dict(random_state=seed) for seed in range(k)]
    kw = {**{name: v for name, v in kw.items() if name != "random_state"}, "tol": 0.0, "n_iter_no_change": 200}
    return MLPRegressor, x, y, kw, grid


WORKLOADS = {"digits": digits, "tutorial": tutorial, "seeds": seeds}


def one_by_one(cls, x, y, kw, grid, backend, dtype):
    return [cls(backend=backend, dtype=dtype, **kw, **g).fit(x, y) for g in grid]


def stacked(cls, x, y, kw, grid, backend, dtype):
    return fit_stack([cls(backend=backend, dtype=dtype, **kw, **g) for g in grid], x, y)


def seconds(way, *args):
    start = time.perf_counter()
    fitted = way(*args)
    return time.perf_counter() - start, fitted


def weights_diff(a, b):
    """The largest relative difference between two lists of fitted estimators' weights."""
    return max(float(np.max(np.abs(p - q)) / np.max(np.abs(q)))
               for ea, eb in zip(a, b) for p, q in zip(ea.coefs_ + ea.intercepts_, eb.coefs_ + eb.intercepts_))


def peak_bytes(way, *args):
    """The peak of memory allocated (NumPy's buffers and Python's objects, tracemalloc) while `way` fits, above what
    was allocated before it."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    way(*args)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return peak


def memory(cls, x, y, kw, grid, backend, dtype):
    """A stack's memory against one model's: each fit's peak, and what each model adds to a stack (the peak of K
    models less that of K / 2, over K / 2)."""
    k = len(grid)
    one = peak_bytes(one_by_one, cls, x, y, kw, grid[:1], backend, dtype)
    half, whole = (peak_bytes(stacked, cls, x, y, kw, grid[:m], backend, dtype) for m in (k // 2, k))
    per_model = (whole - half) / (k - k // 2)
    click.echo(f"  memory: one fit's peak {one / 2**10:.0f} KiB; a stack of {k // 2} {half / 2**20:.2f} MiB, of {k} "
               f"{whole / 2**20:.2f} MiB: {per_model / 2**10:.1f} KiB per model added ({per_model / one:.2f}x one "
               f"fit's peak, which also holds its copy of the data); {whole / (k * one):.2f}x K one-fit peaks")


@click.command()
@click.option("--workload", "workloads", multiple=True, default=["digits:20", "tutorial:100"], show_default=True,
              help="NAME:K, repeatable: digits, tutorial or seeds (K random_states), K candidates.")
@alternating()
@click.option("--dtype", default="float64", show_default=True, help="The estimators' dtype: float64 or float32.")
@click.option("--memory", "with_memory", is_flag=True, help="Also measure a stack's memory against one fit's.")
def main(workloads, runs, backend, blas_threads, dtype, with_memory):
    """Time a grid fitted one by one and as one stack; print medians, the speed-up and the weights' difference."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    threadpool_limits(blas_threads, user_api="blas")
    click.echo(f"{cpu_name() if backend == 'cpu' else backend}, {os.cpu_count()} CPUs, {blas_threads} BLAS "
               f"thread(s), Python {platform.python_version()}, NumPy {np.__version__}")
    for spec in workloads:
        name, k = spec.split(":")
        args = (*WORKLOADS[name](int(k)), backend, dtype)
        stacked(*args[:3], {**args[3], "max_iter": 1}, args[4][:2], backend, dtype)  # warm-up: imports, allocations
        times = {"one by one": [], "stack": []}
        for _ in range(runs):
            t, alone = seconds(one_by_one, *args)
            times["one by one"].append(t)
            t, stack = seconds(stacked, *args)
            times["stack"].append(t)
        med = {way: statistics.median(ts) for way, ts in times.items()}
        epochs = sum(est.n_iter_ for est in stack)
        click.echo(f"{name}, {dtype}: {len(stack)} candidates, {epochs} model-epochs "
                   f"(n_iter_ {min(e.n_iter_ for e in stack)}..{max(e.n_iter_ for e in stack)}), {runs} runs")
        for way, t in med.items():
            click.echo(f"  {way:>10}: {t:8.3f} s  ({epochs / t:8.0f} model-epochs/s)  runs: "
                       + " ".join(f"{s:.3f}" for s in times[way]))
        click.echo(f"  stack speed-up: {med['one by one'] / med['stack']:.2f}x; "
                   f"weights' largest relative difference: {weights_diff(stack, alone):.1e}")
        if with_memory:
            memory(*args)


if __name__ == "__main__":
    main()

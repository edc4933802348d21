"""Right by default: `gpunet train` with no options beside scikit-learn's standard pipelines, on six tables.

For wine, breast cancer, digits and iris (classes), diabetes (regression, unscaled) and the Palmer
penguins as published (text features, missing cells), it splits 75/25 (`train_test_split`,
random_state=0, stratified for classes), writes TRAIN.csv and TEST.csv to a temporary folder, and scores
on TEST: scikit-learn's MLP with default parameters and a linear model (LogisticRegression, Ridge), each
after mean imputation and scaling of the numbers and one-hot encoding of the text; and
`gpunet train --data TRAIN.csv --target COL --save model.npz --quiet --seed S` then `gpunet evaluate
--json` (the `gpunet` beside this Python), for S in 0..N-1 (--seeds). A gpunet score passes when it is
within 0.02 accuracy, or 0.03 R^2, of the better baseline. A failed gpunet command is reported, not fatal.
Run from the repository root: python bench/table_bench.py --help
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from importlib.resources import files

import click
import numpy
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

GPUNET = os.path.join(os.path.dirname(sys.executable), "gpunet")
BAR = {"accuracy": 0.02, "r2": 0.03}


def labelled(bunch, target="target"):
    """A scikit-learn bunch as one frame, its class indices replaced by their names."""
    frame = bunch.frame.copy()
    frame[target] = [bunch.target_names[i] for i in bunch.target]
    return frame


def iris():
    """Fisher's iris with snake_case measurement names and the species as text."""
    frame = labelled(load_iris(as_frame=True), "species").drop(columns="target")
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    return frame.set_axis(names, axis=1)


def diabetes():
    """The diabetes table in its original units, the target named progression."""
    return load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})


def penguins():
    """The Palmer penguins file exactly as the palmerpenguins package ships it."""
    return pd.read_csv(files("palmerpenguins") / "data" / "penguins.csv")


TABLES = {  # name: (frame maker, target column, classes?)
    "wine": (lambda: labelled(load_wine(as_frame=True)), "target", True),
    "breast_cancer": (lambda: labelled(load_breast_cancer(as_frame=True)), "target", True),
    "digits": (lambda: load_digits(as_frame=True).frame, "target", True),
    "iris": (iris, "species", True),
    "diabetes": (diabetes, "progression", False),
    "penguins": (penguins, "species", True),
}


def split(frame, target, classes, folder):
    """Write the 75/25 split as folder/TRAIN.csv and folder/TEST.csv; return their paths."""
    train, test = train_test_split(frame, test_size=0.25, random_state=0,
                                   stratify=frame[target] if classes else None)
    paths = os.path.join(folder, "TRAIN.csv"), os.path.join(folder, "TEST.csv")
    for part, path in zip((train, test), paths):
        part.to_csv(path, index=False, na_rep="NA")
    return paths


def preprocessor(x):
    """Mean-impute and scale the numeric columns, constant-impute and one-hot encode the others."""
    numeric = list(x.select_dtypes("number").columns)
    text = [c for c in x.columns if c not in numeric]
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric),
        ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                               OneHotEncoder(handle_unknown="ignore")), text)])


def baselines(train_path, test_path, target, classes):
    """Test scores of scikit-learn's default MLP and of the linear model, read from the same CSV files."""
    train, test = (pd.read_csv(p) for p in (train_path, test_path))
    x, y = train.drop(columns=target), train[target]
    x_test, y_test = test.drop(columns=target), test[target]
    models = ((MLPClassifier(random_state=0), LogisticRegression(max_iter=1000)) if classes
              else (MLPRegressor(random_state=0), Ridge()))
    scores = []
    for model in models:
        pipe = make_pipeline(preprocessor(x), model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores.append(float(pipe.fit(x, y).score(x_test, y_test)))
    return scores


def gpunet(*args):
    """Run one gpunet command: (stdout, None) or (None, its last stderr line)."""
    done = subprocess.run([GPUNET, *args], capture_output=True, text=True)
    if done.returncode == 0:
        return done.stdout, None
    lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit {done.returncode}"]
    return None, f"{args[0]}: exit {done.returncode}: {lines[-1].strip()}"


def gpunet_score(train_path, test_path, target, metric, seed, folder, extra=()):
    """Train with no options but the seed (and `extra`, to try candidate defaults), evaluate on TEST:
    (score, train seconds, error), None where failed."""
    model = os.path.join(folder, f"model-{seed}.npz")
    start = time.perf_counter()
    _, error = gpunet("train", "--data", train_path, "--target", target, "--save", model, "--quiet",
                      "--seed", str(seed), *extra)
    seconds = time.perf_counter() - start
    if error:
        return None, None, error.replace(folder + os.sep, "")
    out, error = gpunet("evaluate", "--model", model, "--data", test_path, "--json")
    if error:
        return None, seconds, error.replace(folder + os.sep, "")
    report = json.loads(out)
    value = report.get("accuracy") if metric == "accuracy" else report.get("targets", [{}])[0].get("r2")
    if value is None:
        return None, seconds, f"evaluate: its JSON has no {metric} (keys: {', '.join(report)})"
    return value, seconds, None


def run_table(name, seeds, extra=()):
    """Split one table, score the baselines and gpunet on every seed; return its figures."""
    make, target, classes = TABLES[name]
    frame = make()
    metric = "accuracy" if classes else "r2"
    with tempfile.TemporaryDirectory(prefix=f"table-bench-{name}-") as folder:
        train_path, test_path = split(frame, target, classes, folder)
        mlp, linear = baselines(train_path, test_path, target, classes)
        runs = [gpunet_score(train_path, test_path, target, metric, s, folder, extra) for s in range(seeds)]
    task = f"{frame[target].nunique()} classes" if classes else "regression"
    return summarize(name, frame.shape, task, metric, mlp, linear, runs)


def summarize(name, shape, task, metric, mlp, linear, runs):
    """One table's figures: gpunet's median and min over seeds against the better baseline."""
    scores = [r[0] for r in runs]
    best = max(mlp, linear)
    median = None if None in scores else statistics.median(scores)  # every seed must have run
    return {"table": name, "rows": shape[0], "inputs": shape[1] - 1, "task": task, "metric": metric,
            "gpunet_scores": scores, "gpunet_median": median,
            "gpunet_min": None if median is None else min(scores),
            "sklearn_mlp": mlp, "linear": linear, "best": best,
            "gpunet_minus_best": None if median is None else median - best,
            "passed": median is not None and median >= best - BAR[metric],
            "train_seconds": [r[1] for r in runs], "errors": sorted({r[2] for r in runs if r[2]})}


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment():
    """The machine and the versions the figures were taken with."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
            "gpunet": version("gpunet")}


HEADER = ("table", "rows x in", "task", "gpunet", "min", "skl MLP", "linear", "best", "g - best", "bar", "train s")
WIDTHS = (-13, 9, -10, 8, 8, 8, 8, 8, 8, -4, 7)  # negative: left-aligned


def score(value, signed=False):
    """A score to four decimals, or '-' when there is none."""
    return "-" if value is None else f"{value:{'+' if signed else ''}.4f}"


def line(cells):
    """Cells padded to WIDTHS, two spaces apart."""
    return "  ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(cells, WIDTHS))


def row_cells(r):
    """One table's printed cells."""
    return (r["table"], f"{r['rows']} x {r['inputs']}", r["task"], score(r["gpunet_median"]), score(r["gpunet_min"]),
            score(r["sklearn_mlp"]), score(r["linear"]), score(r["best"]), score(r["gpunet_minus_best"], True),
            "PASS" if r["passed"] else "FAIL", wall(r["train_seconds"]))


def wall(seconds):
    """The median of the trainings that finished, or '-' when none did."""
    done = [s for s in seconds if s is not None]
    return f"{statistics.median(done):.2f}" if done else "-"


def report(env, results, seeds):
    """Print the machine, versions, the table of figures and the gpunet errors."""
    click.echo(f"{env['cpu']}, {env['cores']} cores; python {env['python']}, numpy {env['numpy']}, "
               f"scikit-learn {env['scikit-learn']}, pandas {env['pandas']}, gpunet {env['gpunet']}")
    seed_text = "--seed 0" if seeds == 1 else f"--seed 0..{seeds - 1} (median and min)"
    click.echo(f"gpunet: train with no options but {seed_text}; scores on TEST: accuracy, R^2 for regression; "
               f"bar: within {BAR['accuracy']} accuracy or {BAR['r2']} R^2 of the best baseline; "
               "train s: wall seconds of one finished `gpunet train`, process start included (median)\n")
    click.echo(line(HEADER))
    for r in results:
        click.echo(line(row_cells(r)))
    for r in results:
        for error in r["errors"]:
            click.echo(f"{r['table']}: {error}")


@click.command()
@click.option("--seeds", default=1, show_default=True,
              help="Train gpunet with --seed 0..N-1; report the median and min.")
@click.option("--tables", default=",".join(TABLES), show_default=True, help="Comma-separated tables to run.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write every figure to this JSON file.")
@click.option("--gpunet-args", "extra", default="", help="Options added to every gpunet train, to measure candidate "
              "defaults side by side (the bar is for none).")
def cli(seeds, tables, json_path, extra):
    """Compare `gpunet train` with no options against scikit-learn's standard pipelines on six tables."""
    names = [t for t in tables.split(",") if t]
    unknown = [t for t in names if t not in TABLES]
    if unknown or seeds < 1:
        raise click.UsageError(f"unknown tables {unknown} (choose from {', '.join(TABLES)})" if unknown
                               else "--seeds must be at least 1")
    if not os.path.exists(GPUNET):
        raise click.UsageError(f"no gpunet beside this Python ({GPUNET}): pip install -e . first")
    env = environment()
    results = [run_table(name, seeds, extra.split()) for name in names]
    report(env, results, seeds)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"environment": env, "seeds": seeds, "bar": BAR, "tables": results}, f, indent=2)


if __name__ == "__main__":
    cli()

"""Reading data: gpunet's reader beside pyarrow, NumPy and pandas on one large CSV and its Parquet twin.

Prints, for a 200,000 x 20 table of N(0, 1) floats (np.savetxt, '%.8g') and the same data as Parquet:
the median read time over interleaved rounds in this process, and the peak memory of a fresh process
that reads once (its peak resident memory, VmHWM reset after the imports, minus its resident memory then). Then `gpunet train --data
big.csv --epochs 1` end to end with the time spent reading inside it, and `gpunet predict --out` with
the time spent writing. Run from the repository root: python bench/read_bench.py --help
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import click
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gpunet.tabular import count_rows, read_table  # noqa: E402

try:
    import pandas as pd
except ImportError:
    pd = None

QUARTER = "def quarter(p):\n    n = count_rows(p)\n    return n - n // 4, n\n"  # the last rank's rows of 4
IMPORTS = ("import numpy as np, pyarrow.csv as pacsv, pyarrow.parquet as pq\n"
           "from gpunet.tabular import count_rows, read_table\n" + QUARTER)
if pd is not None:
    IMPORTS += "import pandas as pd\n"

# name -> (file, expression reading path p)
READERS = {
    "gpunet read_table": ("csv", "read_table(p)"),
    "gpunet read_table(p).values": ("csv", "read_table(p).values"),
    "pyarrow.csv.read_csv": ("csv", "pacsv.read_csv(p)"),
    "np.loadtxt": ("csv", "np.loadtxt(p, delimiter=',', skiprows=1)"),
    "pandas.read_csv": ("csv", "pd.read_csv(p)"),
    "pandas.read_csv(engine='pyarrow')": ("csv", "pd.read_csv(p, engine='pyarrow')"),
    "gpunet read_table (Parquet)": ("parquet", "read_table(p)"),
    "gpunet read_table(p).values (Parquet)": ("parquet", "read_table(p).values"),
    "pyarrow.parquet.read_table": ("parquet", "pq.read_table(p)"),
}

# one rank's rows of 4: count_rows, then read_table(p, rows=the last quarter), beside the whole
RANK_READERS = {f"{name} {what}": (kind, expr) for kind, name in [("csv", "CSV"), ("parquet", "Parquet"), ("npy", ".npy")]
                for what, expr in [("count_rows", "count_rows(p)"), ("last quarter", "read_table(p, rows=quarter(p))"),
                                   ("whole", "read_table(p)")]}

# runs gpunet's command line in this process, timing read_table + the columns' preparation and the output write
TIMED_CLI = """
import json, sys, time
start = time.perf_counter()
from gpunet import cli, cli_model, prepare, table_run, tabular
spent = {"read": 0.0, "write": 0.0}
def timed(key, f):
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t
    return run
table_run.read_table = cli_model.read_table = timed("read", tabular.read_table)
prepare.Preparation.transform = timed("read", prepare.Preparation.transform)
cli_model.atomic_write = timed("write", cli_model.atomic_write)
try:
    cli.cli.main(sys.argv[1:], standalone_mode=False)
finally:
    spent["in_process"] = time.perf_counter() - start
    print(json.dumps(spent), file=sys.stderr)
"""


def make_files(folder, rows, cols, seed=0):
    x = np.random.default_rng(seed).standard_normal((rows, cols))
    names = [f"x{i}" for i in range(cols)]
    csv_path, parquet_path = os.path.join(folder, "big.csv"), os.path.join(folder, "big.parquet")
    np.savetxt(csv_path, x, delimiter=",", header=",".join(names), comments="", fmt="%.8g")
    pq.write_table(pa.table(dict(zip(names, x.T))), parquet_path)
    np.save(os.path.join(folder, "big.npy"), x)
    return {"csv": csv_path, "parquet": parquet_path, "npy": os.path.join(folder, "big.npy")}, x.nbytes


def time_readers(readers, files, repeats):
    """Median seconds per reader over `repeats` interleaved rounds (after one untimed round)."""
    ns = {"np": np, "pacsv": pacsv, "pq": pq, "pd": pd, "read_table": read_table, "count_rows": count_rows}
    exec(QUARTER, ns)
    code = {name: compile(expr, name, "eval") for name, (_, expr) in readers.items()}
    seconds = {name: [] for name in readers}
    for r in range(repeats + 1):
        for name, (kind, _) in readers.items():
            ns["p"] = files[kind]
            t = time.perf_counter()
            out = eval(code[name], ns)
            if r:
                seconds[name].append(time.perf_counter() - t)
            del out
    return {name: statistics.median(s) for name, s in seconds.items()}


def peak_memory(expr, path):
    """MiB by which a fresh process's peak resident memory (VmHWM, reset after the imports) grows while it evaluates `expr`."""
    code = IMPORTS + ("import re, sys\np = sys.argv[1]\n"
                      "def status(): return dict(re.findall(r'(VmHWM|VmRSS):\\s+(\\d+)', open('/proc/self/status').read()))\n"
                      "open('/proc/self/clear_refs', 'w').write('5')\nbase = int(status()['VmRSS'])\n"
                      f"out = {expr}\nprint(int(status()['VmHWM']) - base)")
    out = subprocess.run([sys.executable, "-c", code, path], check=True, capture_output=True, text=True, cwd=ROOT)
    return int(out.stdout) / 1024


def timed_cli(args):
    """(wall seconds of the whole process, its in-process figures) for `gpunet ARGS`."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", TIMED_CLI, *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if out.returncode:
        raise click.ClickException(f"gpunet {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return wall, json.loads(out.stderr.strip().splitlines()[-1])


def versions():
    v = {"python": platform.python_version(), "numpy": np.__version__, "pyarrow": pa.__version__}
    if pd is not None:
        v["pandas"] = pd.__version__
    return v


@click.command()
@click.option("--rows", default=200_000, show_default=True, help="Rows of the table.")
@click.option("--cols", default=20, show_default=True, help="Columns of the table.")
@click.option("--repeats", default=5, show_default=True, help="Timed rounds; each reader once per round, in turns.")
@click.option("--dir", "folder", default=None, help="Where to write the files  [default: a temporary folder]")
def main(rows, cols, repeats, folder):
    """Time gpunet's reader beside pyarrow, np.loadtxt and pandas, and measure their peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder or tmp
        files, nbytes = make_files(folder, rows, cols)
        readers = {k: v for k, v in READERS.items() if pd is not None or not k.startswith("pandas")}
        click.echo(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, pyarrow threads "
                   f"{pa.cpu_count()}; {json.dumps(versions())}")
        click.echo(f"{rows} x {cols}: CSV {os.path.getsize(files['csv']) / 1e6:.1f} MB, Parquet "
                   f"{os.path.getsize(files['parquet']) / 1e6:.1f} MB, float64 array {nbytes / 2**20:.1f} MiB")
        if pd is None:
            click.echo("pandas is not installed: its rows are skipped (pip install pandas)")
        seconds = time_readers(readers, files, repeats)
        base = seconds["pyarrow.csv.read_csv"]
        click.echo(f"\n{'reader':40} {'median':>9} {'/ pyarrow.csv':>14} {'peak MiB':>9} {'/ array':>8}")
        for name, (kind, expr) in readers.items():
            mib = peak_memory(expr, files[kind])
            click.echo(f"{name:40} {seconds[name]:8.3f}s {seconds[name] / base:13.2f}x {mib:9.1f} "
                       f"{mib * 2**20 / nbytes:7.2f}x")

        seconds = time_readers(RANK_READERS, files, repeats)
        click.echo(f"\none rank's rows of 4 (its rows found by count_rows, counted in the time)\n"
                   f"{'reader':40} {'median':>9} {'peak MiB':>9} {'/ array':>8}")
        for name, (kind, expr) in RANK_READERS.items():
            mib = peak_memory(expr, files[kind])
            click.echo(f"{name:40} {seconds[name]:8.3f}s {mib:9.1f} {mib * 2**20 / nbytes:7.2f}x")

        model = os.path.join(folder, "model.npz")
        wall, t = timed_cli(["train", "--backend", "cpu", "--data", files["csv"], "--epochs", "1", "-q",
                             "--save", model])
        click.echo(f"\ngpunet train --data big.csv --epochs 1: {wall:.2f} s wall, of which reading (read_table and "
                   f"the preparation) {t['read']:.2f} s ({t['read'] / wall:.0%}); {wall - t['in_process']:.2f} s "
                   "before the first line of Python ran")
        wall, t = timed_cli(["predict", "--backend", "cpu", "--model", model, "--data", files["csv"],
                             "--out", os.path.join(folder, "pred.csv")])
        click.echo(f"gpunet predict --out (rows x 1 out): {wall:.2f} s wall, reading {t['read']:.2f} s, "
                   f"writing {t['write']:.2f} s")
        x = np.random.default_rng(0).standard_normal((rows, cols))
        out = os.path.join(folder, "write.csv")
        writers = {
            "np.savetxt('%.9g')": lambda: np.savetxt(out, x, fmt="%.9g", delimiter=","),
            "pyarrow.csv.write_csv": lambda: pacsv.write_csv(pa.table({f"x{i}": x[:, i] for i in range(cols)}), out),
        }
        ws = {}
        for _ in range(3):
            for name, f in writers.items():
                t0 = time.perf_counter()
                f()
                ws.setdefault(name, []).append(time.perf_counter() - t0)
        for name, s in ws.items():
            click.echo(f"writing {rows} x {cols} with {name}: {statistics.median(s):.3f} s")


if __name__ == "__main__":
    main()

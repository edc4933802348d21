"""gpunet and its peers on the same workloads, timed in turns in one run: `make bench` (or `make gpu-check`).

Writes <out>/<date>-<machine>.json with every figure, <out>/<date>-<machine>.png (time per epoch, log
scale) when matplotlib is installed, and prints the tables with gpunet's time over each peer's.
Run from the repository root: python bench/run.py --help
"""

import datetime
import os
import re
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import peers  # noqa: E402
from gpunet.bench import bench  # noqa: E402
from gpunet.cli import split_list  # noqa: E402
from gpunet.cli_prove import resolve_backend_list, stderr_progress  # noqa: E402
from gpunet.files import write_json  # noqa: E402
from gpunet.report import bench_table, format_rows, format_seconds  # noqa: E402
from gpunet.workloads import workload  # noqa: E402


def machine_slug(report):
    m = report["machine"]
    name = m["gpu"]["name"] if "gpu" in m else f"{m['cpu']} {m['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def ratio_table(report):
    """gpunet's median time over each peer's, per workload and backend (below 1: gpunet is faster)."""
    ours = {(r["workload"], r["backend"]): r for r in report["records"] if r["system"] == "gpunet"}
    rows = []
    for r in report["records"]:
        if r["system"] == "gpunet":
            continue
        g = ours[(r["workload"], r["backend"])]
        agree = next((a for a in report["agreement"] if a["workload"] == r["workload"]
                      and a["a"] == f"{r['system']}/{r['backend']}"), None)
        compile_s = f"{r['compile_s']:.2f} s" if "compile_s" in r else ""
        rows.append((r["workload"], r["backend"], r["system"], format_seconds(r["seconds_per_epoch"]),
                     format_seconds(g["seconds_per_epoch"]), f"{g['median_s'] / r['median_s']:.2f}",
                     f"{r['median_s'] / g['median_s']:.2f}x", compile_s,
                     "yes" if agree and agree["ok"] else f"NO ({agree['max_rel']:.2g})" if agree else "-"))
    return format_rows(("workload", "backend", "peer", "peer per epoch", "gpunet per epoch", "gpunet/peer time",
                        "gpunet speed-up", "peer compile", "final loss agrees"), rows)


def chart(report, path):
    """Time per epoch per workload and system, log scale, as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    workloads = list(dict.fromkeys(r["workload"] for r in report["records"]))
    systems = list(dict.fromkeys(f"{r['system']} ({r['backend']})" for r in report["records"]))
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.5 * len(workloads), 4.5), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        recs = {f"{r['system']} ({r['backend']})": r for r in report["records"] if r["workload"] == w}
        names = [s for s in systems if s in recs]
        ax.bar(range(len(names)), [recs[s]["seconds_per_epoch"] for s in names],
               color=["tab:red" if s.startswith("gpunet") else "tab:gray" for s in names])
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(w)
        ax.set_ylabel("seconds per epoch (median)")
    fig.suptitle(f"gpunet and peers, {report['machine'].get('gpu', {}).get('name') or report['machine']['cpu']}")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return True


@click.command()
@click.option("--workload", "workloads", default="seed,medium,large,mnist", show_default=True,
              help="Comma-separated workloads.")
@click.option("--backend", "backend_list", default="all", show_default=True,
              help="Backends for gpunet: comma-separated, or all (the CPU, plus CUDA when usable).")
@click.option("--peers-on", default="all", show_default=True,
              help="Backends on which the peers run too (comma-separated, all, or none).")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help="Timed runs per system.")
@click.option("--out", default="bench/results", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the JSON and the chart.")
def main(workloads, backend_list, peers_on, repeats, out):
    """Benchmark gpunet beside NumPy (the tutorial as written), PyTorch and JAX, timed in turns."""
    chosen = {name: workload(name) for name in split_list(workloads)}
    backends = resolve_backend_list(backend_list, 0)
    peer_backends = {b.name for b in backends} if peers_on == "all" else set(split_list(peers_on)) - {"none"}
    notes = []

    def extra(config, backend):
        if backend.name not in peer_backends:
            return []
        chosen_peers, skipped = peers.available(backend, config)
        notes.extend(n for n in skipped if n not in notes)
        return [make(config, backend) for _, make in chosen_peers]

    report = bench(chosen, backends, repeats=repeats, extra_runners=extra, progress=stderr_progress())
    report["notes"] = notes
    report["versions"] = versions()
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"{datetime.date.today().isoformat()}-{machine_slug(report)}")
    write_json(stem + ".json", report)
    click.echo(bench_table(report))
    click.echo()
    click.echo(ratio_table(report))
    for n in notes:
        click.echo(f"note: {n}")
    click.echo(f"wrote {stem}.json" + (f" and {stem}.png" if chart(report, stem + ".png") else
                                       " (no chart: pip install matplotlib)"))


def versions():
    """Versions of the peers' libraries, where installed."""
    import importlib.metadata as md

    found = {}
    for dist in ("numpy", "torch", "jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x", "click"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()

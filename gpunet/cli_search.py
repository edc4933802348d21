"""`gpunet search`: learning rates and weight decays cross-validated on a table, the best refitted and saved."""

import functools
import math
import time

import click

from gpunet import checkpoint
from gpunet.cli import backend_options, parse_hidden, stderr_progress, use_backend
from gpunet.cli_train import table_options
from gpunet.config import HIDDEN_ACTIVATIONS
from gpunet.files import check_writable, write_json
from gpunet.report import format_rows
from gpunet.search import candidates, search


def parse_floats(ctx, param, value):
    """'1e-3,1e-2' -> (0.001, 0.01); None: the table default alone."""
    if value is None:
        return (None,)
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers (e.g. 1e-3,1e-2)") from None


@click.command("search")
@functools.partial(table_options, train=False)
@click.option("--lr", "lrs", default=None, callback=parse_floats, help="Learning rates to try, comma-separated  "
              "[default: the table default, 0.001]")
@click.option("--weight-decay", "decays", default=None, callback=parse_floats, help="L2 penalties to try, "
              "comma-separated  [default: the table default, min(0.1, 30 / training rows)]")
@click.option("--folds", default=5, show_default=True, type=int, help="k of the k-fold cross-validation.")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Fits per candidate and fold, with seeds --seed, --seed + 1, ...")
@click.option("--hidden", default=None, callback=lambda ctx, p, v: v and parse_hidden(ctx, p, v),
              help="Hidden layer widths, comma-separated  [default: the table default, 100]")
@click.option("--epochs", default=None, type=int, help="Most epochs per fit  [default: the table default, 1000]")
@click.option("--batch-size", default=None, type=int, help="Rows per step  [default: min(200, rows)]")
@click.option("--activation", default=None, type=click.Choice(HIDDEN_ACTIVATIONS), help="Hidden activation  "
              "[default: relu]")
@click.option("--seed", default=None, type=int, help="Seed of the folds and the first fit  [default: 42]")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Refit the best candidate on all rows and write it here (.npz), atomically.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write every candidate's scores to this JSON file.")
@backend_options
def search_cmd(data_path, target, task, features, drop, keep, missing, delimiter, lrs, decays, folds, seeds, hidden,
               epochs, batch_size, activation, seed, save_path, json_path, backend, device):
    """Cross-validate learning rates and weight decays on a table, with the table defaults of train --data.

    Each candidate is trained on k - 1 folds (holding out its own share for early stopping) and scored on
    the k-th, for every fold and seed: accuracy for classes, R-squared for values. Prints each candidate's
    mean and spread, best first; with --save, refits the best on all rows and writes it. The candidates of
    a fold and seed train together as one stack of models (on a GPU, or for a small table in whole batches,
    every fold and seed too), each as gpunet train would train it; a candidate that diverges on a fold is reported as
    such and ranked last.
    """
    if not data_path:
        raise click.UsageError("gpunet search needs --data (and --target)")
    for path, option in ((save_path, "--save"), (json_path, "--json")):
        if path:
            check_writable(path, option)
    given = {k: v for k, v in (("hidden", hidden), ("epochs", epochs), ("batch_size", batch_size),
                               ("activation", activation), ("seed", seed)) if v is not None}
    b = use_backend(backend, device)
    cands = candidates(lrs, decays)
    each = progress(cands, seeds, folds)
    found = search(data_path, given, cands, folds, seeds, b, refit=bool(save_path), delimiter=delimiter,
                   on_epoch=each, target=target, task=task, features=features, drop=drop, keep=keep, missing=missing)
    if each is not None:
        click.echo("\r\033[K", err=True, nl=False)
    for note in found.notes:
        click.echo(note, err=True)
    report(found, folds, seeds)
    if save_path:
        checkpoint.save(save_path, found.best.model)
        click.echo(f"Refitted the best on all rows: {save_path}")
    if json_path:
        write_json(json_path, {"metric": found.metric, "folds": folds, "seeds": seeds, "candidates": [
            {"options": c.options, "mean": _number(c.mean), "spread": _number(c.spread),
             "scores": [_number(v) for v in c.scores], "diverged": c.diverged} for c in found.ranked]})


def _shown(options, name):
    """A candidate's option as the table shows it: 1e-05, 0.001, or "default"."""
    return f"{options[name]:g}" if name in options else "default"


def _number(v):
    """A score for JSON: None (null) for a fit that diverged."""
    return None if math.isnan(v) else v


def report(found, folds, seeds):
    """The candidates' table, best first."""
    rows = [(_shown(c.options, "lr"), _shown(c.options, "weight_decay"),
             f"{c.mean:.4f}" if not c.diverged else f"diverged in {c.diverged} of {len(c.scores)}",
             f"{c.spread:.4f}" if not c.diverged else "") for c in found.ranked]
    header = ("lr", "weight decay", f"{found.metric} (mean of {folds} folds x {seeds} seed{'s' * (seeds > 1)})",
              "spread")
    click.echo(format_rows(header, rows))
    best = found.ranked[0]
    shown = ", ".join(f"{k} {v:g}" for k, v in best.options.items()) or "the table defaults"
    click.echo(f"Best: {shown}: {found.metric} {best.mean:.4f} (spread {best.spread:.4f})")


def progress(cands, seeds, folds):
    """on_epoch for search(): where stderr is a terminal, a line that says which stack trains (a stack per fold and
    seed, or one of them all), its epoch, how many of its models still train and the fits done (the models of the
    stacks before it, and those of this one that have stopped), at most every 0.2 s; else None."""
    show = stderr_progress()
    if show is None:
        return None
    total, state = len(cands) * seeds * folds, {"shown": -math.inf, "stack": 0, "before": 0, "models": 0}

    def each(stack, stacks, epoch, running, models):
        if stack != state["stack"]:  # the stacks before this one have ended: their fits are done
            state["before"] += state["models"]
            state["stack"] = stack
        state["models"] = models
        now = time.monotonic()
        if now - state["shown"] < 0.2:
            return
        state["shown"] = now
        show(f"stack {stack + 1} of {stacks} ({models} model{'s' * (models > 1)}): epoch {epoch}, {running} training; "
             f"fits done {state['before'] + models - running} of {total}")

    return each

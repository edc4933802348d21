"""Model selection on a table: candidates (learning rates x weight decays) scored by k-fold cross-validation over
several seeds, every fit with the table defaults of `gpunet train --data`, the best refitted on all rows.

A fold's score is on rows its model never saw: each fit trains on the other folds' rows, which hold out their
own share for early stopping, and is scored as `gpunet evaluate` scores (accuracy, or R-squared averaged
over the targets). The candidates of one fold and seed see the same rows in the same order and differ only in
their learning rate and weight decay: on the CPU they train as one stack (gpunet/stack_train.py), each by gpunet
train's rules, its model the one `gpunet train` would give; on a GPU, and on the CPU for a small table whose
epochs are one whole batch, every fold, seed and candidate trains in one stack, each model with its own rows
(stack_train.one_stack).
A candidate that diverges on a fold scores NaN there and ranks below every finite mean.
"""

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from gpunet.backend import Backend, resolve
from gpunet.data import DEFAULT_SEED, missing_targets, target_columns
from gpunet.inference import columns, outputs, scores
from gpunet.stack_train import one_stack, train_stacks
from gpunet.table_run import table_run
from gpunet.tabular import Table, as_table, read_table
from gpunet.train import train


@dataclass
class Candidate:
    """One set of options and its held-out scores (one per fold and seed)."""

    options: dict
    scores: list = field(default_factory=list)
    diverged: int = 0  # how many of its fits diverged (each scores NaN)

    @property
    def mean(self):
        """The scores' mean: NaN when a fit diverged (or a score is NaN: R-squared on constant targets)."""
        return float(np.mean(self.scores))

    @property
    def spread(self):
        """The scores' standard deviation (0 for one score; NaN where the mean is)."""
        return float(np.std(self.scores))


def candidates(lrs=(None,), decays=(None,)):
    """Every pair of a learning rate and a weight decay (None: the table default)."""
    return [Candidate({k: v for k, v in (("lr", lr), ("weight_decay", wd)) if v is not None})
            for lr, wd in itertools.product(lrs, decays)]


@dataclass
class Search:
    """What a search found: the metric's name, the candidates best first, the task's notes, the refitted Result."""

    metric: str
    ranked: list
    notes: list
    best: object = None


def search(source, given, cands, folds=5, seeds=1, backend="cpu", on_fit=None, refit=True, delimiter=None,
           on_epoch=None, **table_options):
    """Cross-validate `cands` on the table `source` and refit the best on all its rows.

    Args:
        source: a path, Table, pandas DataFrame or 2-D array, as gpunet.train's data.
        given: the options of gpunet train given for every fit (the others take the table defaults).
        cands: Candidates (see candidates()).
        folds, seeds: k of the k-fold split (drawn from the seed), and the seeds of each fit (seed, seed + 1, ...).
        backend: a resolved Backend, or its name.
        on_fit: called after each fit as on_fit(candidate, seed index, fold index, score).
        on_epoch: called after each epoch of a stack as on_epoch(stack index, stacks, epoch, models still training,
            models in the stack): a stack per fold and seed, or one of them all (a GPU's, or a small table's).
        refit: train the best candidate on all rows (Search.best, a Result).
        delimiter, table_options: as gpunet.train's target, task, features, drop, keep, missing, delimiter.

    Raises:
        ConfigError, DataError: as gpunet train --data; fewer rows than folds.
        Diverged: every candidate diverged on some fold (the first fit that diverged).
    """
    from gpunet.errors import ConfigError

    backend = backend if isinstance(backend, Backend) else resolve(backend)
    table = read_table(source, delimiter=delimiter) if isinstance(source, str) else as_table(source)
    _, whole, notes = table_run(table, given, **table_options)  # checks the table and options, decides the task
    task = "regression" if whole.classes is None else "classification"
    labelled = np.flatnonzero(~missing_targets(table, target_columns(table, table_options.get("target"))))
    if not 2 <= folds <= len(labelled):
        raise ConfigError(f"--folds must be at least 2 and at most the {len(labelled)} rows, got {folds}")
    if len(cands) == 1:
        notes.append("Note: one candidate is scored and nothing compared: give --lr (e.g. 1e-4,1e-3,1e-2) and/or "
                     "--weight-decay to compare")
    seed = given.get("seed", DEFAULT_SEED)
    held_out = np.array_split(np.random.default_rng([seed, 3]).permutation(labelled), folds)
    options = {**table_options, "task": task}
    splits = [(seed + s, s, f, test) for s in range(seeds) for f, test in enumerate(held_out)]
    prepared = (_prepared(table, labelled, split, cands, given, options) for split in splits)
    diverged = None  # the first fit that diverged, raised when every candidate has
    for r, (runs, where, rounds) in enumerate(_rounds(prepared, backend, len(splits))):
        each = on_epoch and (lambda g, stacks, t, running, k, r=r, rounds=rounds: on_epoch(
            r + g, max(rounds, stacks), t, running, k))
        inputs = {}  # a split's held-out inputs and targets, prepared once for its candidates (one preparation)
        for (cand, s, f, held), run in zip(where, train_stacks(runs, backend, each)):
            diverged = diverged or run.diverged
            cand.diverged += run.model is None
            cand.scores.append(math.nan if run.model is None else _score(run.model, held, backend, inputs))
            if on_fit is not None:
                on_fit(cand, s, f, cand.scores[-1])
    ranked = sorted(cands, key=lambda c: -c.mean if not math.isnan(c.mean) else math.inf)
    if all(c.diverged for c in cands):
        raise diverged
    best = _fit(table, {**given, **ranked[0].options}, backend, options) if refit else None
    return Search("accuracy" if task == "classification" else "R-squared", ranked, notes, best)


def _prepared(table, labelled, split, cands, given, options):
    """(runs, where) of one split (seed, seed index, fold index, held-out rows): each candidate's (Config, Dataset)
    on the split's training rows, and its (candidate, seed index, fold index, held-out Table)."""
    seed, s, f, test = split
    config, data, _ = table_run(_rows(table, np.setdiff1d(labelled, test)), {**given, "seed": seed}, **options)
    held = _rows(table, np.sort(test))
    return [(replace(config, **cand.options), data) for cand in cands], [(cand, s, f, held) for cand in cands]


def _rounds(prepared, backend, count):
    """(runs, where, rounds) of the `count` splits' runs to train together: all at once where they stack together
    (stack_train.one_stack: on a GPU, or small tables in whole batches with few candidates), else split by split,
    each prepared only when it trains."""
    first = next(prepared)
    if not one_stack(backend, *first[0][0], len(first[0])):
        yield (*first, count)
        for more in prepared:
            yield (*more, count)
        return
    runs, where = list(first[0]), list(first[1])
    for more, at in prepared:
        runs += more
        where += at
    yield runs, where, 1


def _fit(table, given, backend, options):
    """One training run on `table` with the table defaults: its Result."""
    config, data, _ = table_run(table, given, **options)
    return train(config, backend=backend, data=data)


def _rows(table, rows):
    """The table's `rows` as a Table of their own."""
    return Table(table.names, [c[rows] for c in table.columns], table.path, named=table.named)


def _score(model, table, backend, inputs=None):
    """A model's accuracy, or R-squared averaged over its targets, on a table with known targets; `inputs`, a dict
    that keeps the table's prepared columns for the next model of the same preparation (a fold's candidates)."""
    inputs, key = {} if inputs is None else inputs, (id(table), id(model.prep))
    if key not in inputs:
        inputs[key] = columns(model, table, with_targets=True)
    x, y, _ = inputs[key]
    s = scores(model, y, outputs(model, x, backend))
    return s["accuracy"] if model.classes is not None else float(np.mean([t["r2"] for t in s["targets"]]))

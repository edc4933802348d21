"""What a run on a user's table trains: the table (each rank reads its share), the task its target asks for,
the table defaults for every option not given, and the prepared Dataset."""

import math
import os
from dataclasses import replace

from gpunet.comm import shard_range
from gpunet.config import DECAY_MAX, DECAY_PRIOR, PATIENCE_EPOCHS, PATIENCE_STEPS, table_config
from gpunet.data import Part, Select, table_dataset, target_columns
from gpunet.errors import ConfigError
from gpunet.prepare import TASKS, infer_task
from gpunet.tabular import Table, as_table, count_rows, read_table

TABLE_KEYS = ("target", "task", "features", "drop", "keep", "missing", "delimiter")  # what a table run takes beside a Config


def table_run(source, given, target=None, task="auto", features=None, drop=(), keep=(), missing="fill", comm=None,
              delimiter=None):
    """(Config, Dataset, notes) for training on a table.

    Args:
        source: a path (file, folder or glob), a Table, a pandas DataFrame or a 2-D array.
        given: the Config options the user gave; the others take the table defaults (config.TABLE_DEFAULTS).
        target, task, features, drop, keep, missing: as `gpunet train`'s options of those names.
        comm: with several ranks, each reads and prepares its share of the rows.
        delimiter: a CSV's cell separator (default: a comma).

    Raises:
        ConfigError, DataError: a bad option, or a table that cannot be trained on.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown --task {task!r}: choose one of {', '.join(TASKS)}")
    sized = [k for k in ("n", "d_in", "d_out") if k in given]
    if sized:
        raise ConfigError(f"--{sized[0].replace('_', '-')} does not apply with --data: the file sets it")
    table, part = read_share(source, comm, delimiter)
    t = target_columns(table, target)
    if len(t) == 1:
        classify, note = infer_task(table, t[0], task, given.get("loss"), part.comm)
    else:
        classify, note = task == "classification" or given.get("loss") == "ce", None
    config = table_config(given, classify)
    data = table_dataset(table, target, config.val_split, config.seed, classify, part, Select(features, drop, keep,
                                                                                               missing))
    config, clipped = fit_to_rows(config, data, given)
    chosen = None if target else (f"Note: target: {table.names[t[0]]!r}, the last column; --target NAME trains "
                                  "another")
    return config, data, [n for n in (chosen, note, clipped) if n] + data.notes


def read_share(source, comm=None, delimiter=None):
    """(Table, Part): the table, or with several ranks this rank's share of its rows (a file's share read alone)."""
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if comm is None or comm.size == 1:
        table = read_table(path, delimiter=delimiter) if path else as_table(source)
        return table, Part(0, table.rows)
    if path:
        total = count_rows(path, delimiter)
        lo, hi = shard_range(total, comm.size, comm.rank)
        return read_table(path, rows=(lo, hi), delimiter=delimiter), Part(lo, total, comm)
    whole = as_table(source)
    lo, hi = shard_range(whole.rows, comm.size, comm.rank)
    share = Table(whole.names, [c[lo:hi] for c in whole.columns], whole.path, files=[(whole.path, -lo)],
                  named=whole.named)
    return share, Part(lo, whole.rows, comm)


def fit_to_rows(config, data, given):
    """(config, note or None) with what depends on the training rows n: a batch clipped to them (clip_batch),
    and where not given, the L2 penalty min(DECAY_MAX, DECAY_PRIOR / n) and early stopping's patience,
    PATIENCE_STEPS steps and at least PATIENCE_EPOCHS epochs (none without validation rows)."""
    config, clipped = clip_batch(config, data.n_train, "batch_size" in given)
    fitted = {}
    if "weight_decay" not in given:
        fitted["weight_decay"] = min(DECAY_MAX, DECAY_PRIOR / data.n_train)
    if "early_stop" not in given:
        steps = math.ceil(data.n_train / (config.batch_size or data.n_train))
        fitted["early_stop"] = max(PATIENCE_EPOCHS, math.ceil(PATIENCE_STEPS / steps)) if data.n_val else None
    return replace(config, **fitted), clipped


def clip_batch(config, n_train, given=True):
    """(config, note or None): a batch larger than the training rows becomes all of them, as scikit-learn's
    min(batch_size, rows); the note says so when the batch size was given."""
    if config.batch_size is None or config.batch_size <= n_train:
        return config, None
    note = (f"Note: --batch-size {config.batch_size} is more than the {n_train} training rows: one batch of {n_train} "
            "per epoch") if given else None
    return replace(config, batch_size=n_train), note

"""Using a saved model: its columns taken from a table by name and prepared as in training, predictions
(values, or classes and their probabilities), their scores, and the predictions written as CSV."""

import csv
import io
import os

import numpy as np

from gpunet.data import cell_notes, class_labels, missing_targets, one_hot, target_values, warn
from gpunet.errors import DataError
from gpunet.losses import softmax
from gpunet.model import Network
from gpunet.prepare import is_number
from gpunet.tabular import column_indices

CHUNK = 65536  # rows per forward pass: bounds the workspace for large files


def predict(model, data, backend="auto", proba=False, target=None, by_position=False, device=None, delimiter=None):
    """A saved model's predictions for a table.

    Args:
        model: a SavedModel (gpunet.checkpoint.load) or the path of a model file.
        data: a path (CSV, Parquet, Feather, .npy, .npz, a folder or glob), a gpunet.tabular.Table, a pandas
            DataFrame or a 2-D array; its input columns are taken by name (an array's by position) and
            prepared as in training (missing cells filled, text one-hot).
        backend: "cpu", "cuda", "auto", or a resolved gpunet.backend.Backend.
        proba: a classifier's class probabilities (rows, classes) instead of its labels.
        target, by_position, device, delimiter: as `gpunet predict`'s --target, --by-position, --device and
            --delimiter.

    Returns:
        A regressor's predictions (rows, targets) in the targets' own units; a classifier's labels (rows,),
        as they were written in the training table, or with `proba` its probabilities.
    """
    from gpunet import backend as backends
    from gpunet import checkpoint
    from gpunet.tabular import as_table, read_table

    model = model if isinstance(model, checkpoint.SavedModel) else checkpoint.load(model)
    table = read_table(os.fspath(data), delimiter=delimiter) if isinstance(data, (str, os.PathLike)) else as_table(data)
    x, _, notes = columns(model, table, with_targets=False, target=target, by_position=by_position)
    warn(notes)
    b = backend if isinstance(backend, backends.Backend) else backends.resolve(backend, device or 0)
    y = outputs(model, x, b)
    return y if model.classes is None or proba else labels(model, y)


def columns(model, table, with_targets, target=None, by_position=False):
    """(inputs, targets or None, notes) from `table`: the inputs prepared as in training (before
    standardisation); the targets in original units, or a classifier's labels.

    A table with column names (not an array's) has its columns taken by name: every input column the model
    takes must be there; others are listed in a note and ignored. `by_position`, or a table without names,
    takes the inputs (then the targets, for `with_targets`) in the training order. `target` (as train's
    --target) names the target columns when the file's names differ from the model's. Rows whose target is
    missing are dropped, with a note.

    Raises:
        DataError: an input column missing (naming it), a column count that does not fit, a bad cell.
    """
    names = model.prep.names
    t = _targets(model, table, target, with_targets, by_position)
    if table.named and not by_position:
        inputs = _by_name(model, table, names, t)
    else:
        inputs = _by_position(model, table, names, t)
    notes, rows = _extra_columns(model, table, inputs, t), None
    if with_targets:
        missing = missing_targets(table, t)
        rows = np.flatnonzero(~missing)
        if missing.any():
            notes.append(f"Note: {table.path}: left out {int(missing.sum())} rows whose target is missing")
    x, filled, unseen = model.prep.transform(table, inputs, rows)
    notes += cell_notes(table.path, filled, unseen, how="as in training")
    if not with_targets:
        return x, None, notes
    y = class_labels(table.columns[t[0]][rows]) if model.classes is not None else target_values(table, t, rows)
    return x, y, notes


def _targets(model, table, target, with_targets, by_position):
    """The target columns' indices: --target's, the model's target names, or (by position) the last ones."""
    n = len(model.target_names)
    if target:
        t = column_indices(table, target, "--target")
        if len(t) != n:
            raise DataError(f"{table.path}: --target names {len(t)} columns; the model has {n} "
                            f"({', '.join(model.target_names)})")
        return t
    if not with_targets:
        return []
    if table.named and not by_position:
        missing = [name for name in model.target_names if name not in table.names]
        if missing:
            raise DataError(f"{table.path}: no target column {missing[0]!r}; name the file's with --target")
        return [table.names.index(name) for name in model.target_names]
    return list(range(len(table.names) - n, len(table.names)))


def _by_name(model, table, names, t):
    """The input columns' indices, found by name."""
    missing = [n for n in names if n not in table.names or table.names.index(n) in t]
    if missing:
        listed = ", ".join(repr(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{table.path}: no column {listed}, which the model takes as input (its inputs: "
                        f"{', '.join(names)}); give the columns those names, or --by-position")
    return [table.names.index(n) for n in names]


def _by_position(model, table, names, t):
    """The input columns' indices in the training order: every column that is not a target."""
    rest = [i for i in range(len(table.names)) if i not in t]
    if len(rest) != len(names):
        need = f"{len(names)} inputs" + (f" and {len(t)} targets" if t else "")
        raise DataError(f"{table.path}: has {len(rest) + len(t)} columns; matched by position, the model needs "
                        f"{need} ({', '.join(names + [model.target_names[k] for k in range(len(t))])})")
    for c, j in zip(model.prep.columns, rest):  # numbers where the model takes text: not the same columns
        if c.kind == "category" and table.columns[j].dtype.kind in "iuf" and not all(map(_number, c.categories)):
            raise DataError(f"{table.path}: column {j + 1} holds numbers, but the model takes text there (column "
                            f"{c.name!r}): give a table with the model's column names (CSV, Parquet, a DataFrame)")
    return rest


def _number(text):
    """Whether a category is a number written as text ("" too: the missing cells' category)."""
    return not text or is_number(text)


def _extra_columns(model, table, inputs, t):
    """A note listing the columns that are neither inputs, targets nor kept, when there are some."""
    used = set(inputs) | set(t) | {i for i, n in enumerate(table.names) if n in model.prep.keep}
    extra = [n for i, n in enumerate(table.names) if i not in used]
    if not extra or not table.named:
        return []
    listed = ", ".join(extra[:10]) + (", ..." if len(extra) > 10 else "")
    return [f"Note: {table.path}: ignored {len(extra)} columns the model does not take ({listed})"]


def kept_columns(model, table):
    """(names, columns) of the model's --keep columns that the table has, for predict's output."""
    found = [n for n in model.prep.keep if n in table.names]
    return found, [table.columns[table.names.index(n)] for n in found]


def outputs(model, x, backend):
    """The model's outputs for prepared inputs `x` (rows, features) as a NumPy array (rows, d_out): a
    regressor's predictions in original units, a classifier's class probabilities (model.classes' order)."""
    net = Network(backend, model.sizes, model.params, model.dtype, model.activation, model.loss)
    xs = model.x_scaler.transform(x)
    out = np.empty((len(x), model.sizes[-1]))
    workspaces = {}  # one per chunk size: CHUNK, and the last chunk's
    for i in range(0, len(x), CHUNK):
        chunk = xs[i : i + CHUNK]
        if len(chunk) not in workspaces:
            workspaces[len(chunk)] = net.workspace(len(chunk))
        ws = workspaces[len(chunk)]
        ws.load(chunk)
        out[i : i + len(chunk)] = backend.to_numpy(ws.forward()).T
    return softmax(out) if model.classes is not None else model.y_scaler.inverse(out)


def labels(model, proba):
    """A classifier's predicted label per row: the class of largest probability."""
    return model.classes[np.argmax(proba, axis=1)]


def scores(model, y_true, y_pred):
    """The training loss on the standardised targets, and MSE and R-squared per target in original units."""
    if model.classes is not None:
        return class_scores(model, y_true, y_pred)
    ys_true, ys_pred = model.y_scaler.transform(y_true), model.y_scaler.transform(y_pred)
    sse = float(np.sum((ys_pred - ys_true) ** 2))
    loss = sse if model.loss == "sse" else sse / ys_true.size
    per_target = []
    for j, name in enumerate(model.target_names):
        err = float(np.sum((y_pred[:, j] - y_true[:, j]) ** 2))
        total = float(np.sum((y_true[:, j] - y_true[:, j].mean()) ** 2))
        per_target.append({"target": name, "mse": err / len(y_true), "r2": 1 - err / total if total > 0 else float("nan")})
    return {"rows": len(y_true), "loss": loss, "loss_name": model.loss, "targets": per_target}


def class_scores(model, labels_true, proba):
    """Accuracy, log-loss, per-class precision, recall and F1, and the confusion matrix.

    A row whose label is not among the model's classes counts as misclassified (`unknown_labels` says
    how many); the log-loss is over the other rows.
    """
    onehot, unknown = one_hot(labels_true, model.classes)
    known = onehot.any(axis=1)
    pred = np.argmax(proba, axis=1)
    true = np.argmax(onehot, axis=1)
    k = len(model.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true[known], pred[known]), 1)
    hits = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    per_class = []
    for c, label in enumerate(model.classes):
        precision = hits[c] / predicted[c] if predicted[c] else 0.0
        recall = hits[c] / actual[c] if actual[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"class": label.item(), "precision": float(precision), "recall": float(recall),
                          "f1": float(f1), "support": int(actual[c])})
    tiny = np.finfo(np.float64).tiny  # a probability that rounded to 0 gives a large, finite log-loss
    log_loss = float(-np.mean(np.log(np.maximum(proba[known, true[known]], tiny)))) if known.any() else float("nan")
    return {"rows": len(labels_true), "accuracy": float(hits.sum() / len(labels_true)), "log_loss": log_loss,
            "unknown_labels": unknown, "classes": [c.item() for c in model.classes], "per_class": per_class,
            "confusion": confusion.tolist()}


def prediction_columns(model, y, proba=False):
    """(header, columns) to write: a regressor's targets; a classifier's label, and with `proba` one
    probability column per class, named by the class."""
    if model.classes is None:
        return list(model.target_names), [y[:, j] for j in range(y.shape[1])]
    header, cols = list(model.target_names), [labels(model, y)]
    if proba:
        header += [str(c) for c in model.classes]
        cols += [y[:, j] for j in range(y.shape[1])]
    return header, cols


def write_csv(f, header, cols, dtype=np.float64):
    """Write a header and columns to binary file `f`: numbers in the shortest form that reads back as the
    same `dtype` value (a float32 model's predictions in at most 9 digits), labels as they are.

    pyarrow writes the rows (over ten times NumPy's savetxt); labels that need quoting (a comma, a
    quote, a line break) send the rows through the csv module instead.
    """
    cols = [c.astype(dtype) if c.dtype.kind == "f" else c for c in cols]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    quoted = any(c.dtype.kind not in "fiu" and any(ch in str(v) for v in np.unique(c) for ch in ',"\r\n')
                 for c in cols)
    if quoted:
        writer.writerows(zip(*cols))
    f.write(text.getvalue().encode())
    if not quoted:
        import pyarrow as pa  # here: only predict writes CSV
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.table({str(i): c for i, c in enumerate(cols)}), f,
                        pacsv.WriteOptions(include_header=False, quoting_style="none"))

"""Using a saved model: its columns picked from a table, predictions (values, or classes and their
probabilities), their scores, and the predictions written as CSV."""

import csv
import io

import numpy as np

from gpunet.data import one_hot
from gpunet.errors import DataError
from gpunet.losses import softmax
from gpunet.model import Network
from gpunet.tabular import column_indices

CHUNK = 65536  # rows per forward pass: bounds the workspace for large files


def columns(model, table, with_targets, target=None):
    """(inputs, targets or None) from `table`: inputs in original units; targets in original units, or a
    classifier's labels.

    `target` (as train's --target) names the target columns, and the inputs are then the other
    columns. Columns are matched by name when the table has every name the model needs; otherwise by
    position, when the table has exactly the inputs (then the targets, for `with_targets`) in the
    training order.
    """
    n_targets = len(model.target_names)
    if target:
        t = column_indices(table, target)
        if len(t) != n_targets:
            raise DataError(f"{table.path}: --target names {len(t)} columns; the model has {n_targets} "
                            f"({', '.join(model.target_names)})")
        rest = [i for i in range(len(table.names)) if i not in t]
        inputs = _match(model, table, model.input_names, rest)
    else:
        names = model.input_names + (model.target_names if with_targets else [])
        picked = _match(model, table, names, range(len(table.names)))
        inputs, t = picked[: len(model.input_names)], picked[len(model.input_names) :]
    x = table.numeric(inputs)
    if not with_targets:
        return x, None
    return x, (table.labels(t[0]) if model.classes is not None else table.numeric(t))


def _match(model, table, names, candidates):
    """Indices of `names` among the `candidates` columns: by name, else by position when the count is exact."""
    by_name = {table.names[i]: i for i in candidates}
    if all(n in by_name for n in names):
        return [by_name[n] for n in names]
    if len(candidates) == len(names):
        return list(candidates)
    missing = [n for n in names if n not in by_name]
    need = f"{len(model.input_names)} inputs" + (f" and {len(names) - len(model.input_names)} targets"
                                                 if len(names) > len(model.input_names) else "")
    raise DataError(
        f"{table.path}: has {len(candidates)} columns to match, but the model needs {need} "
        f"({', '.join(names)}); missing by name: {', '.join(missing)}"
    )


def predict(model, x, backend):
    """The model's outputs for inputs `x` (rows, d_in) as a NumPy array (rows, d_out): a regressor's
    predictions in original units, a classifier's class probabilities (columns in model.classes' order)."""
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

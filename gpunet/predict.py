"""Using a saved model: its inputs picked from a table, predictions in the targets' units, and their scores."""

import numpy as np

from gpunet.errors import DataError
from gpunet.model import Network

CHUNK = 65536  # rows per forward pass: bounds the workspace for large files


def columns(model, table, with_targets):
    """(inputs, targets or None) from `table`, in original units.

    Columns are matched by name when the table has every name the model needs; otherwise by position,
    when the table has exactly the inputs (then the targets, for `with_targets`) in the training order.
    """
    names = model.input_names + (model.target_names if with_targets else [])
    if all(n in table.names for n in names):
        picked = table.values[:, [table.names.index(n) for n in names]]
    elif table.values.shape[1] == len(names):
        picked = table.values
    else:
        missing = [n for n in names if n not in table.names]
        need = f"{len(model.input_names)} inputs" + (f" and {len(model.target_names)} targets" if with_targets else "")
        raise DataError(
            f"{table.path}: has {table.values.shape[1]} columns, but the model needs {need} "
            f"({', '.join(names)}); missing by name: {', '.join(missing)}"
        )
    d_in = len(model.input_names)
    return picked[:, :d_in], (picked[:, d_in:] if with_targets else None)


def predict(model, x, backend):
    """The model's predictions for inputs `x` (rows, d_in) in original units, as a NumPy array (rows, d_out)."""
    net = Network(backend, model.sizes, model.params, model.dtype)
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
    return model.y_scaler.inverse(out)


def scores(model, y_true, y_pred):
    """The training loss on the standardised targets, and MSE and R-squared per target in original units."""
    ys_true, ys_pred = model.y_scaler.transform(y_true), model.y_scaler.transform(y_pred)
    sse = float(np.sum((ys_pred - ys_true) ** 2))
    loss = sse if model.config.get("loss", "sse") == "sse" else sse / ys_true.size
    per_target = []
    for j, name in enumerate(model.target_names):
        err = float(np.sum((y_pred[:, j] - y_true[:, j]) ** 2))
        total = float(np.sum((y_true[:, j] - y_true[:, j].mean()) ** 2))
        per_target.append({"target": name, "mse": err / len(y_true), "r2": 1 - err / total if total > 0 else float("nan")})
    return {"rows": len(y_true), "loss": loss, "loss_name": model.config.get("loss", "sse"), "targets": per_target}

"""Saving and loading trained models: one .npz file, written atomically, read without pickle."""

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from gpunet import __version__
from gpunet.errors import ModelFileError
from gpunet.files import atomic_write
from gpunet.model import Layout
from gpunet.prepare import Preparation
from gpunet.tabular import Scaler

# bump when a reader of the old format could not read the new one. 2: the activation (in config) may be
# other than ReLU, and a classifier's classes. 3: the input columns' preparation (fill values, categories,
# columns kept for predict's output). Files of formats 1 (ReLU regressors) and 2 still load.
FORMAT = 3
KEYS = ("gpunet_format", "gpunet_version", "sizes", "params", "x_mean", "x_scale", "y_mean", "y_scale",
        "input_names", "target_names", "config")


@dataclass
class SavedModel:
    """A trained network with what it needs to be used on new data.

    Attributes:
        sizes: layer widths [d_in, *hidden, d_out].
        params: flat parameters (NumPy, in the dtype it was trained in).
        x_scaler, y_scaler: the standardisation of inputs and targets, from the training rows.
        input_names, target_names: column names (a classifier: its one label column).
        config: the training configuration, as a dict.
        version: the gpunet version that wrote it.
        classes: a classifier's sorted class labels (numbers or text), one per output; None for regression.
        prep: how the input columns become the network's inputs (gpunet.prepare); None: numbers as they are.
        metrics: the run's final figures (epochs run, losses, accuracies, the epoch kept), from format 3.
        file_format: the model format it was read from (FORMAT for a model made here).
    """

    sizes: list
    params: np.ndarray
    x_scaler: Scaler
    y_scaler: Scaler
    input_names: list
    target_names: list
    config: dict
    version: str = __version__
    classes: np.ndarray | None = None
    prep: Preparation | None = None
    metrics: dict = field(default_factory=dict)
    file_format: int = FORMAT

    def __post_init__(self):
        if self.prep is None:
            self.prep = Preparation.plain(self.input_names)

    @property
    def dtype(self):
        return self.params.dtype

    @property
    def loss(self):
        return self.config.get("loss", "sse")

    @property
    def activation(self):
        return self.config.get("activation", "relu")


def save(path, model):
    """Write `model` to `path` (.npz) atomically."""

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(
                f,
                gpunet_format=np.array(FORMAT),
                gpunet_version=np.array(model.version),
                sizes=np.array(model.sizes, dtype=np.int64),
                params=model.params,
                x_mean=model.x_scaler.mean, x_scale=model.x_scaler.scale,
                y_mean=model.y_scaler.mean, y_scale=model.y_scaler.scale,
                input_names=np.array(model.input_names, dtype=str),
                target_names=np.array(model.target_names, dtype=str),
                config=np.array(json.dumps(model.config)),
                prep=np.array(json.dumps(model.prep.to_dict())),
                metrics=np.array(json.dumps(model.metrics)),
                **({} if model.classes is None else {"classes": np.asarray(model.classes)}),
            )

    atomic_write(path, write, suffix=".npz")


def load(path):
    """Read a model written by `save`.

    Raises:
        ModelFileError: missing, not a gpunet model, truncated or corrupt, or of a newer format.
    """
    fmt, data = _read(path)
    sizes, classes = [int(s) for s in data["sizes"]], data.get("classes")
    if len(sizes) < 2 or min(sizes) < 1 or data["params"].shape != (Layout(sizes).size,):
        raise ModelFileError(f"{path}: corrupt model file (parameters do not match the layer sizes {sizes})")
    if classes is not None and classes.shape != (sizes[-1],):
        raise ModelFileError(f"{path}: corrupt model file ({classes.size} classes for {sizes[-1]} outputs)")
    if not np.all(np.isfinite(data["params"])):
        raise ModelFileError(f"{path}: corrupt model file (non-finite parameters)")
    return SavedModel(
        sizes=sizes,
        params=data["params"],
        x_scaler=Scaler(data["x_mean"], data["x_scale"]),
        y_scaler=Scaler(data["y_mean"], data["y_scale"]),
        input_names=[str(n) for n in data["input_names"]],
        target_names=[str(n) for n in data["target_names"]],
        config=json.loads(str(data["config"])),
        version=str(data["gpunet_version"]),
        classes=classes,
        prep=_preparation(path, data["prep"], sizes[0]) if fmt >= 3 else None,
        metrics=json.loads(str(data["metrics"])) if fmt >= 3 else {},
        file_format=fmt,
    )


def _read(path):
    """(format, {key: array}) of the model file at `path`: KEYS, and classes, prep and metrics where written."""
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    not_a_model = ModelFileError(f"{path}: not a gpunet model (train one with gpunet train --save)")
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if "pickle" in str(e) and not str(path).lower().endswith(".npz"):  # a CSV, say: NumPy's advice is not for it
            raise not_a_model from None
        raise ModelFileError(f"{path}: truncated or corrupt model file ({type(e).__name__}: {e})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):  # a plain .npy array
        raise not_a_model
    try:
        with f:
            if "gpunet_format" not in f:
                raise not_a_model
            fmt = int(f["gpunet_format"])
            if fmt > FORMAT:
                raise ModelFileError(
                    f"{path}: written by gpunet {f['gpunet_version']} in model format {fmt}; this gpunet "
                    f"({__version__}) reads format {FORMAT} and older: upgrade gpunet"
                )
            missing = [k for k in KEYS + (("prep", "metrics") if fmt >= 3 else ()) if k not in f]
            if missing:
                raise ModelFileError(f"{path}: not a complete gpunet model (missing {', '.join(missing)})")
            return fmt, {k: f[k] for k in f if k in KEYS + ("classes", "prep", "metrics")}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        if "pickle" in str(e):  # NumPy's advice is not for a model file
            raise not_a_model from None
        raise ModelFileError(f"{path}: truncated or corrupt model file ({type(e).__name__}: {e})") from None


def _preparation(path, saved, d_in):
    """The Preparation saved in a model file (JSON), checked against the network's input width."""
    try:
        prep = Preparation.from_dict(json.loads(str(saved)))
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{path}: corrupt model file (input preparation: {e})") from None
    if len(prep.features) != d_in:
        raise ModelFileError(f"{path}: corrupt model file ({len(prep.features)} prepared inputs for {d_in})")
    return prep


def describe(path):
    """What the model file at `path` holds, as a JSON-ready dict (for `gpunet info`)."""
    m = load(path)
    c = m.config
    training = {k: c[k] for k in ("epochs", "lr", "optimizer", "batch_size", "weight_decay", "early_stop", "init",
                                  "val_split", "seed", "dtype", "defaults") if k in c}
    inputs = [{"name": col.name, "kind": col.kind,
               **({"fill": col.fill} if col.kind == "number" else {"categories": col.categories})}
              for col in m.prep.columns]
    return {"file": path, "format": m.file_format, "gpunet_version": m.version, "layers": m.sizes,
            "activation": m.activation, "loss": m.loss,
            "task": "classification" if m.classes is not None else "regression",
            "classes": None if m.classes is None else [c.item() for c in m.classes],
            "targets": m.target_names, "inputs": inputs, "keep": m.prep.keep, "training": training,
            "metrics": m.metrics}

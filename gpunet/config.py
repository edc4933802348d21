"""What a run trains: the `Config`, the tutorial's experiment by default, and its validation."""

import math
from dataclasses import dataclass

from gpunet.activations import ACTIVATIONS
from gpunet.data import DEFAULT_SEED
from gpunet.errors import ConfigError
from gpunet.losses import LOSSES
from gpunet.model import INITS
from gpunet.optim import OPTIMIZERS

DTYPES = ("float32", "float64")
HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid")  # the command line's; identity is for the scikit-learn API


@dataclass
class Config:
    """What to train: the tutorial's experiment by default.

    With a data file, n, d_in and d_out come from the file (n: all its rows, validation included;
    with loss="ce", d_out is the number of classes).
    """

    n: int = 100
    d_in: int = 3
    hidden: tuple = (32,)
    d_out: int = 1
    epochs: int = 200
    lr: float = 1e-4
    seed: int = DEFAULT_SEED
    dtype: str = "float32"
    loss: str = "sse"
    init: str = "normal"
    log_every: int = 10
    batch_size: int | None = None  # None: the whole set, as in the tutorial
    optimizer: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    val_split: float = 0.0
    activation: str = "relu"
    weight_decay: float = 0.0  # L in the penalty L / 2 * sum(w^2) over the weights (not the biases)
    early_stop: int | None = None  # stop after this many log points without a better validation loss
    defaults: str = "tutorial"  # which defaults the options not given took: "tutorial" or "table" (TABLE_DEFAULTS)

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        self.validate()

    @property
    def sizes(self):
        return [self.d_in, *self.hidden, self.d_out]

    def validate(self):
        """Raise ConfigError naming the option when a value cannot work."""
        for name in ("n", "d_in", "d_out", "epochs", "log_every"):
            _positive_int(self, name)
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(
                "--hidden must be one or more positive integers separated by commas, got "
                + (",".join(map(str, self.hidden)) if self.hidden else "nothing")
            )
        if not _finite(self.lr) or self.lr <= 0:
            raise ConfigError(f"--lr must be a finite number greater than 0, got {self.lr!r}")
        choices = (("dtype", DTYPES), ("loss", LOSSES), ("init", INITS), ("optimizer", OPTIMIZERS),
                   ("activation", tuple(ACTIVATIONS)))
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"unknown --{name} {value!r}: choose one of {', '.join(allowed)}")
        if self.batch_size is not None:
            _positive_int(self, "batch_size")
        for name in ("momentum", "beta1", "beta2"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value < 1:
                raise ConfigError(f"--{name} must be at least 0 and below 1, got {value!r}")
        if not _finite(self.eps) or self.eps <= 0:
            raise ConfigError(f"--eps must be a finite number greater than 0, got {self.eps!r}")
        if not _finite(self.val_split) or not 0 <= self.val_split < 1:
            raise ConfigError(f"--val-split must be at least 0 and below 1, got {self.val_split!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be a finite number of at least 0, got {self.weight_decay!r}")
        if self.early_stop is not None:
            _positive_int(self, "early_stop")
        if self.defaults not in ("tutorial", "table"):
            raise ConfigError(f"defaults must be 'tutorial' or 'table', got {self.defaults!r}")


# A table's defaults, measured in bench/table_bench.py on six public tables: Adam at 1e-3 in batches of
# min(200, rows), 100 hidden units, He (ReLU) or Glorot (tanh, sigmoid) start, the validation loss looked at
# every epoch and the best epoch kept. Two depend on the table's training rows n (table_run.fit_to_rows):
# the L2 penalty, min(0.1, 30 / n), a prior whose weight does not grow with the data (a constant 1e-4
# overfits small noisy tables, 0.1 underfits digits), and the patience, about 50 steps and at least 10 epochs
# (10 epochs of one step each stopped iris at a plateau).
TABLE_DEFAULTS = dict(hidden=(100,), epochs=1000, lr=1e-3, optimizer="adam", batch_size=200, log_every=1,
                      val_split=0.2)
DECAY_PRIOR, DECAY_MAX, PATIENCE_STEPS, PATIENCE_EPOCHS = 30.0, 0.1, 50, 10


def table_config(given, classify):
    """The Config of a run on a table: the options `given`, the others from TABLE_DEFAULTS (the loss by the
    task: ce for classes, mse for values); those that depend on the rows are table_run.fit_to_rows'."""
    d = {**TABLE_DEFAULTS, "loss": "ce" if classify else "mse", "defaults": "table"}
    d["init"] = "he" if given.get("activation", "relu") == "relu" else "glorot"
    return Config(**{**d, **given})


def _positive_int(config, name):
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)

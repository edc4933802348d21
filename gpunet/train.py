"""The training loop: epochs on the device, losses kept there until a log point, one result at the end."""

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from gpunet import backend as backends
from gpunet.data import DEFAULT_SEED, check_random_state, synthetic
from gpunet.errors import ConfigError, Diverged
from gpunet.model import INITS, LOSSES, Network, init_params, loss_factor

DTYPES = ("float32", "float64")


@dataclass
class Config:
    """What to train: the tutorial's experiment by default."""

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

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        self.validate()

    @property
    def sizes(self):
        return [self.d_in, *self.hidden, self.d_out]

    def validate(self):
        """Raise ConfigError naming the option when a value cannot work."""
        for name in ("n", "d_in", "d_out", "epochs", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(
                f"--hidden must be one or more positive integers separated by commas, got {self.hidden!r}"
            )
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"--lr must be a finite number greater than 0, got {self.lr!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown --loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.init not in INITS:
            raise ConfigError(f"unknown --init {self.init!r}: choose one of {', '.join(INITS)}")


@dataclass
class Result:
    """What a training run gives back; every array is a NumPy array on the host.

    Attributes:
        config: the Config that was trained.
        backend, device: where it ran.
        losses: [(epoch, loss)] at the log points (every config.log_every epochs); each is the loss
            before that epoch's update, as the tutorial prints it.
        final_loss: the loss of the last epoch, before its update.
        params: [(w, b)] per layer, w of shape (fan_in, fan_out), b of shape (fan_out,).
        train_seconds: the training loop only, the device synchronized; data and transfer excluded.
    """

    config: Config
    backend: str
    device: str
    losses: list
    final_loss: float
    params: list
    train_seconds: float
    versions: dict = field(default_factory=dict)

    @property
    def seconds_per_epoch(self):
        return self.train_seconds / self.config.epochs

    def to_dict(self):
        """A JSON-ready summary (without the parameters)."""
        return {
            "config": asdict(self.config),
            "backend": self.backend,
            "device": self.device,
            "versions": self.versions,
            "losses": [[e, l] for e, l in self.losses],
            "final_loss": self.final_loss,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.seconds_per_epoch,
        }


def prepare(config, backend):
    """Draw the data and initial parameters on the host and build the network on `backend`."""
    rng = check_random_state(config.seed)
    x, y = synthetic(config.n, config.d_in, config.d_out, rng)
    params = init_params(config.sizes, rng, config.init)
    return Network(backend, config.sizes, params, x, y, dtype=config.dtype)


def fit(net, config, on_log=None):
    """Run config.epochs full-batch steps on `net`; return (losses at the log points, final loss, seconds).

    The loss is reduced only where it is reported: at each log point and at the last epoch. There it
    is copied to the host (the only device sync in the loop), checked to be finite, and handed to
    `on_log(epoch, loss)` at the log points.

    Raises:
        Diverged: a loss was not finite at a log point or at the end.
    """
    b, xp = net.backend, net.xp
    k = loss_factor(config.loss, config.n, config.d_out)
    scale, every, last = config.lr * k, config.log_every, config.epochs
    sse = xp.zeros((1, 1), net.dtype)
    losses, loss = [], math.nan

    b.synchronize()
    start = time.perf_counter()
    with np.errstate(all="ignore"):  # overflow shows as a non-finite loss at the next log point
        for t in range(1, last + 1):
            if t % every and t != last:
                net.epoch(scale)
                continue
            net.epoch(scale, sse)
            loss = k * float(b.to_numpy(sse)[0, 0])
            if not math.isfinite(loss):
                raise Diverged(t, loss, losses)
            if t % every == 0:
                losses.append((t, loss))
                if on_log is not None:
                    on_log(t, loss)
    b.synchronize()
    return losses, loss, time.perf_counter() - start


def run(net, config, on_log=None):
    """Train `net` (from prepare) for config.epochs and return a Result."""
    b = net.backend
    losses, final_loss, seconds = fit(net, config, on_log)
    params = [(w.copy(), bias.copy()) for w, bias in net.layout.unpack(b.to_numpy(net.params))]
    return Result(config, b.name, b.device, losses, final_loss, params, seconds, b.versions())


def train(config=None, backend="auto", device=0, on_log=None, **options):
    """Train a network and return a Result.

    Args:
        config: a Config; or leave it None and pass its fields as keyword options
            (e.g. `train(hidden=(64, 64), epochs=500)`).
        backend: "cpu", "cuda", "auto", or a resolved gpunet.backend.Backend.
        device: the CUDA device index.
        on_log: called as on_log(epoch, loss) at each log point.

    Raises:
        gpunet.errors.ConfigError, BackendUnavailable, Diverged.
    """
    if config is None:
        config = Config(**options)
    elif options:
        raise TypeError("pass either a Config or keyword options, not both")
    if not isinstance(backend, backends.Backend):
        backend = backends.resolve(backend, device)
    return run(prepare(config, backend), config, on_log)

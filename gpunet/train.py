"""The training loop: epochs on the device, the loss reduced and copied to the host only where it is reported."""

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from gpunet import __version__
from gpunet import backend as backends
from gpunet.checkpoint import SavedModel
from gpunet.data import DEFAULT_SEED, check_random_state, synthetic_dataset
from gpunet.errors import ConfigError, DeviceMemoryError, Diverged
from gpunet.model import INITS, LOSSES, Layout, Network, init_params, loss_factor
from gpunet.optim import OPTIMIZERS, make_optimizer

DTYPES = ("float32", "float64")


@dataclass
class Config:
    """What to train: the tutorial's experiment by default.

    With a data file, n, d_in and d_out come from the file (n: all its rows, validation included).
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
        if not _finite(self.lr) or self.lr <= 0:
            raise ConfigError(f"--lr must be a finite number greater than 0, got {self.lr!r}")
        for name, choices in (("dtype", DTYPES), ("loss", LOSSES), ("init", INITS), ("optimizer", OPTIMIZERS)):
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"unknown --{name} {value!r}: choose one of {', '.join(choices)}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size is not None and self.batch_size > self.n:
            raise ConfigError(f"--batch-size {self.batch_size} is larger than the {self.n} training rows")
        for name in ("momentum", "beta1", "beta2"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value < 1:
                raise ConfigError(f"--{name} must be at least 0 and below 1, got {value!r}")
        if not _finite(self.eps) or self.eps <= 0:
            raise ConfigError(f"--eps must be a finite number greater than 0, got {self.eps!r}")
        if not _finite(self.val_split) or not 0 <= self.val_split < 1:
            raise ConfigError(f"--val-split must be at least 0 and below 1, got {self.val_split!r}")


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


@dataclass
class Result:
    """What a training run gives back; every array is a NumPy array on the host.

    Attributes:
        config: the Config that was trained.
        backend, device: where it ran.
        losses: [(epoch, loss)] at the log points (every config.log_every epochs); each is the loss
            before that epoch's update (with mini-batches: summed over the epoch's batches).
        val_losses: [(epoch, loss)] on the validation rows at the log points (empty without them).
        final_loss: the training loss of the last epoch run.
        flat_params: the final parameters as one flat array [w1 | b1 | w2 | b2 | ...] (None when the
            run was asked not to copy them back).
        train_seconds: the training loop only, the device synchronized; data and transfer excluded.
        epochs_run: config.epochs, or fewer when interrupted.
        interrupted: stopped early by the `stop` event (Ctrl-C on the command line).
        model: a SavedModel to save or predict with.
    """

    config: Config
    backend: str
    device: str
    losses: list
    final_loss: float
    flat_params: np.ndarray | None
    train_seconds: float
    versions: dict = field(default_factory=dict)
    val_losses: list = field(default_factory=list)
    epochs_run: int = 0
    interrupted: bool = False
    model: SavedModel | None = field(default=None, repr=False)

    @property
    def params(self):
        """[(w, b)] per layer: w of shape (fan_in, fan_out), b of shape (fan_out,); views of flat_params."""
        return Layout(self.config.sizes).unpack(self.flat_params)

    @property
    def seconds_per_epoch(self):
        return self.train_seconds / max(self.epochs_run, 1)

    def to_dict(self):
        """A JSON-ready summary (without the parameters)."""
        out = {
            "config": asdict(self.config),
            "backend": self.backend,
            "device": self.device,
            "versions": self.versions,
            "losses": [[e, l] for e, l in self.losses],
            "final_loss": self.final_loss,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.seconds_per_epoch,
            "epochs_run": self.epochs_run,
        }
        if self.val_losses:
            out["val_losses"] = [[e, l] for e, l in self.val_losses]
        if self.interrupted:
            out["interrupted"] = True
        return out


def initial_draws(config, data=None):
    """(data, flat initial parameters) for `config`, drawn on the host from its seed.

    Without `data`, the tutorial's synthetic data are drawn first, then the parameters, from one
    stream; with `data`, the parameters are the stream's first draws.
    """
    rng = check_random_state(config.seed)
    if data is None:
        data = synthetic_dataset(config.n, config.d_in, config.d_out, rng, config.val_split, config.seed)
    return data, init_params(config.sizes, rng, config.init)


class Trainer:
    """One configuration on one backend: data and buffers placed once, then `run` (again after `reset`).

    Args:
        config: a Config.
        backend: a resolved gpunet.backend.Backend.
        data: a gpunet.data.Dataset, or None for the tutorial's synthetic data of config's sizes.
        start: flat initial parameters (host), or None to draw them from the seed.
    """

    def __init__(self, config, backend, data=None, start=None):
        if data is not None:  # the sizes come from the data
            rows = len(data.x) + (0 if data.x_val is None else len(data.x_val))
            config = replace(config, n=rows, d_in=data.x.shape[1], d_out=data.y.shape[1])
        if start is None:
            data, start = initial_draws(config, data)
        if config.batch_size is not None and config.batch_size > len(data.x):
            raise ConfigError(f"--batch-size {config.batch_size} is larger than the {len(data.x)} training rows")
        self.config, self.backend, self.data, self.start = config, backend, data, start
        with self._out_of_memory():
            self._place()

    def _place(self):
        config, b, data = self.config, self.backend, self.data
        self.net = net = Network(b, config.sizes, self.start, config.dtype)
        n, batch = len(data.x), config.batch_size or len(data.x)
        self.full = batch == n
        if self.full:  # the tutorial's full batch: the data lives in the one workspace
            self.workspaces = [net.workspace(n)]
            self.workspaces[0].load(data.x, data.y)
        else:  # mini-batches gather their rows from the data on the device
            self.x_t, self.y_t = b.asarray(data.x.T, config.dtype), b.asarray(data.y.T, config.dtype)
            self.workspaces = [net.workspace(batch)] + ([net.workspace(n % batch)] if n % batch else [])
        # an epoch's batches: (first row, the workspace of its size); only the last may be shorter
        self.batches = [(i, self.workspaces[i + batch > n]) for i in range(0, n, batch)]
        self.val = None
        if data.x_val is not None:
            self.val = net.workspace(len(data.x_val))
            self.val.load(data.x_val, data.y_val)

    def needed_bytes(self):
        """Bytes of the buffers this run allocates on the backend (parameters, gradients, optimizer, data)."""
        item = np.dtype(self.config.dtype).itemsize
        sizes, n = self.config.sizes, len(self.data.x)
        batch = self.config.batch_size or n
        per_row = (sum(sizes[:-1]) + len(sizes) - 1) + 2 * sum(sizes[1:]) + sum(sizes[1:-1]) + sizes[-1]
        state = {"sgd": 2, "momentum": 3, "adam": 5}[self.config.optimizer] * Layout(sizes).size
        rows = batch + (n if batch < n else 0) + (0 if self.data.x_val is None else len(self.data.x_val))
        return item * (state + per_row * rows)

    def buffer_bytes(self):
        """Bytes of the buffers placed on the backend: parameters, gradients, data and workspaces."""
        bufs = [self.net.params, self.net.grads] + ([] if self.full else [self.x_t, self.y_t])
        spaces = self.workspaces + ([] if self.val is None else [self.val])
        return sum(int(b.nbytes) for b in bufs) + sum(w.bytes() for w in spaces)

    @contextlib.contextmanager
    def _out_of_memory(self):
        """Turn CUDA's out-of-memory error into a DeviceMemoryError that says how much was needed."""
        try:
            yield
        except Exception as e:
            if not self.backend.out_of_memory(e):
                raise
            raise DeviceMemoryError(
                f"the GPU ran out of memory: this run needs about {self.needed_bytes() / 2**20:.0f} MiB of "
                "buffers; try a smaller --batch-size (or fewer --hidden units)"
            ) from None

    def reset(self):
        """Put the initial parameters back (to train again from the same start)."""
        self.net.params[...] = self.backend.asarray(self.start)

    def run(self, on_log=None, stop=None, progress=None, copy_params=True):
        """Train config.epochs epochs from the current parameters; return a Result.

        Args:
            on_log: called as on_log(epoch, loss, val_loss or None) at each log point.
            stop: an object with is_set() (a threading.Event): checked after each epoch; when set,
                training ends there and the Result says interrupted.
            progress: called as progress(epoch) after each epoch.
            copy_params: copy the final parameters back to the host into the Result.

        Raises:
            Diverged: a loss was not finite at a log point or at the end.
            DeviceMemoryError: the GPU ran out of memory.
        """
        with self._out_of_memory():
            return self._run(on_log, stop, progress, copy_params)

    def _run(self, on_log, stop, progress, copy_params):
        config, b, xp, net = self.config, self.backend, self.backend.xp, self.net
        n, d_out = len(self.data.x), config.d_out
        opt = make_optimizer(config.optimizer, net, config.lr, config.momentum, config.beta1, config.beta2,
                             config.eps)
        # per batch: (first row, workspace, gradient scale); the loss is k * SSE, k the batch's for mse
        plan = [(i, w, opt.grad_scale * loss_factor(config.loss, w.n, d_out)) for i, w in self.batches]
        k_epoch = loss_factor(config.loss, n, d_out)
        sse = xp.zeros((len(plan), 1), net.dtype)
        val_sse = xp.zeros((1, 1), net.dtype)
        every, last = config.log_every, config.epochs
        losses, val_losses, loss, t = [], [], math.nan, 0
        full = self.full
        if full:
            _, ws, scale = plan[0]
        else:
            shuffle = np.random.default_rng([config.seed, 2])  # the batches' order, the same on every backend

        b.synchronize()
        start = time.perf_counter()
        with np.errstate(all="ignore"):  # overflow shows as a non-finite loss at the next log point
            for t in range(1, last + 1):
                log = not t % every or t == last
                if full:
                    ws.gradient(scale, sse if log else None)
                    opt.step()
                else:
                    rows = b.asarray(shuffle.permutation(n))  # one small copy per epoch
                    for j, (i, w, w_scale) in enumerate(plan):
                        w.gather(self.x_t, self.y_t, rows[i : i + w.n])
                        w.gradient(w_scale, sse[j : j + 1] if log else None)
                        opt.step()
                if log:
                    loss = self._reported(sse, k_epoch, t, losses)
                    if not t % every:
                        val = self._validation(val_sse) if self.val is not None else None
                        losses.append((t, loss))
                        if val is not None:
                            val_losses.append((t, val))
                        if on_log is not None:
                            on_log(t, loss, val)
                if progress is not None:
                    progress(t)
                if stop is not None and stop.is_set():
                    break
            interrupted = t < last
            if interrupted:
                loss = self._reported(self._loss_pass(sse), k_epoch, t, losses)
        b.synchronize()
        seconds = time.perf_counter() - start
        flat = b.to_numpy(net.params).copy() if copy_params else None
        model = None if flat is None else SavedModel(
            config.sizes, flat, self.data.x_scaler, self.data.y_scaler, self.data.input_names,
            self.data.target_names, asdict(config), __version__)
        return Result(config, b.name, b.device, losses, loss, flat, seconds, b.versions(), val_losses, t,
                      interrupted, model)

    def _reported(self, sse, k, t, losses):
        """The epoch's loss on the host (the sync point), checked to be finite."""
        loss = k * float(self.backend.to_numpy(sse).sum())
        if not math.isfinite(loss):
            raise Diverged(t, loss, losses)
        return loss

    def _validation(self, out):
        """The loss on the validation rows (their SSE goes through `out`, a (1, 1) buffer)."""
        self.val.forward()
        self.val.residual(out)
        return loss_factor(self.config.loss, self.val.n, self.config.d_out) * float(self.backend.to_numpy(out)[0, 0])

    def _loss_pass(self, sse):
        """The SSE of the current parameters over the training rows, batch by batch, without an update."""
        for j, (i, w) in enumerate(self.batches):
            if not self.full:
                w.gather(self.x_t, self.y_t, self.backend.asarray(np.arange(i, i + w.n)))
            w.forward()
            w.residual(sse[j : j + 1])
        return sse

def train(config=None, backend="auto", device=0, data=None, on_log=None, stop=None, progress=None, **options):
    """Train a network and return a Result.

    Args:
        config: a Config; or leave it None and pass its fields as keyword options
            (e.g. `train(hidden=(64, 64), epochs=500)`).
        backend: "cpu", "cuda", "auto", or a resolved gpunet.backend.Backend.
        device: the CUDA device index.
        data: a gpunet.data.Dataset (e.g. from gpunet.data.table_dataset); None for synthetic data.
        on_log: called as on_log(epoch, loss, val_loss or None) at each log point.
        stop, progress: see Trainer.run.

    Raises:
        gpunet.errors.ConfigError, BackendUnavailable, Diverged, DeviceMemoryError.
    """
    if config is None:
        config = Config(**options)
    elif options:
        raise TypeError("pass either a Config or keyword options, not both")
    if not isinstance(backend, backends.Backend):
        backend = backends.resolve(backend, device)
    return Trainer(config, backend, data).run(on_log, stop, progress)

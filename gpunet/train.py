"""The training loop: epochs on the device, the loss reduced and copied to the host only where it is reported."""

import contextlib
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from gpunet import __version__
from gpunet import backend as backends
from gpunet.checkpoint import SavedModel
from gpunet.config import Config, table_config
from gpunet.batches import RowPlan, shuffles
from gpunet.comm import Single, device_of, launch
from gpunet.data import Dataset, check_random_state, shard, synthetic_dataset, warn
from gpunet.errors import ConfigError, DeviceMemoryError
from gpunet.losses import loss_factor
from gpunet.model import Layout, Network, init_params, workspace_bytes
from gpunet.monitor import EarlyStopping, Monitor
from gpunet.optim import make_optimizer
from gpunet.table_run import TABLE_KEYS, clip_batch, fit_to_rows, table_run


@dataclass
class Result:
    """What a training run gives back; every array is a NumPy array on the host.

    Attributes:
        config: the Config that was trained.
        backend, device: where it ran.
        losses: [(epoch, loss)] at the log points (every config.log_every epochs); each is the loss
            before that epoch's update (with mini-batches: over the epoch's batches' rows, each at the
            parameters its batch saw: a sum for sse, the mean over all rows for mse and ce), the weight
            penalty included.
        val_losses: [(epoch, loss)] on the validation rows at the log points (empty without them).
        accuracies, val_accuracies: [(epoch, fraction classified right)] likewise, with loss="ce".
        final_loss: the training loss of the last epoch run.
        flat_params: the parameters as one flat array [w1 | b1 | w2 | b2 | ...]: the last epoch's, or
            with early stopping the best epoch's (None when the run was asked not to copy them back).
        train_seconds: the training loop only, the device synchronized; data and transfer excluded.
        epochs_run: config.epochs, or fewer when interrupted or stopped early.
        interrupted: stopped by the `stop` event (Ctrl-C on the command line).
        best_epoch, best_val_loss, best_loss: with early stopping, the log point whose parameters were
            kept, its validation loss and its training loss.
        model: a SavedModel to save or predict with.
        notes: what was decided or done for a table (its task, missing cells filled, ...), a line each.
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
    accuracies: list = field(default_factory=list)
    val_accuracies: list = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    ranks: int = 1
    communicator: str = "none"
    best_loss: float | None = None
    notes: list = field(default_factory=list)

    @property
    def params(self):
        """[(w, b)] per layer: w of shape (fan_in, fan_out), b of shape (fan_out,); views of flat_params."""
        return Layout(self.config.sizes).unpack(self.flat_params)

    @property
    def seconds_per_epoch(self):
        return self.train_seconds / max(self.epochs_run, 1)

    @property
    def stopped_early(self):
        return self.best_epoch is not None and not self.interrupted and self.epochs_run < self.config.epochs

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
        for key in ("val_losses", "accuracies", "val_accuracies"):
            if getattr(self, key):
                out[key] = [[e, v] for e, v in getattr(self, key)]
        if self.best_epoch is not None:
            out["best_epoch"], out["best_val_loss"], out["best_loss"] = self.best_epoch, self.best_val_loss, self.best_loss
            out["stopped_early"] = self.stopped_early
        if self.ranks > 1:
            out["ranks"], out["communicator"] = self.ranks, self.communicator
        if self.interrupted:
            out["interrupted"] = True
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def initial_draws(config, data=None):
    """(data, flat initial parameters) for `config`, drawn on the host from its seed.

    Without `data`, the tutorial's synthetic data are drawn first, then the parameters, from one
    stream; with `data`, the parameters are the stream's first draws.
    """
    rng = check_random_state(config.seed)
    if data is None:
        data = synthetic_dataset(config.n, config.d_in, config.d_out, rng, config.val_split, config.seed,
                                 classify=config.loss == "ce")
    return data, init_params(config.sizes, rng, config.init)


def sized_for(config, data):
    """`config` with n, d_in and d_out taken from `data` (n: its training and validation rows, all ranks'), and
    a batch larger than the training rows clipped to them (gpunet.table_run.clip_batch)."""
    config, _ = clip_batch(config, data.n_train)
    return replace(config, n=data.n_train + data.n_val, d_in=data.x.shape[1], d_out=data.y.shape[1])


def check_fit(config, data, comm):
    """Raise ConfigError when `config` cannot train on `data` (this rank's share of it)."""
    if config.loss == "ce" and data.classes is None:
        raise ConfigError("--loss ce needs class labels: give --loss ce when the data are read")
    if config.early_stop is not None and not data.n_val:
        raise ConfigError("--early-stop needs validation rows: give --val-split above 0")
    if not len(data.x):
        raise ConfigError(f"{comm.size} ranks for {data.n_train} training rows: some rank has none; launch fewer ranks")


class Trainer:
    """One configuration on one backend: data and buffers placed once, then `run` (again after `reset`).

    Args:
        config: a Config.
        backend: a resolved gpunet.backend.Backend.
        data: a gpunet.data.Dataset, or None for the tutorial's synthetic data of config's sizes; with
            several ranks, all rows (each rank keeps its share) or this rank's share (gpunet.data.shard).
        start: flat initial parameters (host), or None to draw them from the seed.
        comm: a gpunet.comm communicator for data-parallel training (default: one process).
    """

    def __init__(self, config, backend, data=None, start=None, comm=None):
        self.comm = comm = comm or Single()
        if data is not None:  # the sizes come from the data
            config = sized_for(config, data)
        if config.loss == "ce" and config.d_out < 2:  # with data, d_out is the number of classes, always 2 or more
            raise ConfigError(f"--loss ce needs two or more classes: give --d-out 2 or more, got {config.d_out}")
        if start is None:
            data, start = initial_draws(config, data)
        if comm.size > 1 and not data.sharded:
            data = shard(data, comm.size, comm.rank)
        check_fit(config, data, comm)
        # in the run's dtype from here on: the float64 draws are gone before the buffers are made
        data, start = data.astype(config.dtype), np.asarray(start, config.dtype)
        self.config, self.backend, self.data, self.start = config, backend, data, start
        self.rows_held = (len(data.x), 0 if data.x_val is None else len(data.x_val))  # this rank's, for needed_bytes
        self.warm = backend.name != "cuda"  # CUDA compiles its kernels and makes its handles at first use
        with self._out_of_memory():
            self._place()

    def _place(self):
        config, b, data = self.config, self.backend, self.data
        self.net = net = Network(b, config.sizes, self.start, config.dtype, config.activation, config.loss)
        n, batch = data.n_train, config.batch_size or data.n_train
        self.full = batch == n
        self.rows = None if self.full else RowPlan(n, batch, data.first, len(data.x), self.comm.size > 1)
        self.shares = {}  # with several ranks, workspaces by the size of a rank's share of a batch
        if self.full:  # the tutorial's full batch: the data (this rank's share) lives in the one workspace
            self.workspaces = [net.workspace(len(data.x))]
            self.workspaces[0].load(data.x, data.y)
        else:  # mini-batches gather their rows from the data on the device
            self.x_t, self.y_t = (self.rows.place(b, a, config.dtype) for a in (data.x, data.y))
            self.workspaces = [net.workspace(batch)] + ([net.workspace(n % batch)] if n % batch else [])
        # an epoch's batches, over all ranks' rows: (first row, the workspace of its size); only the last may be shorter
        self.batches = [(i, self.workspaces[i + batch > n]) for i in range(0, n, batch)]
        self.val = None
        if data.x_val is not None and len(data.x_val):
            self.val = net.workspace(len(data.x_val))
            self.val.load(data.x_val, data.y_val)

    def needed_bytes(self):
        """Bytes of the buffers this run allocates on the backend: parameters, gradients, the optimizer's and weight
        decay's, the data mini-batches gather from, and the workspaces (gpunet.model.workspace_bytes)."""
        config, (n, n_val) = self.config, self.rows_held
        batch = min(config.batch_size or n, n)
        flats = {"sgd": 2, "momentum": 3, "adam": 5}[config.optimizer] + (2 if config.weight_decay else 0)
        data = 0 if batch == n else n * (config.d_in + config.d_out)
        spaces = [m for m in (batch, n % batch, n_val) if m]  # a batch, the last shorter one, the validation rows
        space = sum(workspace_bytes(self.backend, config.sizes, m, config.dtype, config.activation) for m in spaces)
        return np.dtype(config.dtype).itemsize * (flats * Layout(config.sizes).size + data) + space

    def buffer_bytes(self):
        """Bytes of the buffers placed on the backend: parameters, gradients, data and workspaces."""
        bufs = [self.net.params, self.net.grads] + ([] if self.full else [self.x_t, self.y_t])
        spaces = self.workspaces + list(self.shares.values()) + ([] if self.val is None else [self.val])
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
        if self.start is None:
            raise RuntimeError("reset() after drop_host_copies(): the start is no longer kept")
        self.net.params[...] = self.backend.asarray(self.start)

    def drop_host_copies(self):
        """Let go of the host's copies of the data and the start once they are on the backend (a run that
        trains once: `train`); reset() is then no longer possible."""
        empty = {k: np.empty((0, a.shape[1]), a.dtype) for k, a in (("x", self.data.x), ("y", self.data.y))}
        self.data = replace(self.data, **empty, x_val=None, y_val=None, n_train=self.data.n_train,
                            n_val=self.data.n_val)  # new empty arrays: a view x[:0] would keep all of x alive
        self.start = None

    def run(self, on_log=None, stop=None, progress=None, copy_params=True):
        """Train config.epochs epochs from the current parameters; return a Result.

        Args:
            on_log: called at each log point as on_log(epoch, loss, val_loss or None), and with
                loss="ce" as on_log(epoch, loss, val_loss, accuracy, val_accuracy).
            stop: an object with is_set() (a threading.Event): checked after each epoch; when set,
                training ends there and the Result says interrupted.
            progress: called as progress(epoch) after each epoch.
            copy_params: copy the final parameters back to the host into the Result.

        Raises:
            Diverged: a loss was not finite at a log point or at the end.
            DeviceMemoryError: the GPU ran out of memory.
        """
        with self._out_of_memory():
            if not self.warm:
                self.warm_up()
            return self._run(on_log, stop, progress, copy_params)

    def warm_up(self):
        """One untimed epoch through every pass a run makes (log point and validation included), the
        parameters put back after it: on CUDA the first calls compile kernels and make library handles."""
        keep = self.net.params.copy()
        self._run(None, None, None, False, replace(self.config, epochs=1, log_every=1, early_stop=None))
        self.net.params[...] = keep
        self.warm = True

    def _run(self, on_log, stop, progress, copy_params, config=None):
        config, b, net = config or self.config, self.backend, self.net
        opt = make_optimizer(config.optimizer, net, config.lr, config.momentum, config.beta1, config.beta2,
                             config.eps)
        decay = opt.grad_scale * config.weight_decay
        plan = self._plan(config, opt)
        monitor = Monitor(net, config, len(plan), self.data.n_train, self.val, self.comm, self.data.n_val)
        keeper = EarlyStopping(net, config.early_stop) if config.early_stop else None
        every, last = config.log_every, config.epochs
        points, loss, t = [], float("nan"), 0
        shuffle = None if self.full else shuffles(config.seed)
        alone, classify = self.full and self.comm.size == 1, config.loss == "ce"  # alone: the tutorial's loop
        whole_batch = self._whole_batch_step(plan[0], opt, decay, monitor, classify) if alone else None
        stopped = False

        b.synchronize()
        start = time.perf_counter()
        with np.errstate(all="ignore"):  # overflow shows as a non-finite loss at the next log point
            for t in range(1, last + 1):
                log = not t % every or t == last
                if log:
                    monitor.begin_epoch()
                if alone:
                    whole_batch(log)
                else:
                    self._epoch(plan, opt, decay, monitor if log else None, shuffle)
                if log:
                    loss, acc = monitor.epoch(t, points)
                    if not t % every:
                        point = monitor.point(t, loss, acc)
                        points.append(point)
                        if on_log is not None:
                            on_log(*_figures(point, classify))
                        if keeper is not None and keeper.update(point):
                            break
                if progress is not None:
                    progress(t)
                if stop is not None and self._stopped(stop, log):
                    stopped = True
                    break
            interrupted = stopped and t < last
            if interrupted:  # the loss of the parameters reached
                loss, _ = self._loss_pass(monitor, t, points)
            if keeper is not None:
                keeper.restore()
        b.synchronize()
        seconds = time.perf_counter() - start
        return self._result(config, points, loss, seconds, t, interrupted, keeper, copy_params)

    def _plan(self, config, opt):
        """Per batch: (first row, workspace, gradient scale). The loss is k * S, k the batch's for mse and
        ce; with the whole batch, all ranks' rows' (this rank's rows are a share of it)."""
        if self.full:
            return [(0, self.workspaces[0], opt.grad_scale * loss_factor(config.loss, self.data.n_train, config.d_out))]
        return [(i, w, opt.grad_scale * loss_factor(config.loss, w.n, config.d_out)) for i, w in self.batches]

    def _whole_batch_step(self, batch, opt, decay, monitor, classify):
        """step(log): one epoch of the tutorial's loop (one process, the whole batch). Between log points,
        with an optimizer whose update is a fixed list, the step is one list of calls (gpunet/calls.py)."""
        _, ws, scale = batch
        net, loss_out = self.net, monitor.out(0)
        update = [*(net.decay_calls(decay) if decay else []), *(opt.calls or [])]
        quiet = ws.step_calls(scale, update) if opt.calls is not None else None

        def step(log):
            if quiet is not None and not log:
                return quiet()
            ws.gradient(scale, loss_out if log else None)
            if log and classify:
                monitor.count(ws, 0)
            if decay:
                net.add_decay(decay)
            opt.step()

        return step

    def _epoch(self, plan, opt, decay, monitor, shuffle):
        """One epoch's steps; with `monitor` (a log epoch), each batch's loss and correct rows go into it."""
        if shuffle is None:
            _, ws, scale = plan[0]
            self._step(ws, scale, opt, decay, monitor, 0)
            return
        rows, weights, spans = self.rows.epoch(self.backend, shuffle, self.net.dtype)  # one small copy per epoch
        for j, (i, ws, scale) in enumerate(plan):
            if spans is not None:  # a rank's share of the batch, padded (gpunet/batches.py)
                i, size = spans[j]
                ws = self._share_workspace(size)
            ws.gather(self.x_t, self.y_t, rows[i : i + ws.n], None if weights is None else weights[i : i + ws.n])
            self._step(ws, scale, opt, decay, monitor, j)

    def _share_workspace(self, size):
        """The workspace of `size` rows for a rank's share of a batch: made at its first use, then kept."""
        if size not in self.shares:
            self.shares[size] = self.net.workspace(size)
        return self.shares[size]

    def _step(self, ws, scale, opt, decay, monitor, j):
        """One update from batch j in `ws`: its gradient, summed over the ranks, the weight decay, the step."""
        ws.gradient(scale, None if monitor is None else monitor.out(j))
        if monitor is not None:
            monitor.count(ws, j)
        if self.comm.size > 1:
            self.comm.allreduce(self.net.grads)
        if decay:
            self.net.add_decay(decay)
        opt.step()

    def _stopped(self, stop, log):
        """Whether to stop now: at once with one process; with several, at a log point, all ranks together."""
        if self.comm.size == 1:
            return stop.is_set()
        return log and self.comm.any(stop.is_set())

    def _loss_pass(self, monitor, t, points):
        """The loss of the current parameters over the training rows, batch by batch, without an update."""
        monitor.begin_epoch()
        for j, (i, w) in enumerate(self.batches if not self.full else [(0, self.workspaces[0])]):
            if not self.full:
                w.gather(self.x_t, self.y_t, *self.rows.in_order(self.backend, i, w.n, self.net.dtype))
            w.forward()
            w.error(monitor.out(j))
            monitor.count(w, j)
        return monitor.epoch(t, points)

    def _result(self, config, points, loss, seconds, t, interrupted, keeper, copy_params):
        b, data = self.backend, self.data
        flat = b.to_numpy(self.net.params).copy() if copy_params else None
        series = {key: [(p.epoch, getattr(p, key)) for p in points if getattr(p, key) is not None]
                  for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
        kept = {} if keeper is None else {k: getattr(keeper, k) for k in ("best_epoch", "best_loss", "best_val_loss")}
        metrics = {"epochs_run": t, "final_loss": loss, **{f"last_{k}": v[-1][1] for k, v in series.items() if v},
                   **{k: v for k, v in kept.items() if v is not None}}
        model = None if flat is None else saved_model(config, flat, data, metrics)
        return Result(config, b.name, b.device, series["loss"], loss, flat, seconds, versions=b.versions(),
                      val_losses=series["val_loss"], epochs_run=t, interrupted=interrupted, model=model,
                      accuracies=series["accuracy"], val_accuracies=series["val_accuracy"], ranks=self.comm.size,
                      communicator=self.comm.name, **kept)


def saved_model(config, flat, data, metrics):
    """The SavedModel of `config` trained on `data` (a Dataset) to the flat parameters `flat`, with its metrics."""
    return SavedModel(config.sizes, flat, data.x_scaler, data.y_scaler, data.input_names, data.target_names,
                      asdict(config), __version__, data.classes, data.prep, metrics)


def _figures(point, classify):
    """on_log's arguments: (epoch, loss, val_loss), and with ce the two accuracies."""
    head = (point.epoch, point.loss, point.val_loss)
    return head + (point.accuracy, point.val_accuracy) if classify else head


def train(config=None, backend="auto", device=None, data=None, on_log=None, stop=None, progress=None,
          distributed=False, comm="auto", **options):
    """Train a network and return a Result.

    Args:
        config: a Config; or leave it None and pass its fields as keyword options
            (e.g. `train(hidden=(64, 64), epochs=500)`). With `data`, n, d_in and d_out come from it.
        backend: "cpu", "cuda", "auto", or a resolved gpunet.backend.Backend.
        device: the CUDA device index (default 0; with several ranks, the rank's index on its node).
        data: None for the tutorial's synthetic data; or a table: a path (CSV, Parquet, Feather, .npy,
            .npz, a folder or glob), a gpunet.tabular.Table, a pandas DataFrame or a 2-D array, with the
            keyword options target, task, features, drop, keep, missing and delimiter of `gpunet train`; or a
            gpunet.data.Dataset (e.g. from gpunet.data.table_dataset). On a table, options not given
            take the table defaults (config.TABLE_DEFAULTS), and result.notes says what was decided.
        on_log: called at each log point as on_log(epoch, loss, val_loss or None), and with loss="ce"
            as on_log(epoch, loss, val_loss, accuracy, val_accuracy).
        stop, progress: see Trainer.run.
        distributed: train one model with every rank of an MPI launch (`mpiexec -n P python ...`); each
            rank keeps its share of the rows, and the result is the same as one process's.
        comm: how the gradient travels between ranks ("auto", "nccl", "mpi", "host"), or a communicator
            from gpunet.comm.launch.

    Raises:
        gpunet.errors.ConfigError, DataError, BackendUnavailable, Diverged, DeviceMemoryError.
    """
    table_options = {k: options.pop(k) for k in TABLE_KEYS if k in options}
    if config is not None and options:
        raise TypeError("pass either a Config or keyword options, not both")
    ranks = comm if not isinstance(comm, str) else launch(distributed)
    config, data, notes = _what_to_train(config, data, options, table_options, ranks)
    if not isinstance(backend, backends.Backend):
        backend = backends.resolve(backend, device_of(ranks, device))
    if isinstance(comm, str):  # a communicator given as an object is bound by its maker
        ranks.bind(backend, comm)
    trainer = Trainer(config, backend, data, comm=ranks)
    trainer.drop_host_copies()
    return replace(trainer.run(on_log, stop, progress), notes=notes)


def _what_to_train(config, data, options, table_options, ranks):
    """(Config, Dataset or None, notes) from train's arguments: a table gets the table defaults."""
    if table_options and (data is None or isinstance(data, Dataset)):
        raise TypeError(f"{', '.join(table_options)}: for a table given as data (a path, Table, DataFrame or array)")
    if data is not None and not isinstance(data, Dataset):
        if config is not None:
            raise TypeError("with a table as data, pass its options as keywords, not a Config")
        config, data, notes = table_run(data, options, comm=ranks, **table_options)
        warn(notes, stacklevel=4)
        return config, data, notes
    if config is None and data is not None and data.prep is not None:  # a table's Dataset: the table defaults
        config, _ = fit_to_rows(table_config(options, data.classes is not None), data, options)
    return config or Config(**options), data, []

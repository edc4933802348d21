"""gpunet train's rules over a stack (gpunet/stack.py): runs of one architecture that differ in their learning rate,
weight decay, momentum or Adam's numbers trained as one computation. train_stack: runs that share their data and
seed (a search's candidates on one fold), which share their batches. train_stacks: any runs, grouped (on the CPU,
a stack per data set and seed; on a GPU, one stack of all runs alike in architecture and batch count, each model
with its own rows: gpunet/stack_train_rows.py).

Each model follows Trainer.run's rules exactly: its Adam (epsilon bias-corrected), SGD or momentum; the weight
decay alpha w added to the gradient; the loss k S + decay / 2 sum(w^2), k of mse 1 / (n d_out), of ce 1 / n; the
rows of each epoch the permutation drawn from default_rng([seed, 2]) (none with the whole batch); at each log
point the validation loss, and with early stopping the best log point's parameters kept and the run stopped after
`early_stop` log points without a lower one. A model that stops leaves the stack: the others go on as a smaller
stack from the next epoch (measured on digits, 6 candidates stopping between epochs 37 and 377: shrinking when half
had stopped 3.92 s, at every stop 2.85 s, against 3.81-4.14 s one by one). A model whose training loss is not
finite at a log point has diverged: it stops and is reported, as train() raises Diverged.

In float64 each model equals train()'s to rounding (tests/test_stack_train.py). In float32 the stacked products and
the losses (summed here in float64) round differently from one model's: where the validation loss is flat, the
kept epoch can move by a few (iris, the table defaults: 959 against 988), the scores differing in the third or
fourth decimal.
"""

from dataclasses import asdict, dataclass, replace

import numpy as np

from gpunet.checkpoint import SavedModel
from gpunet.comm import Single
from gpunet.errors import DeviceMemoryError, Diverged
from gpunet.losses import loss_factor
from gpunet.stack import Stack, together
from gpunet.stack_optim import StackAdam, StackSGD
from gpunet.stack_train_rows import OwnPlan, OwnValidation, SharedPlan, SharedValidation
from gpunet.train import check_fit, initial_draws, saved_model, sized_for, train

OUT = {"ce": "softmax", "mse": "identity", "sse": "identity"}  # the stack's output activation of each loss
HIDDEN = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity"}  # the stack's names
PER_MODEL = ("lr", "weight_decay", "momentum", "beta1", "beta2", "eps")  # what may differ between a stack's runs


@dataclass
class Run:
    """One stacked run's outcome: its SavedModel (None when it diverged), and the Diverged it would have raised."""

    model: SavedModel | None
    diverged: Diverged | None = None
    epochs_run: int = 0


def train_stack(configs, data, backend, progress=None):
    """Train one model per Config of `configs` on `data` (a Dataset), as train(config, backend, data=data) would
    each, as one stack; return a Run per config. `progress`, if given, is called after each epoch as
    progress(epoch, models still training).

    Raises:
        ValueError: the configs differ in more than PER_MODEL (the optimizer's numbers and the weight decay).
        ConfigError: as train() for the first config (early stopping without validation rows, ...).
        DeviceMemoryError: the GPU ran out of memory.
    """
    if len(configs) == 1:  # one model: train()'s own path, which a stack of one is slower than (iris: 1.5x)
        return [_alone(configs[0], data, backend, progress)]
    configs = [sized_for(c, data) for c in configs]
    first = configs[0]
    if any(replace(c, **{k: getattr(first, k) for k in PER_MODEL}) != first for c in configs):
        raise ValueError(f"the runs of one stack differ only in {', '.join(PER_MODEL)}")
    check_fit(first, data, Single())
    _, start = initial_draws(first, data)
    data = data.astype(first.dtype)
    k = len(configs)
    return _trained(configs, [data] * k, np.tile(start, (k, 1)), backend, progress, lambda: (
        SharedPlan(backend, first.dtype, data, first.batch_size, first.seed, k),
        SharedValidation(backend, first.loss, data, first.dtype) if first.early_stop else None))


def train_stacks(runs, backend, progress=None):
    """Train each (Config, Dataset) of `runs` as train(config, backend, data=data) would, grouped into stacks
    (one_stack): on the CPU, the runs of one data set and seed (a fold's candidates: they share their batches),
    except for small tables in whole batches with few runs each; on a GPU, all runs of one architecture and batch
    count, each with its own rows (one launch per layer for them all). Return a Run per run. `progress`, if given,
    is called after each epoch as progress(stack, stacks, epoch, models still training, models in the stack).

    Raises:
        ConfigError, DeviceMemoryError: as train_stack.
    """
    groups = _groups(backend, runs)
    out = [None] * len(runs)
    for g, at in enumerate(groups):
        each = progress and (lambda t, running, g=g, at=at: progress(g, len(groups), t, running, len(at)))
        configs, sets = [runs[i][0] for i in at], [runs[i][1] for i in at]
        shared = all(d is sets[0] and c.seed == configs[0].seed and c.batch_size == configs[0].batch_size
                     for c, d in zip(configs, sets))
        if len(at) == 1 or shared:
            done = train_stack(configs, sets[0], backend, each)
        else:
            done = _train_own(configs, sets, backend, each)
        for i, run in zip(at, done):
            out[i] = run
    return out


def one_stack(backend, config, data, per_set):
    """Whether runs of `config` on `data` (of which `per_set` share that data set and seed) stack with other data
    sets' runs on `backend`, each model with its own rows (stack.together)."""
    n = len(data.x)
    return together(backend, (config.batch_size or n) >= n, n * (data.x.shape[1] + 1), per_set)


def _groups(backend, runs):
    """The runs' stacks, as lists of indices into runs (see train_stacks)."""
    keys, per_set = {}, {}
    for config, data in runs:
        per_set[id(data), config.seed] = per_set.get((id(data), config.seed), 0) + 1
    for i, (config, data) in enumerate(runs):
        sized = sized_for(config, data)
        if one_stack(backend, config, data, per_set[id(data), config.seed]):
            free = (*PER_MODEL, "seed", "n", "batch_size")  # what may differ between the runs of such a stack
            key = (_alike(sized, free), -(-len(data.x) // (sized.batch_size or len(data.x))))
        else:  # runs that share their batches: one data set and seed, alike but in PER_MODEL
            key = (id(data), _alike(sized, PER_MODEL))
        keys.setdefault(key, []).append(i)
    return list(keys.values())


def _alike(config, free):
    """What must be alike in the runs of one stack: config's fields but those in `free`, as a hashable tuple."""
    return tuple((f, v) for f, v in asdict(config).items() if f not in free)


def _train_own(configs, sets, backend, progress):
    """Runs of different data sets (or seeds) as one stack, each model with its own rows."""
    configs = [sized_for(c, d) for c, d in zip(configs, sets)]
    for c, d in zip(configs, sets):
        check_fit(c, d, Single())
    starts = np.stack([initial_draws(c, d)[1] for c, d in zip(configs, sets)])
    first = configs[0]
    index = {}  # (data set, seed) -> its index among the stack's data sets, in order of first use
    of = [index.setdefault((id(d), c.seed), len(index)) for c, d in zip(configs, sets)]
    firsts = {j: (d, c.seed) for j, c, d in zip(of, configs, sets)}
    cast = [firsts[j][0].astype(first.dtype) for j in range(len(index))]
    seeds = [firsts[j][1] for j in range(len(index))]
    return _trained(configs, [cast[j] for j in of], starts, backend, progress, lambda: (
        OwnPlan(backend, first.dtype, cast, of, [c.batch_size or len(d.x) for c, d in zip(configs, sets)], seeds),
        OwnValidation(backend, first.loss, cast, of, first.dtype) if first.early_stop else None))


def _trained(configs, sets, starts, backend, progress, plans):
    """The Runs of configs (alike but for PER_MODEL, seed and rows) on their data sets from `starts` (K, P), the
    rows and validation from plans() -> (plan, validation or None)."""
    first = configs[0]
    try:
        stack = Stack(backend, first.sizes, starts, first.dtype, HIDDEN[first.activation], OUT[first.loss],
                      [c.weight_decay for c in configs], rules=first.loss)
        opt = _optimizer(configs, backend, stack.params)
        plan, val = plans()
        k_train = np.array([loss_factor(first.loss, n, first.d_out) for n in plan.n])
        book = _Book(stack, first, plan, val, k_train, backend, progress)
        with np.errstate(all="ignore"), stack.on_threads():  # a diverging run: a non-finite loss at its next log point
            book.train(opt)
    except Exception as e:
        if not backend.out_of_memory(e):
            raise
        raise DeviceMemoryError(f"the GPU ran out of memory training {len(configs)} models as one stack; try fewer "
                                "candidates, a smaller --batch-size or fewer --hidden units") from None
    return [Run(book.model(k, configs[k], sets[k]), book.diverged[k], int(book.epochs[k])) for k in range(stack.k)]


def _alone(config, data, backend, progress):
    """The Run of train(config) on data."""
    try:
        result = train(config, backend=backend, data=data, progress=progress and (lambda t: progress(t, 1)))
    except Diverged as e:
        return Run(None, e, e.epoch)
    return Run(result.model, None, result.epochs_run)


def _optimizer(configs, backend, params):
    """The stacked optimizer of gpunet.optim's `optimizer` (the configs'), its numbers per model."""
    k, name = len(configs), configs[0].optimizer
    per = lambda field: [getattr(c, field) for c in configs]  # noqa: E731
    if name == "adam":
        return StackAdam(backend, params, per("lr"), per("beta1"), per("beta2"), per("eps"), eps_corrected=True)
    # gpunet's v = mu v + lr g, params -= v is scikit-learn's v = mu v - lr g, params += v with v negated
    mu = per("momentum") if name == "momentum" else [0.0] * k
    return StackSGD(backend, params, per("lr"), "constant", mu, [False] * k, [0.5] * k)


class _Book:
    """The epochs of a stack under gpunet train's rules, and each model's record: epochs run, divergence, and with
    early stopping its best log point and parameters. plan: the rows (stack_train_rows.SharedPlan or OwnPlan);
    val: the validation losses, or None without early stopping; k_train (K,): each model's loss factor."""

    def __init__(self, stack, config, plan, val, k_train, backend, progress=None):
        self.stack, self.config, self.backend, self.progress = stack, config, backend, progress
        self.plan, self.val, self.k_train = plan, val, k_train
        k = stack.k
        self.ids = np.arange(k)  # the model of each row of the stack
        self.epochs = np.zeros(k, np.int64)
        self.diverged = [None] * k
        self.curve = []  # (epoch, (K,) losses, NaN for a model not running) at the log points, for Diverged
        self.last_loss = np.full(k, np.nan)
        self.best_epoch, self.best_val, self.best_loss = np.zeros(k, np.int64), np.full(k, np.nan), np.full(k, np.nan)
        self.waited = np.zeros(k, np.int64)
        self.best = backend.xp.array(stack.params) if self.val is not None else None
        self.params = [None] * k  # each model's final parameters, host, as it stops

    def train(self, opt):
        """config.epochs epochs, each model stopping by its own rules."""
        stack, config = self.stack, self.config
        for t in range(1, config.epochs + 1):
            if not opt.active.any():
                break
            if opt.active.sum() < stack.k:  # some have stopped: the others as a smaller stack
                stack, opt = self._shrink(stack, opt)
            self.plan.epoch(stack, opt)
            self.epochs[self.ids] = t  # every row of the stack trains: one that stopped left it (_shrink)
            if not t % config.log_every or t == config.epochs:
                for k in self._log_point(stack, t):
                    self._stop(stack, opt, k)
            if self.progress is not None:
                self.progress(t, int(opt.active.sum()))
        for k in np.flatnonzero(opt.active):
            self._stop(stack, opt, k)

    def _shrink(self, stack, opt):
        keep = np.flatnonzero(opt.active)
        self.ids, self.k_train, self.plan = self.ids[keep], self.k_train[keep], self.plan.select(keep)
        if self.val is not None:
            self.best, self.val = self.best[self.backend.asarray(keep)], self.val.select(keep)
        return stack.select(keep), opt.select(keep)

    def _log_point(self, stack, t):
        """Epoch t is a log point: each model's loss, divergence and early stopping; return the rows of the stack
        that stop here."""
        s, pen = stack.sums()
        losses = self.k_train * s.sum(axis=0) + 0.5 * pen[0]  # the penalty at the epoch's start
        ids = self.ids
        self.last_loss[ids] = losses
        finite = np.isfinite(losses)
        if not finite.all():
            for i in ids[~finite]:
                self.diverged[i] = Diverged(t, float(self.last_loss[i]), [(e, float(row[i])) for e, row in self.curve
                                                                         if np.isfinite(row[i])])
        row = np.full(len(self.epochs), np.nan)
        row[ids] = losses
        self.curve.append((t, row))
        if self.val is None or t % self.config.log_every:
            return np.flatnonzero(~finite)
        val = self.val.losses(stack)
        improved = finite & ((self.best_epoch[ids] == 0) | (val < self.best_val[ids]))
        if improved.any():
            better, kept = np.flatnonzero(improved), ids[improved]
            self.best_epoch[kept], self.best_val[kept], self.best_loss[kept] = t, val[improved], losses[improved]
            at = self.backend.asarray(better)
            self.best[at] = stack.params[at]
        self.waited[ids] = np.where(improved, 0, self.waited[ids] + 1)
        return np.flatnonzero(~finite | (self.waited[ids] >= self.config.early_stop))

    def _stop(self, stack, opt, k):
        """Row k of the stack stops: its final parameters (the best log point's with early stopping) kept."""
        i = self.ids[k]
        if self.diverged[i] is None:
            kept = self.best[k] if self.val is not None and self.best_epoch[i] else stack.params[k]
            self.params[i] = self.backend.to_numpy(kept).astype(np.float64)
        opt.freeze(k)

    def model(self, i, config, data):
        """Model i's SavedModel (None when it diverged), as Trainer's Result.model; its metrics are epochs_run,
        final_loss and early stopping's best_epoch, best_loss and best_val_loss (not the last log point's)."""
        if self.diverged[i] is not None:
            return None
        metrics = {"epochs_run": int(self.epochs[i]), "final_loss": float(self.last_loss[i])}
        if self.best_epoch[i]:
            metrics.update(best_epoch=int(self.best_epoch[i]), best_loss=float(self.best_loss[i]),
                           best_val_loss=float(self.best_val[i]))
        return saved_model(config, self.params[i].astype(config.dtype), data, metrics)

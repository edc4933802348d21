"""gpunet train's rules over a stack (gpunet/stack_train.py): each stacked run equals train() run alone on the same
data and config, over many epochs (Adam's and momentum's state, early stopping's best point and patience), in
float64; a diverging run is reported as train() raises, and leaves the others as they were."""

import os
from dataclasses import replace

import numpy as np
import pytest

from gpunet.backend import resolve
from gpunet import stack_train
from gpunet.errors import ConfigError, DeviceMemoryError, Diverged
from gpunet.stack_train import train_stack
from gpunet.table_run import table_run
from gpunet.tabular import read_table
from gpunet.train import train
from tests import fake_device
from tests.conftest import needs_pyarrow

pytestmark = needs_pyarrow
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
# (lr, weight decay) per run: model 3's weight decay differs from model 2's, so that a slot slip shows
RUNS = [(1e-2, 0.0), (1e-3, None), (3e-2, 1e-3), (3e-2, 1e-1)]


def _configs(path, target, given, runs=RUNS):
    """(configs, data): one config per (lr, weight decay) on the table, None taking the table default."""
    config, data, _ = table_run(read_table(path), {"dtype": "float64", **given}, target=target)
    chosen = [{"lr": lr, **({} if wd is None else {"weight_decay": wd})} for lr, wd in runs]
    return [replace(config, **c) for c in chosen], data


def _alone(configs, data):
    """Each config trained by train() on its own: its Result, or the Diverged it raised."""
    out = []
    for c in configs:
        try:
            out.append(train(c, backend="cpu", data=data))
        except Diverged as e:
            out.append(e)
    return out


CASES = {
    # iris: 120 training rows; batches of 32 shuffled each epoch, early stopping on the validation loss
    "adam, mini-batches, early stopping": ("iris.csv", "species", dict(epochs=150, batch_size=32, hidden=(8, 8))),
    "adam, the whole batch": ("iris.csv", "species", dict(epochs=120, hidden=(16,))),
    "momentum, tanh": ("iris.csv", "species", dict(epochs=60, batch_size=50, optimizer="momentum",
                                                   activation="tanh", init="glorot")),
    "sgd, sigmoid, logged every 7": ("iris.csv", "species", dict(epochs=50, batch_size=40, optimizer="sgd",
                                                                 activation="sigmoid", log_every=7)),
    "regression (mse), adam": ("diabetes.csv", None, dict(epochs=80, hidden=(32,))),
    "two targets, mse": ("diabetes.csv", "bmi,progression", dict(epochs=40, batch_size=64, hidden=(16,))),
}


@pytest.mark.parametrize("case", CASES)
def test_each_stacked_run_is_trains_own(case):
    name, target, given = CASES[case]
    configs, data = _configs(os.path.join(EXAMPLES, name), target, given)
    stacked = train_stack(configs, data, resolve("cpu"))
    for run, alone in zip(stacked, _alone(configs, data)):
        assert run.diverged is None and run.epochs_run == alone.epochs_run
        assert run.model.metrics.get("best_epoch") == alone.best_epoch
        np.testing.assert_allclose(run.model.params, alone.flat_params, rtol=0, atol=1e-11)
        assert run.model.metrics["final_loss"] == pytest.approx(alone.final_loss, rel=1e-12)
        if alone.best_epoch is not None:  # the validation loss kept, the weight penalty in it
            assert run.model.metrics["best_val_loss"] == pytest.approx(alone.best_val_loss, rel=1e-12)
    assert stacked[0].model.config == _alone(configs[:1], data)[0].model.config


def test_runs_stop_at_their_own_epochs_and_the_stack_shrinks():
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=400, batch_size=24),
                             [(3e-2, 0.0), (1e-2, 1e-3), (1e-4, 0.0), (1e-4, 1e-3), (3e-4, 0.0)])
    stacked = train_stack(configs, data, resolve("cpu"))
    epochs = [r.epochs_run for r in stacked]
    assert len(set(epochs)) >= 3 and min(epochs) < 200  # stopped at their own epochs, most before the last
    for run, alone in zip(stacked, _alone(configs, data)):
        assert run.epochs_run == alone.epochs_run and run.model.metrics["best_epoch"] == alone.best_epoch
        np.testing.assert_allclose(run.model.params, alone.flat_params, rtol=0, atol=1e-11)


def test_a_diverging_run_is_reported_and_the_others_go_on():
    configs, data = _configs(os.path.join(EXAMPLES, "diabetes.csv"), None,
                             dict(epochs=30, optimizer="sgd", batch_size=50), [(1e-2, 0.0), (50.0, 0.0), (1e-3, 1e-2)])
    stacked = train_stack(configs, data, resolve("cpu"))
    alone = _alone(configs, data)
    assert isinstance(alone[1], Diverged) and stacked[1].model is None
    assert (stacked[1].diverged.epoch, stacked[1].diverged.losses) == (alone[1].epoch, alone[1].losses)
    for k in (0, 2):
        np.testing.assert_allclose(stacked[k].model.params, alone[k].flat_params, rtol=0, atol=1e-11)


def _assert_as_alone(stacked, alone):
    for run, one in zip(stacked, alone):
        if isinstance(one, Diverged):
            assert run.model is None and run.diverged.epoch == one.epoch
            assert [e for e, _ in run.diverged.losses] == [e for e, _ in one.losses]
            np.testing.assert_allclose([v for _, v in run.diverged.losses], [v for _, v in one.losses], rtol=1e-9)
            continue
        assert run.diverged is None and run.epochs_run == one.epochs_run
        assert run.model.metrics.get("best_epoch") == one.best_epoch
        if one.best_epoch is not None:  # taken as train takes it: 0 for saturated right answers, not -1e-11
            assert run.model.metrics["best_val_loss"] == pytest.approx(one.best_val_loss, rel=1e-9, abs=1e-14)
        np.testing.assert_allclose(run.model.params, one.flat_params, rtol=1e-9, atol=1e-11)


def test_the_sum_of_squares_is_not_divided_by_the_rows():
    configs, data = _configs(os.path.join(EXAMPLES, "diabetes.csv"), None,
                             dict(loss="sse", optimizer="sgd", epochs=20, batch_size=64),
                             [(1e-5, 0.0), (3e-6, None), (1e-5, 1e-3), (2e-5, 1e-1)])
    _assert_as_alone(train_stack(configs, data, resolve("cpu")), _alone(configs, data))


def test_saturated_classes_are_scored_as_train_scores_them():
    """Large logits: the loss is not clipped (scikit-learn's rule, not gpunet train's) and the validation loss is
    taken from shifted logits, so that a divergence, its history and the kept epoch are train()'s."""
    path = os.path.join(EXAMPLES, "iris.csv")
    configs, data = _configs(path, "species", dict(optimizer="sgd", batch_size=30, log_every=3, epochs=30),
                             [(1e3, 0.0), (12.2, 0.0), (1e-2, 0.0)])
    alone = _alone(configs, data)
    assert isinstance(alone[0], Diverged) and len(alone[0].losses) >= 1
    _assert_as_alone(train_stack(configs, data, resolve("cpu")), alone)
    configs, data = _configs(path, "species", dict(batch_size=24, log_every=2, early_stop=1000, epochs=14),
                             [(5.0, 0.0), (1.0, 0.0)])
    _assert_as_alone(train_stack(configs, data, resolve("cpu")), _alone(configs, data))


def test_early_stopping_without_validation_rows_is_refused_as_train_refuses_it():
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(val_split=0.0, early_stop=3))
    with pytest.raises(ConfigError, match="--early-stop needs validation rows"):
        train_stack(configs, data, resolve("cpu"))


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_runs_may_differ_in_the_optimizers_numbers(optimizer):
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species",
                             dict(epochs=60, batch_size=32, optimizer=optimizer), RUNS[:3])
    numbers = [dict(beta1=0.8, beta2=0.99, eps=1e-3, momentum=0.5), dict(beta1=0.95, momentum=0.99), dict(eps=1e-6)]
    configs = [replace(c, **n) for c, n in zip(configs, numbers)]
    _assert_as_alone(train_stack(configs, data, resolve("cpu")), _alone(configs, data))


def test_runs_that_differ_in_more_than_the_optimizers_numbers_are_refused():
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=5))
    with pytest.raises(ValueError, match="differ only in lr, weight_decay, momentum"):
        train_stack([configs[0], replace(configs[1], hidden=(5,))], data, resolve("cpu"))


def test_the_stack_on_a_cupy_stand_in_gives_the_hosts_models(monkeypatch):
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=40, batch_size=32))
    on_host = train_stack(configs, data, resolve("cpu"))
    fake_device.install(monkeypatch)
    on_device = train_stack(configs, data, resolve("cuda"))
    for a, b in zip(on_host, on_device):
        assert type(b.model.params) is np.ndarray and a.epochs_run == b.epochs_run
        np.testing.assert_allclose(b.model.params, a.model.params, rtol=0, atol=1e-12)


def test_a_stack_too_large_for_the_gpu_says_what_to_shrink(monkeypatch):
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=2))
    backend = resolve("cpu")

    class OutOfMemory(Exception):
        pass

    def no_room(*args, **kwargs):
        raise OutOfMemory()

    monkeypatch.setattr(stack_train, "Stack", no_room)
    monkeypatch.setattr(type(backend), "out_of_memory", lambda self, e: isinstance(e, OutOfMemory))
    with pytest.raises(DeviceMemoryError, match="4 models as one stack; try fewer candidates"):
        train_stack(configs, data, backend)


def test_a_stack_of_one_is_trains_own_run():
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=30, batch_size=32))
    seen = []
    run = train_stack(configs[:1], data, resolve("cpu"), progress=lambda t, running: seen.append((t, running)))[0]
    alone = train(configs[0], backend="cpu", data=data)
    np.testing.assert_array_equal(run.model.params, alone.flat_params)
    assert run.epochs_run == alone.epochs_run and seen[-1] == (alone.epochs_run, 1)
    configs, data = _configs(os.path.join(EXAMPLES, "diabetes.csv"), None, dict(epochs=5, optimizer="sgd"),
                             [(50.0, 0.0)])
    run = train_stack(configs, data, resolve("cpu"))[0]
    assert run.model is None and isinstance(run.diverged, Diverged)


def _fold_runs(path, target, given, runs=RUNS[:3], folds=3, seeds=(42, 7)):
    """(config, Dataset) for every fold (rows held out as gpunet search holds them out), seed and (lr, decay)."""
    table = read_table(path)
    held = np.array_split(np.random.default_rng([1, 3]).permutation(len(table.columns[0])), folds)
    out = []
    for test in held:
        rows = np.setdiff1d(np.arange(len(table.columns[0])), test)
        part = type(table)(table.names, [c[rows] for c in table.columns], table.path, named=table.named)
        for seed in seeds:
            config, data, _ = table_run(part, {"dtype": "float64", "seed": seed, **given}, target=target)
            for lr, wd in runs:
                out.append((replace(config, lr=lr, **({} if wd is None else {"weight_decay": wd})), data))
    return out


OWN_CASES = {
    "adam, shuffled mini-batches, early stopping": ("iris.csv", "species", dict(epochs=120, batch_size=32)),
    "adam, the whole batch of each fold": ("iris.csv", "species", dict(epochs=80, hidden=(8,))),
    "momentum, tanh, regression": ("diabetes.csv", None, dict(epochs=40, batch_size=64, optimizer="momentum",
                                                             activation="tanh", init="glorot")),
    "sse, sgd, a divergence": ("diabetes.csv", None, dict(epochs=15, batch_size=100, optimizer="sgd", loss="sse"),
                               [(1e-5, 0.0), (3e-3, 0.0)]),
}


@pytest.mark.parametrize("case", OWN_CASES)
def test_folds_and_seeds_as_one_stack_each_with_its_own_rows(case, monkeypatch):
    """A GPU's grouping (forced here): every fold, seed and candidate in one stack, each model gathering its own
    rows in its own order; each run is still train()'s."""
    name, target, given, *runs = OWN_CASES[case]
    pairs = _fold_runs(os.path.join(EXAMPLES, name), target, given, *runs)
    monkeypatch.setattr(stack_train, "one_stack", lambda *a: True)
    seen = []
    stacked = stack_train.train_stacks(pairs, resolve("cpu"), lambda *a: seen.append(a))
    assert {a[1] for a in seen} == {1} and seen[0][4] == len(pairs)  # one stack of all the runs
    alone = []
    for config, data in pairs:
        alone += _alone([config], data)
    _assert_as_alone(stacked, alone)
    assert any(isinstance(a, Diverged) for a in alone) == ("divergence" in case)


@pytest.mark.parametrize("batch_size, stacks", [(32, 6), (None, 1)])
def test_the_cpu_stacks_a_fold_and_seed_at_a_time_unless_its_batches_are_whole(batch_size, stacks):
    given = dict(epochs=20, **({} if batch_size is None else {"batch_size": batch_size}))
    pairs = _fold_runs(os.path.join(EXAMPLES, "iris.csv"), "species", given)
    seen = []
    stacked = stack_train.train_stacks(pairs, resolve("cpu"), lambda *a: seen.append(a))
    assert {a[1] for a in seen} == {stacks} and {a[4] for a in seen} == {18 // stacks}  # 3 folds x 2 seeds x 3
    _assert_as_alone(stacked, [a for c, d in pairs for a in _alone([c], d)])


def test_a_cupy_stand_in_stacks_every_fold_and_seed_and_gives_the_hosts_models(monkeypatch):
    pairs = _fold_runs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=30, batch_size=32))
    on_host = stack_train.train_stacks(pairs, resolve("cpu"))
    fake_device.install(monkeypatch)
    seen = []
    on_device = stack_train.train_stacks(pairs, resolve("cuda"), lambda *a: seen.append(a))
    assert {a[1] for a in seen} == {1}  # one stack on the "GPU"
    for a, b in zip(on_host, on_device):
        assert type(b.model.params) is np.ndarray and a.epochs_run == b.epochs_run
        np.testing.assert_allclose(b.model.params, a.model.params, rtol=0, atol=1e-11)


def test_runs_unlike_in_more_than_the_optimizers_numbers_train_in_stacks_of_their_own():
    """Any runs: a whole batch (batch_size None), other architectures and batch sizes on the same data and seed."""
    configs, data = _configs(os.path.join(EXAMPLES, "iris.csv"), "species", dict(epochs=20, batch_size=40), RUNS[:2])
    more = [replace(configs[0], hidden=(7,)), replace(configs[1], batch_size=45), replace(configs[0], batch_size=None)]
    pairs = [(c, data) for c in configs + more]
    for grouping in (lambda *a: True, stack_train.one_stack):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(stack_train, "one_stack", grouping)
            _assert_as_alone(stack_train.train_stacks(pairs, resolve("cpu")), _alone([c for c, _ in pairs], data))


def test_the_cpu_stacks_folds_together_only_for_small_tables_in_whole_batches_with_few_runs_each():
    from types import SimpleNamespace

    from gpunet.config import Config

    cpu, table = resolve("cpu"), lambda rows, features: SimpleNamespace(x=np.zeros((rows, features)))
    assert stack_train.one_stack(cpu, Config(batch_size=200), table(150, 4), 6)
    assert not stack_train.one_stack(cpu, Config(batch_size=200), table(150, 4), 20)  # a fold's stack is enough
    assert not stack_train.one_stack(cpu, Config(batch_size=200), table(1000, 4), 6)  # in batches
    assert not stack_train.one_stack(cpu, Config(batch_size=None), table(10000, 100), 6)  # too large
    assert stack_train.one_stack(SimpleNamespace(name="cuda"), Config(batch_size=32), table(10000, 100), 20)


@pytest.mark.parametrize("case", ["adam, mini-batches, early stopping", "momentum, tanh"])
def test_chunks_on_threads_give_trains_own_runs(case, monkeypatch):
    """Every step's chunks split between 2 threads (forced, one model a chunk): each run is still train()'s."""
    import gpunet.stack

    monkeypatch.setattr(gpunet.stack, "THREAD_WORK", 0)
    monkeypatch.setattr(gpunet.stack, "CHUNK_BYTES", 1)
    monkeypatch.setattr(gpunet.stack, "blas_threads", lambda: 2)
    ran = []
    monkeypatch.setattr(gpunet.stack, "run_parts", lambda parts, run=gpunet.stack.run_parts: (ran.append(len(parts)),
                                                                                               run(parts)))
    name, target, given = CASES[case]
    configs, data = _configs(os.path.join(EXAMPLES, name), target, given)
    _assert_as_alone(train_stack(configs, data, resolve("cpu")), _alone(configs, data))
    assert ran and set(ran) == {2}

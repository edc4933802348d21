"""Training on files, mini-batches and optimizers, saving and using models, plots, and bad input."""

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet import checkpoint, train
from gpunet.data import table_dataset
from gpunet.backend import resolve
from gpunet.errors import DataError, DeviceMemoryError
from gpunet.files import atomic_write
from gpunet.gradcheck import finite_difference, generic_network
from gpunet.losses import loss_factor
from gpunet.optim import make_optimizer
from gpunet.inference import columns, outputs
from gpunet.tabular import read_table
from gpunet.train import Config, Trainer
from tests.conftest import needs_pyarrow
from tests.clitools import one_line_error, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




@pytest.fixture
def csv_file(tmp_path):
    """A learnable table: t = 2a - b + 0.5c + small noise, with a constant-free header."""
    pytest.importorskip("pyarrow")  # the tests that take it read or write it through pyarrow
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]
    t = 2 * x[:, 0] - 0.1 * x[:, 1] + 5 * x[:, 2] + 0.05 * rng.standard_normal(300)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([x, t]), delimiter=",", header="a,b,c,t", comments="", fmt="%.8g")
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- data from files ---------------------------------------------------------------------------


def test_train_on_a_csv_with_validation_and_standardisation(csv_file, backend):
    table = read_table(str(csv_file))
    data = table_dataset(table, val_split=0.2, seed=1)
    assert len(data.x) == 240 and len(data.x_val) == 60
    np.testing.assert_allclose(data.x.mean(axis=0), 0, atol=1e-12)  # statistics of the training rows
    np.testing.assert_allclose(data.y.std(axis=0), 1, atol=1e-12)
    r = train(backend=backend, data=data, hidden=(16,), epochs=300, lr=0.05, loss="mse", init="he", log_every=50,
              weight_decay=0.0, early_stop=None)
    assert r.config.d_in == 3 and r.config.d_out == 1 and r.config.n == 300
    assert [e for e, _ in r.val_losses] == [50, 100, 150, 200, 250, 300]
    assert r.val_losses[-1][1] < 0.05 and r.losses[-1][1] < 0.05  # standardised: 1.0 is predicting the mean


def test_cli_train_on_a_csv_logs_validation_and_defaults_to_mse(csv_file):
    r = run("train", "--backend", "cpu", "--data", csv_file, "--epochs", "20", "--lr", "0.05", "--json",
            "--log-every", "10")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["config"]["loss"] == "mse" and out["config"]["val_split"] == 0.2 and out["config"]["d_in"] == 3
    assert len(out["val_losses"]) == 2
    r = run("train", "--backend", "cpu", "--data", csv_file, "--epochs", "10", "--lr", "0.05", "--target", "a,t",
            "--log-every", "10")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("Epoch:  10    Loss:  ") and "    Val loss:  " in r.stdout


def test_npy_and_npz(tmp_path, csv_file):
    values = read_table(str(csv_file)).values
    np.save(tmp_path / "d.npy", values)
    np.savez(tmp_path / "d.npz", table=values)
    for name in ("d.npy", "d.npz"):
        table = read_table(str(tmp_path / name))
        assert table.names == ["c0", "c1", "c2", "c3"]
        np.testing.assert_array_equal(table.values, values)
    r = run("train", "--backend", "cpu", "--data", tmp_path / "d.npy", "--target", "0", "--epochs", "10", "-q")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("missing.csv", None, "no such file"),
        ("bad.csv", "a,b,t\n1,2,3\n4,x,6\n", "row 3, column 2 (b) is not a number: 'x'"),
        ("empty_cell.csv", "a,b,t\n1,2,3\n4,,6\n", "row 3, column 2 (b) is empty"),
        ("ragged.csv", "a,b,t\n1,2,3\n4,5\n", "row 3 has 2 cells, the header has 3"),
        ("norows.csv", "a,b,t\n", "no data rows"),
        ("empty.csv", "", "the file is empty"),
        ("flat.csv", "a,b,t\n1,2,3\n4,5,3\n7,8,3\n", "target column 't' is constant"),
        ("inf.csv", "a,b,t\n1,2,3\n4,inf,6\n", "row 3, column 2 (b) is not finite"),
        ("data.txt", "a,b,t\n1,2,3\n", "unknown file type .txt"),
    ],
)
@needs_pyarrow
def test_bad_data_files_are_one_line_exit_4(tmp_path, name, text, says):
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    # --missing error keeps the refusal of missing cells; --task regression the integer target's values
    line = one_line_error(run("train", "--backend", "cpu", "--data", path, "--val-split", "0", "--missing", "error",
                              "--task", "regression"), 4)
    assert says in line and name in line


def test_a_missing_target_column_and_a_constant_input(tmp_path, csv_file):
    line = one_line_error(run("train", "--backend", "cpu", "--data", csv_file, "--target", "zzz"), 4)
    assert "no column 'zzz'" in line and "a, b, c, t" in line
    path = write(tmp_path, "const.csv", "a,k,t\n" + "".join(f"{i},7,{2 * i + (i % 3)}\n" for i in range(30)))
    r = run("train", "--backend", "cpu", "--data", path, "--epochs", "5", "-q")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("Warning: ") == 1 and "'k' is constant" in r.stderr


def test_npy_must_be_two_dimensional(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    assert "2-D" in one_line_error(run("train", "--backend", "cpu", "--data", tmp_path / "v.npy"), 4)


def test_options_that_do_not_fit_together(csv_file):
    assert "--n" in one_line_error(run("train", "--backend", "cpu", "--data", csv_file, "--n", "5"), 2)
    assert "--data" in one_line_error(run("train", "--backend", "cpu", "--target", "t"), 2)
    assert "--batch-size" in one_line_error(run("train", "--backend", "cpu", "--batch-size", "0"), 2)
    r = run("train", "--backend", "cpu", "--batch-size", "101")  # clipped to the rows, as scikit-learn does
    assert r.exit_code == 0 and "--batch-size 101 is more than the 100 training rows" in r.stderr, r.output
    r = run("train", "--backend", "cpu", "--data", csv_file, "--batch-size", "250", "--epochs", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["config"]["batch_size"] == 240, r.output
    assert "--val-split" in one_line_error(run("train", "--backend", "cpu", "--val-split", "1"), 2)
    assert "--momentum" in one_line_error(run("train", "--backend", "cpu", "--momentum", "1.5"), 2)
    assert "--optimizer" in one_line_error(run("train", "--backend", "cpu", "--optimizer", "lbfgs"), 2)


# --- mini-batches and optimizers ---------------------------------------------------------------


def minibatch_sgd_reference(x, y, w1, b1, w2, b2, lr, epochs, batch, seed):
    """Mini-batch SGD on the mean squared error, written plainly in NumPy (one hidden layer)."""
    shuffle = np.random.default_rng([seed, 2])
    n = len(x)
    for _ in range(epochs):
        order = shuffle.permutation(n)
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            xb, yb = x[rows], y[rows]
            h = xb @ w1 + b1
            h_relu = np.maximum(h, 0)
            grad_y = 2 * (h_relu @ w2 + b2 - yb) / yb.size
            grad_h = (grad_y @ w2.T) * (h > 0)
            w2, b2 = w2 - lr * h_relu.T @ grad_y, b2 - lr * grad_y.sum(0)
            w1, b1 = w1 - lr * xb.T @ grad_h, b1 - lr * grad_h.sum(0)
    return w1, b1, w2, b2


def test_minibatches_match_a_plain_numpy_reference(backend):
    config = Config(n=50, d_in=4, hidden=(6,), d_out=2, epochs=3, lr=0.05, loss="mse", init="he", batch_size=16,
                    dtype="float64")
    trainer = Trainer(config, backend)
    (w1, b1), (w2, b2) = trainer.net.layout.unpack(trainer.start)
    want = minibatch_sgd_reference(trainer.data.x, trainer.data.y, w1, b1, w2, b2, config.lr, 3, 16, config.seed)
    got = trainer.run().params
    for g, w in zip([a for pair in got for a in pair], want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_without_new_options_training_is_what_it_was(backend):
    a, b = train(backend=backend), train(backend=backend, batch_size=100, optimizer="sgd")
    assert a.losses == b.losses and np.array_equal(a.flat_params, b.flat_params)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_each_optimizer_trains_and_is_reproducible(backend, optimizer):
    lr = {"sgd": 1e-3, "momentum": 1e-3, "adam": 1e-2}[optimizer]
    kw = dict(backend=backend, n=200, d_in=3, hidden=(16,), epochs=60, lr=lr, loss="mse", init="he",
              batch_size=32, optimizer=optimizer, log_every=1)
    a, b = train(**kw), train(**kw)
    assert a.losses == b.losses
    assert a.losses[-1][1] < 0.7 * a.losses[0][1]


def first_step(optimizer, g, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
    """The first update of each optimizer from zero state, written from the textbook formulas."""
    if optimizer in ("sgd", "momentum"):
        return -lr * g  # v = 0 * momentum + lr g
    m_hat, v_hat = (1 - beta1) * g / (1 - beta1), (1 - beta2) * g * g / (1 - beta2)
    return -lr * m_hat / (np.sqrt(v_hat) + eps)


@settings(max_examples=200, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    d_in=st.integers(1, 5),
    d_out=st.integers(1, 3),
    batch=st.integers(1, 9),
    optimizer=st.sampled_from(["sgd", "momentum", "adam"]),
    loss=st.sampled_from(["sse", "mse"]),
    seed=st.integers(0, 2**16),
)
def test_property_gradients_and_first_steps_match_finite_differences(hidden, d_in, d_out, batch, optimizer, loss, seed):
    ws = generic_network(resolve("cpu"), [d_in, *hidden, d_out], n=batch, seed=seed)
    k = loss_factor(loss, batch, d_out)
    numeric = finite_difference(ws, k)
    _, analytic = ws.loss_and_grad(k)
    scale = max(np.abs(numeric).max(), 1e-3)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6 * scale)
    net, lr = ws.net, 1e-2
    before = net.params.copy()
    opt = make_optimizer(optimizer, net, lr)
    ws.gradient(opt.grad_scale * k)
    opt.step()
    # the textbook step from the analytic gradient (checked against finite differences above): Adam's step
    # lr * g / (|g| + eps) turns the finite differences' small absolute error on a tiny g into a large one
    want = first_step(optimizer, analytic, lr)
    np.testing.assert_allclose(net.params - before, want, rtol=1e-9, atol=1e-12)


# --- keep and use the model --------------------------------------------------------------------


def test_save_load_predict_evaluate_round_trip(tmp_path, csv_file, backend):
    model_path, preds = tmp_path / "m.npz", tmp_path / "p.csv"
    r = run("train", "--backend", backend.name, "--data", csv_file, "--hidden", "16", "--epochs", "300",
            "--lr", "0.05", "--init", "he", "--save", model_path, "-q")
    assert r.exit_code == 0, r.output
    model = checkpoint.load(str(model_path))
    assert model.sizes == [3, 16, 1] and model.input_names == ["a", "b", "c"] and model.target_names == ["t"]
    assert model.config["epochs"] == 300 and model.dtype == np.float32 and model.version
    r = run("predict", "--backend", backend.name, "--model", model_path, "--data", csv_file, "--out", preds)
    assert r.exit_code == 0, r.output
    written = np.loadtxt(preds, delimiter=",", skiprows=1)
    assert preds.read_text().splitlines()[0] == "t" and written.shape == (300,)
    table = read_table(str(csv_file))
    x, y, _ = columns(model, table, with_targets=True)
    np.testing.assert_allclose(written, outputs(model, x, backend)[:, 0], rtol=1e-6)
    r = run("evaluate", "--backend", backend.name, "--model", model_path, "--data", csv_file, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["rows"] == 300 and s["targets"][0]["r2"] > 0.95
    r2 = 1 - np.sum((written - y[:, 0]) ** 2) / np.sum((y[:, 0] - y[:, 0].mean()) ** 2)
    assert s["targets"][0]["r2"] == pytest.approx(r2, rel=1e-5)


def test_model_saved_on_one_backend_predicts_the_same_on_the_cpu(tmp_path, backend):
    result = train(backend=backend, epochs=50)
    checkpoint.save(str(tmp_path / "m.npz"), result.model)
    model = checkpoint.load(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(model.params, result.flat_params)
    x = np.random.default_rng(5).standard_normal((40, 3))
    np.testing.assert_allclose(outputs(model, x, backend), outputs(model, x, resolve("cpu")), rtol=1e-5, atol=1e-5)


@needs_pyarrow
def test_predict_takes_a_csv_of_the_inputs_by_position(tmp_path):
    """A CSV of the three inputs without the model's names: read by position."""
    checkpoint.save(str(tmp_path / "m.npz"), train(backend=resolve("cpu"), epochs=5).model)
    x = np.random.default_rng(5).standard_normal((40, 3))
    path = tmp_path / "x.csv"
    np.savetxt(path, x, delimiter=",", header="p,q,r", comments="")
    r = run("predict", "--backend", "cpu", "--model", tmp_path / "m.npz", "--data", path)
    assert r.exit_code == 4 and "no column 'x1', 'x2', 'x3'" in r.stderr  # named columns are taken by name
    r = run("predict", "--backend", "cpu", "--model", tmp_path / "m.npz", "--data", path, "--by-position")
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "y1" and len(r.stdout.splitlines()) == 41


def test_bad_model_files_are_one_line_exit_5(tmp_path):
    good = tmp_path / "good.npz"
    checkpoint.save(str(good), train(backend="cpu", epochs=10).model)
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    np.save(tmp_path / "plain.npy", np.arange(3))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with np.load(good) as f:
        newer = {k: f[k] for k in f}
    newer["gpunet_format"] = np.array(checkpoint.FORMAT + 1)
    np.savez(tmp_path / "newer.npz", **newer)
    x = write(tmp_path, "x.csv", "x1,x2,x3\n1,2,3\n")
    for name, says in [("missing.npz", "no such model file"), ("other.npz", "not a gpunet model"),
                       ("plain.npy", "not a gpunet model"), ("cut.npz", "truncated or corrupt"),
                       ("junk.npz", "truncated or corrupt"), ("newer.npz", "upgrade gpunet")]:
        line = one_line_error(run("predict", "--backend", "cpu", "--model", tmp_path / name, "--data", x), 5)
        assert says in line and name in line


@needs_pyarrow
def test_predict_data_with_the_wrong_columns_is_exit_4(tmp_path):
    checkpoint.save(str(tmp_path / "m.npz"), train(backend="cpu", epochs=10).model)
    x = write(tmp_path, "x.csv", "u,v\n1,2\n")
    line = one_line_error(run("predict", "--backend", "cpu", "--model", tmp_path / "m.npz", "--data", x), 4)
    assert "no column 'x1', 'x2', 'x3'" in line
    line = one_line_error(run("predict", "--backend", "cpu", "--model", tmp_path / "m.npz", "--data", x,
                              "--by-position"), 4)
    assert "has 2 columns" in line and "3 inputs" in line
    assert not (tmp_path / "p.csv").exists()


def test_a_diverging_run_saves_nothing(tmp_path):
    r = run("train", "--backend", "cpu", "--lr", "1", "--save", tmp_path / "m.npz")
    assert r.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_when_the_write_fails(tmp_path):
    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(str(tmp_path / "out.npz"), failing)
    assert list(tmp_path.iterdir()) == []


def test_outputs_in_a_missing_folder_fail_before_any_work(tmp_path):
    missing = tmp_path / "no" / "such"
    for args in (["train", "--save", missing / "m.npz"], ["train", "--plot", missing / "l.png"],
                 ["bench", "--workload", "seed", "--json", missing / "b.json"]):
        line = one_line_error(run(*args, "--backend", "cpu"), 2)
        assert "does not exist" in line
    checkpoint.save(str(tmp_path / "m.npz"), train(backend="cpu", epochs=10).model)
    x = write(tmp_path, "x.csv", "x1,x2,x3\n1,2,3\n")
    r = run("predict", "--backend", "cpu", "--model", tmp_path / "m.npz", "--data", x, "--out", missing / "p.csv")
    assert "--out" in one_line_error(r, 2)


def test_a_failed_write_is_one_line_exit_7(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gpunet.files.os.replace", refuse)
    line = one_line_error(run("train", "--backend", "cpu", "--epochs", "10", "--save", tmp_path / "m.npz"), 7)
    assert "No space left on device" in line
    assert list(tmp_path.iterdir()) == []


# --- see it ------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path, csv_file):
    pytest.importorskip("matplotlib")
    r = run("train", "--backend", "cpu", "--data", csv_file, "--epochs", "30", "--plot", tmp_path / "loss.png", "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = one_line_error(run("train", "--backend", "cpu", "--plot", tmp_path / "loss.png"), 2)
    assert "pip install matplotlib" in line
    assert list(tmp_path.iterdir()) == []


# --- faults ------------------------------------------------------------------------------------


def test_stop_event_ends_training_after_the_epoch(backend):
    stop = threading.Event()
    r = train(backend=backend, epochs=1000, stop=stop, on_log=lambda e, l, v: e == 30 and stop.set())
    assert r.interrupted and r.epochs_run == 30 and np.isfinite(r.final_loss)
    assert r.final_loss < r.losses[-1][1]  # the loss after epoch 30's update


def test_ctrl_c_stops_prints_the_loss_saves_and_exits_130(tmp_path):
    model = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpunet", "train", "--backend", "cpu", "--epochs", "100000000", "--log-every",
         "100000", "--save", str(model)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        proc.stdout.readline()  # the first log line: training is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Interrupted at epoch" in err and "Traceback" not in err
    assert checkpoint.load(str(model)).sizes == [3, 32, 1]


def test_out_of_device_memory_names_the_size_and_the_fix(monkeypatch):
    class FakeCuda:
        def out_of_memory(self, error):
            return isinstance(error, MemoryError)

    trainer = Trainer(Config(), resolve("cpu"))
    trainer.backend = FakeCuda()
    monkeypatch.setattr(trainer, "needed_bytes", lambda: 3 * 2**30)
    with pytest.raises(DeviceMemoryError) as err:
        with trainer._out_of_memory():
            raise MemoryError("out of memory")
    assert err.value.exit_code == 6 and "3072 MiB" in str(err.value) and "--batch-size" in str(err.value)
    other = ValueError("a bug")
    with pytest.raises(ValueError) as err:
        with trainer._out_of_memory():
            raise other
    assert err.value is other


def test_dataerror_names_the_file_for_column_problems(csv_file):
    table = read_table(str(csv_file))
    with pytest.raises(DataError, match="no input column is left"):
        table_dataset(table, target="a,b,c,t")

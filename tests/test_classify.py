"""Classification (softmax cross-entropy), activations, weight decay and early stopping: gradients, many-step
trajectories against a plain reference, the command line, saved classifiers, and bad input."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpunet
from gpunet import checkpoint
from gpunet.backend import resolve
from gpunet.data import holdout, table_dataset
from gpunet.gradcheck import finite_difference, generic_network, gradcheck
from gpunet.losses import loss_factor
from gpunet.tabular import read_table
from gpunet.train import Config, Trainer, train
from tests.plain_mlp import train_plain
from tests.planted import wrong_softmax_gradient
from tests.conftest import needs_pyarrow
from tests.clitools import one_line_error, run

ACTIVATIONS = ["relu", "tanh", "sigmoid"]




# --- gradients ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    d_in=st.integers(1, 5),
    d_out=st.integers(2, 4),
    n=st.integers(1, 9),
    loss=st.sampled_from(["sse", "mse", "ce"]),
    activation=st.sampled_from(ACTIVATIONS),
    weight_decay=st.sampled_from([0.0, 0.05, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_property_every_loss_and_activation_matches_finite_differences(hidden, d_in, d_out, n, loss, activation,
                                                                        weight_decay, seed):
    ws = generic_network(resolve("cpu"), [d_in, *hidden, d_out], n=n, seed=seed, activation=activation, loss=loss)
    k = loss_factor(loss, n, d_out)
    numeric = finite_difference(ws, k, weight_decay)
    _, analytic = ws.loss_and_grad(k, weight_decay)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6 * max(np.abs(numeric).max(), 1e-3))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_passes_for_ce_with_weight_decay(backend, activation):
    ws = generic_network(backend, [4, 9, 6, 3], n=11, activation=activation, loss="ce")
    assert max(e for _, e in gradcheck(ws, weight_decay=0.3)) < 1e-6


def test_a_wrong_softmax_gradient_is_caught(monkeypatch):
    wrong_softmax_gradient(monkeypatch)
    errors = dict(gradcheck(generic_network(resolve("cpu"), [3, 8, 4], loss="ce")))
    assert errors["w2"] > 1e-2 and errors["b2"] > 1e-2
    r = run("gradcheck", "--backend", "cpu", "--loss", "ce", "--d-out", "3")
    assert r.exit_code == 1 and "FAIL" in r.stdout


def test_check_catches_a_wrong_softmax_gradient(monkeypatch):
    args = ("check", "--backends", "cpu", "--reference", "--loss", "ce", "--d-out", "3", "--lr", "0.5", "--epochs", "50")
    assert run(*args).exit_code == 0
    wrong_softmax_gradient(monkeypatch, "float32")  # the float64 reference stays right
    r = run(*args)
    assert r.exit_code == 1 and "FAIL" in r.stdout


def test_softmax_is_stable_for_huge_logits(backend):
    ws = generic_network(backend, [3, 4, 3], n=5, loss="ce")
    ws.net.params[...] *= 1e4  # logits in the tens of thousands: exp would overflow without the shift
    loss, grad = ws.loss_and_grad(1.0)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))


# --- many steps against a plain reference -----------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss,activation,decay,batch,every", [
    ("ce", "relu", 0.0, None, 1), ("ce", "tanh", 0.01, 16, 1), ("mse", "sigmoid", 0.1, None, 1),
    ("sse", "relu", 0.05, 13, 1),
    # full batch between log points: the step is one list of calls (with sgd and momentum)
    ("ce", "relu", 0.01, None, 4), ("sse", "relu", 0.0, None, 6),
])
def test_trajectories_match_a_plain_reference_over_many_steps(backend, optimizer, loss, activation, decay, batch,
                                                             every):
    lr = {"sgd": 0.05, "momentum": 0.02, "adam": 0.01}[optimizer] / (50 if loss == "sse" else 1)
    config = Config(n=60, d_in=4, hidden=(7, 5), d_out=3, epochs=25, lr=lr, loss=loss, init="he", dtype="float64",
                    optimizer=optimizer, activation=activation, weight_decay=decay, batch_size=batch,
                    log_every=every)
    trainer = Trainer(config, backend)
    layers = trainer.net.layout.unpack(trainer.start)
    want_losses, ws, bs = train_plain(trainer.data.x, trainer.data.y, [w.copy() for w, _ in layers],
                                      [b.copy() for _, b in layers], config)
    result = trainer.run()
    for (w, b), w_ref, b_ref in zip(result.params, ws, bs):
        np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-12)
    if batch is None:  # full batch: each logged loss is the plain one (mini-batch losses sum differently)
        np.testing.assert_allclose([l for _, l in result.losses], want_losses[every - 1 :: every], rtol=1e-10)


# --- training a classifier --------------------------------------------------------------------


def test_synthetic_classes_are_the_argmax_of_the_targets_and_training_learns(backend):
    r = train(backend=backend, loss="ce", d_out=3, n=400, lr=0.5, epochs=200, val_split=0.25, log_every=50,
              init="he", activation="tanh")
    assert [e for e, _ in r.accuracies] == [50, 100, 150, 200] and len(r.val_accuracies) == 4
    # chance is about 1/3; the noise on the targets caps any classifier near 0.70 (the true rule's accuracy)
    assert r.accuracies[-1][1] > 0.6 and r.val_accuracies[-1][1] > 0.55
    assert r.losses[-1][1] < r.losses[0][1] and r.model.classes.tolist() == [0, 1, 2]


def test_weight_decay_is_in_the_loss_and_shrinks_the_weights():
    plain = train(backend="cpu", dtype="float64", epochs=1)
    decayed = train(backend="cpu", dtype="float64", epochs=1, weight_decay=0.5)
    # the first epoch's loss is taken at the start: the data loss plus 0.5 / 2 * sum(w^2) there
    assert decayed.final_loss == pytest.approx(plain.final_loss + 0.25 * _start_sq_weights(), rel=1e-12)
    long_plain = train(backend="cpu", dtype="float64", epochs=200)
    long_decayed = train(backend="cpu", dtype="float64", epochs=200, weight_decay=0.5)
    assert _sq_weights(long_decayed) < _sq_weights(long_plain)


def _sq_weights(result):
    return sum(float(np.sum(w**2)) for w, _ in result.params)


def _start_sq_weights():
    trainer = Trainer(Config(dtype="float64"), resolve("cpu"))
    return sum(float(np.sum(w**2)) for w, _ in trainer.net.layout.unpack(trainer.start))


def test_early_stopping_keeps_the_best_epochs_parameters(backend):
    kw = dict(backend=backend, loss="ce", d_out=3, n=120, hidden=(64,), lr=2.0, epochs=400, val_split=0.3,
              log_every=10, init="he", dtype="float64")
    r = train(**kw, early_stop=3)  # a large lr on few rows: the validation loss turns up soon
    assert r.stopped_early and r.epochs_run == r.best_epoch + 30
    assert r.best_val_loss == min(l for _, l in r.val_losses)
    again = train(**{**kw, "epochs": r.best_epoch})  # the same run, stopped at the best epoch
    np.testing.assert_array_equal(r.flat_params, again.flat_params)
    np.testing.assert_array_equal(r.model.params, again.flat_params)


def test_api_takes_the_sizes_from_the_data():
    """20,000 rows with batches of 200: the batch size is checked against the data, not the default n = 100."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 5))
    data = gpunet.data.Dataset(x, x[:, :1] * 2, None, None, gpunet.tabular.Scaler.identity(5),
                               gpunet.tabular.Scaler.identity(1), list("abcde"), ["t"])
    r = gpunet.train(data=data, batch_size=200, epochs=1, loss="mse", backend="cpu", hidden=(8,), init="he", lr=1e-2)
    assert r.config.n == 20000 and r.config.d_in == 5 and r.epochs_run == 1


# --- files, commands and models ----------------------------------------------------------------


@pytest.fixture
def labelled_csv(tmp_path):
    """Three named classes decided by which of a, b, c is largest (with a little noise), and a text label column."""
    pytest.importorskip("pyarrow")  # the tests that take it read or write it through pyarrow
    rng = np.random.default_rng(1)
    x = rng.standard_normal((450, 4))
    names = np.array(["cat", "dog", "emu"])
    label = names[np.argmax(x[:, :3] + 0.2 * rng.standard_normal((450, 3)), axis=1)]
    path = tmp_path / "animals.csv"
    rows = [",".join(f"{v:.6f}" for v in r) + f",{l}" for r, l in zip(x, label)]
    path.write_text("a,b,c,d,kind\n" + "\n".join(rows) + "\n")
    return path


def test_string_labels_train_save_predict_and_evaluate(tmp_path, labelled_csv, backend):
    model_path, out = tmp_path / "m.npz", tmp_path / "p.csv"
    r = run("train", "--backend", backend.name, "--data", labelled_csv, "--loss", "ce", "--hidden", "16",
            "--optimizer", "adam", "--lr", "0.02", "--epochs", "60", "--log-every", "20", "--save", model_path)
    assert r.exit_code == 0, r.output
    assert "Acc:  " in r.stdout and "Val acc:  " in r.stdout
    model = checkpoint.load(str(model_path))
    assert model.classes.tolist() == ["cat", "dog", "emu"] and model.sizes == [4, 16, 3]
    r = run("predict", "--backend", backend.name, "--model", model_path, "--data", labelled_csv, "--out", out, "--proba")
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert lines[0] == "kind,cat,dog,emu" and len(lines) == 451
    truth = [line.rsplit(",", 1)[1] for line in labelled_csv.read_text().splitlines()[1:]]
    predicted = [line.split(",")[0] for line in lines[1:]]
    assert np.mean([p == t for p, t in zip(predicted, truth)]) > 0.85
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    r = run("evaluate", "--backend", backend.name, "--model", model_path, "--data", labelled_csv, "--json")
    s = json.loads(r.stdout)
    assert s["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))
    assert np.sum(s["confusion"]) == 450 and [c["class"] for c in s["per_class"]] == ["cat", "dog", "emu"]
    assert s["log_loss"] > 0 and s["unknown_labels"] == 0


def test_evaluate_report_precision_recall_f1_and_unknown_labels(tmp_path, labelled_csv):
    model_path = tmp_path / "m.npz"
    assert run("train", "--backend", "cpu", "--data", labelled_csv, "--loss", "ce", "--epochs", "5", "-q",
               "--save", model_path).exit_code == 0
    text = labelled_csv.read_text().replace(",cat\n", ",lion\n", 3)  # three rows of a class the model never saw
    other = tmp_path / "other.csv"
    other.write_text(text.replace("a,b,c,d,kind", "a,b,c,d,animal"))
    r = run("evaluate", "--backend", "cpu", "--model", model_path, "--data", other, "--target", "animal", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["unknown_labels"] == 3 and s["rows"] == 450
    confusion = np.array(s["confusion"])
    assert confusion.sum() == 447 and s["accuracy"] == pytest.approx(np.trace(confusion) / 450)
    for c, row in zip(s["per_class"], confusion):  # precision, recall and F1 from the confusion matrix
        k = s["classes"].index(c["class"])
        assert c["recall"] == pytest.approx(confusion[k, k] / row.sum())
        assert c["precision"] == pytest.approx(confusion[k, k] / confusion[:, k].sum())
    r = run("evaluate", "--backend", "cpu", "--model", model_path, "--data", other, "--target", "animal")
    assert "3 rows have a label the model does not know" in r.stderr and "confusion matrix" in r.stdout


@needs_pyarrow
def test_integer_labels_and_predict_with_other_column_names(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 2))
    label = (x[:, 0] > x[:, 1]).astype(int) * 5 + 2  # classes 2 and 7
    path, renamed = tmp_path / "ints.csv", tmp_path / "renamed.csv"
    np.savetxt(path, np.column_stack([x, label]), delimiter=",", header="p,q,y", comments="", fmt=["%.6f", "%.6f", "%d"])
    np.savetxt(renamed, np.column_stack([label, x]), delimiter=",", header="cls,u,v", comments="",
               fmt=["%d", "%.6f", "%.6f"])
    model_path = tmp_path / "m.npz"
    r = run("train", "--backend", "cpu", "--data", path, "--loss", "ce", "--lr", "0.5", "--epochs", "100", "-q",
            "--save", model_path)
    assert r.exit_code == 0, r.output
    r = run("predict", "--backend", "cpu", "--model", model_path, "--data", renamed, "--target", "cls")
    assert r.exit_code == 4 and "no column 'p', 'q'" in r.output and "--by-position" in r.output  # names differ
    r = run("predict", "--backend", "cpu", "--model", model_path, "--data", renamed, "--target", "cls", "--by-position")
    assert r.exit_code == 0, r.output
    got = np.array([int(v) for v in r.stdout.splitlines()[1:]])
    assert set(got) <= {2, 7} and np.mean(got == label) > 0.9
    r = run("evaluate", "--backend", "cpu", "--model", model_path, "--data", renamed, "--target", "cls", "--json",
            "--by-position")
    assert json.loads(r.stdout)["classes"] == [2, 7]


def test_a_format_1_model_still_loads(tmp_path, labelled_csv):
    """A regressor saved before classes and activations existed (format 1) loads and predicts as ReLU."""
    path = tmp_path / "old.npz"
    result = train(backend="cpu", epochs=3)
    checkpoint.save(str(path), result.model)
    with np.load(path) as f:
        keys = {k: f[k] for k in f}
    keys["gpunet_format"] = np.array(1)
    config = json.loads(str(keys["config"]))
    del config["activation"], config["weight_decay"], config["early_stop"]
    keys["config"] = np.array(json.dumps(config))
    np.savez(path, **keys)
    model = checkpoint.load(str(path))
    assert model.activation == "relu" and model.classes is None
    np.testing.assert_array_equal(model.params, result.flat_params)


# --- bad input -----------------------------------------------------------------------------------


def test_bad_classification_input(tmp_path, labelled_csv):
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,b,kind\n1,2,x\n3,4,x\n5,6,x\n7,8,x\n9,1,x\n")
    assert "one class" in one_line_error(run("train", "--backend", "cpu", "--data", one_class, "--loss", "ce"), 4)
    missing = tmp_path / "missing.csv"  # a row without a label is dropped, and said so
    missing.write_text("a,b,kind\n1,2,x\n3,4,\n5,6,y\n")
    r = run("train", "--backend", "cpu", "--data", missing, "--loss", "ce", "--epochs", "2")
    assert r.exit_code == 0 and "dropped 1 rows whose target (kind) is missing" in r.stderr, r.output
    line = one_line_error(run("train", "--backend", "cpu", "--data", labelled_csv, "--loss", "ce", "--target", "a,kind"), 4)
    assert "one target column" in line
    assert "--d-out" in one_line_error(run("train", "--backend", "cpu", "--loss", "ce"), 2)
    assert "--early-stop" in one_line_error(run("train", "--backend", "cpu", "--early-stop", "3"), 2)
    assert "--weight-decay" in one_line_error(run("train", "--backend", "cpu", "--weight-decay", "-1"), 2)
    assert "--activation" in one_line_error(run("train", "--backend", "cpu", "--activation", "swish"), 2)
    text = one_line_error(run("train", "--backend", "cpu", "--data", labelled_csv, "--task", "regression"), 4)
    assert "kind" in text and "--task classification" in text  # text target, asked to be a regression


@needs_pyarrow
def test_unknown_validation_labels_warn_once(tmp_path):
    path = tmp_path / "rare.csv"
    rows = [f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(60)]
    rows[holdout(60, 0.2, 42)[1][0]] = "1,1,zebra"  # a class that only a validation row has
    path.write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    data = table_dataset(read_table(str(path)), val_split=0.2, seed=42, classify=True)
    assert data.classes.tolist() == ["a", "b"] and data.y_val.sum() == len(data.y_val) - 1
    r = run("train", "--backend", "cpu", "--data", path, "--loss", "ce", "--epochs", "10")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("1 validation rows have a label not among the training rows' classes") == 1


def test_the_warm_up_epoch_leaves_no_trace(backend):
    """CUDA's untimed warm-up epoch (run here by hand on any backend) changes neither the start nor the result."""
    config = Config(loss="ce", d_out=3, n=90, val_split=0.2, batch_size=32, optimizer="adam", lr=1e-2, epochs=20,
                    weight_decay=0.01, early_stop=5, dtype="float64")
    cold, warmed = Trainer(config, backend), Trainer(config, backend)
    warmed.warm_up()
    a, b = cold.run(), warmed.run()
    assert a.losses == b.losses and a.val_accuracies == b.val_accuracies
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert warmed.warm and (cold.warm or backend.name == "cuda")


@needs_pyarrow
@pytest.mark.parametrize("labels", [["cat", "dog"], ["a,b", 'say "hi"']])
def test_predictions_csv_reads_back(labels):
    """pyarrow's fast path, and the csv module's for labels that need quotes: the same rows read back."""
    import csv
    import io

    from gpunet.inference import write_csv

    probs = np.array([0.1, 1 / 3], dtype=np.float32)
    out = io.BytesIO()
    write_csv(out, ["kind", "p,1"], [np.array(labels), probs.astype(np.float64)], np.float32)
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert rows[0] == ["kind", "p,1"] and [r[0] for r in rows[1:]] == labels
    assert [np.float32(r[1]) for r in rows[1:]] == probs.tolist() and rows[2][1] == "0.33333334"


def test_a_label_that_needs_quotes_after_many_rows_is_written_once():
    import csv
    import io

    from gpunet.inference import write_csv

    labels = np.array(["plain"] * 99_999 + ["New York, NY"])  # pyarrow writes in batches: decide before writing
    out = io.BytesIO()
    write_csv(out, ["city"], [labels])
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert len(rows) == 100_001 and rows[-1] == ["New York, NY"] and rows[1] == ["plain"]

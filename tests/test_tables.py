"""A user's own table with no options: the task from the target, text one-hot, missing cells filled, columns by
name, the preparation saved with the model and applied by predict, evaluate and the Python API."""

import json
import os
import warnings

import numpy as np
import pytest

import gpunet
from gpunet import checkpoint
from gpunet.data import Select, table_dataset
from gpunet.errors import ConfigError, DataError
from gpunet.prepare import Preparation, infer_task
from gpunet.tabular import Table, read_table
from tests.clitools import one_line_error, run
from tests.conftest import needs_pyarrow

pytestmark = needs_pyarrow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(ROOT, "examples", "penguins.csv")


def small_table():
    """Six rows: a number column with a missing cell, a text column with a missing cell, and a label."""
    x = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    colour = np.array(["red", "blue", "", "red", "green", "blue"], dtype=object)
    label = np.array(["a", "b", "a", "b", "a", "b"], dtype=object)
    return Table(["x", "colour", "label"], [x, colour, label], "t")


def test_preparation_fills_from_the_training_rows_and_one_hot_encodes():
    table, train = small_table(), np.array([0, 1, 2, 3])  # green is only in a later row
    prep, notes = Preparation.fit(table, [0, 1], train)
    assert notes == []
    assert prep.columns[0].fill == pytest.approx(np.mean([1.0, 3.0, 4.0]))  # the training rows' present values
    assert prep.columns[1].categories == ["", "blue", "red"]  # "" holds the missing cells, seen in training
    assert prep.features == ["x", "colour=(missing)", "colour=blue", "colour=red"]
    x, filled, unseen = prep.transform(table, [0, 1])
    expected = np.array([[1, 0, 0, 1], [8 / 3, 0, 1, 0], [3, 1, 0, 0], [4, 0, 0, 1], [5, 0, 0, 0], [6, 0, 1, 0]])
    np.testing.assert_allclose(x, expected)
    assert filled == {"x": 1, "colour": 1} and unseen == {"colour": 1}  # green: all zeros
    assert Preparation.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep


def test_missing_error_refuses_and_a_feature_with_no_value_is_named():
    table = small_table()
    prep, _ = Preparation.fit(table, [0], np.arange(6), missing="error")
    with pytest.raises(DataError, match=r"row 2, column 1 \(x\) is not finite: nan"):
        prep.transform(table, [0])
    empty = Table(["e", "y"], [np.full(4, np.nan), np.arange(4.0)], "e")
    with pytest.raises(DataError, match="input column 'e' has no values on the training rows; --drop it"):
        Preparation.fit(empty, [0], np.arange(4))


def test_a_column_of_numbers_with_a_stray_word_is_an_error_not_categories():
    table = Table(["n", "y"], [np.array(["1", "2", "oops", "4"], dtype=object), np.arange(4.0)], "n")
    with pytest.raises(DataError, match=r"column 1 \(n\) is not a number: 'oops'"):
        prep, _ = Preparation.fit(table, [0], np.arange(4))
        prep.transform(table, [0])


@pytest.mark.parametrize("column, loss, task, classify", [
    (np.array(["x", "y", "x"], dtype=object), None, "auto", True),  # text labels
    (np.array([0, 1, 2] * 10), None, "auto", True),  # few integers
    (np.arange(30), None, "auto", False),  # many integers
    (np.array([0.5, 1.5, 0.5]), None, "auto", False),  # numbers
    (np.array([0, 1, 0]), "mse", "auto", False),  # --loss wins
    (np.array(["x", "y", "x"], dtype=object), None, "regression", False),
    (np.arange(300), None, "classification", True),  # explicit: allowed
])
def test_the_task_comes_from_the_target(column, loss, task, classify):
    table = Table(["a", "t"], [np.zeros(len(column)), column], "t")
    got, note = infer_task(table, 1, task, loss)
    assert got == classify
    assert (note is None) == (loss is not None or task != "auto")
    if note:
        assert "--task" in note and ("classification" if classify else "regression") in note


def test_many_numbers_asked_to_be_classes_are_refused():
    table = Table(["a", "t"], [np.zeros(300), np.arange(300)], "t")
    with pytest.raises(ConfigError, match="--task classification"):
        infer_task(table, 1, "auto", "ce")
    with pytest.raises(ConfigError, match="disagree"):
        infer_task(table, 1, "regression", "ce")


def penguin_split(tmp_path):
    """The penguins table as published, every fourth row held out (without its species for predict)."""
    lines = open(PENGUINS).read().splitlines()
    train, test = [lines[0]], [lines[0]]
    for i, line in enumerate(lines[1:]):
        (test if i % 4 == 0 else train).append(line)
    paths = [tmp_path / "train.csv", tmp_path / "test.csv"]
    for path, rows in zip(paths, (train, test)):
        path.write_text("\n".join(rows) + "\n")
    return paths


def test_penguins_as_published_train_well_with_no_options(tmp_path):
    train_path, test_path = penguin_split(tmp_path)
    model = tmp_path / "m.npz"
    r = run("train", "--backend", "cpu", "--data", train_path, "--target", "species", "--save", model)
    assert r.exit_code == 0, r.output
    assert "task: classification (target 'species' holds text)" in r.stderr and "filled" in r.stderr
    assert ", table defaults:" in r.stdout
    r = run("evaluate", "--backend", "cpu", "--model", model, "--data", test_path, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["accuracy"] >= 0.95, r.output
    r = run("predict", "--backend", "cpu", "--model", model, "--data", test_path)
    assert r.exit_code == 0 and "ignored 1 columns the model does not take (species)" in r.stderr
    predicted = r.stdout.splitlines()
    assert predicted[0] == "species" and set(predicted[1:]) <= {"Adelie", "Chinstrap", "Gentoo"}  # text stays text
    info = json.loads(run("info", model, "--json").stdout)
    assert info["format"] == 3 and info["task"] == "classification" and info["training"]["defaults"] == "table"
    island = next(c for c in info["inputs"] if c["name"] == "island")
    assert island["kind"] == "category" and island["categories"] == ["Biscoe", "Dream", "Torgersen"]
    text = run("info", model).stdout
    assert "one-hot over Biscoe, Dream, Torgersen" in text and "layers 11-100-3" in text


def test_the_same_preparation_reaches_the_network_everywhere(tmp_path):
    """predict's columns by name, in any order, give what the Python API gives on a DataFrame and an array."""
    pd = pytest.importorskip("pandas")
    train_path, test_path = penguin_split(tmp_path)
    result = gpunet.train(data=str(train_path), target="species", backend="cpu", epochs=20)
    assert any("task: classification" in n for n in result.notes)
    model = tmp_path / "m.npz"
    checkpoint.save(str(model), result.model)
    frame = pd.read_csv(test_path).drop(columns="species")
    shuffled = frame[frame.columns[::-1]]
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    r = run("predict", "--backend", "cpu", "--model", model, "--data", tmp_path / "shuffled.csv", "--proba")
    assert r.exit_code == 0, r.output
    cli_proba = np.loadtxt(r.stdout.splitlines()[1:], delimiter=",", usecols=(1, 2, 3))
    proba = gpunet.predict(str(model), frame, proba=True)  # backend auto: the CPU here
    np.testing.assert_allclose(proba, cli_proba, rtol=1e-6, atol=1e-7)
    labels = gpunet.predict(result.model, str(tmp_path / "shuffled.csv"))
    assert labels.tolist() == [line.split(",")[0] for line in r.stdout.splitlines()[1:]]
    array = frame.to_numpy(dtype=object)  # no names: by position, in the training order
    np.testing.assert_allclose(gpunet.predict(result.model, array, proba=True), proba, rtol=1e-6, atol=1e-7)


def test_inputs_are_matched_by_name_missing_is_exit_4_and_kept_columns_pass_through(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"id{i},{a:.4f},{b:.4f},{2 * a - b:.4f}" for i, (a, b) in enumerate(rng.standard_normal((80, 2)))]
    path = tmp_path / "d.csv"
    path.write_text("id,a,b,y\n" + "\n".join(rows) + "\n")
    model = tmp_path / "m.npz"
    r = run("train", "--backend", "cpu", "--data", path, "--keep", "id", "--epochs", "5", "--save", model, "-q")
    assert r.exit_code == 0, r.output
    (tmp_path / "swapped.csv").write_text("b,id,a,extra\n1,k,2,9\n")
    r = run("predict", "--backend", "cpu", "--model", model, "--data", tmp_path / "swapped.csv")
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "id,y" and r.stdout.splitlines()[1].startswith("k,")
    assert "ignored 1 columns the model does not take (extra)" in r.stderr
    by_name = float(r.stdout.splitlines()[1].split(",")[1])
    (tmp_path / "ordered.csv").write_text("id,a,b\nk,2,1\n")
    r = run("predict", "--backend", "cpu", "--model", model, "--data", tmp_path / "ordered.csv")
    assert float(r.stdout.splitlines()[1].split(",")[1]) == by_name
    (tmp_path / "renamed.csv").write_text("id,A,b\nk,2,1\n")
    line = one_line_error(run("predict", "--backend", "cpu", "--model", model, "--data", tmp_path / "renamed.csv"), 4)
    assert "no column 'a'" in line and "--by-position" in line


def test_column_options_and_their_errors(tmp_path):
    path = tmp_path / "d.csv"
    cats = "\n".join(f"{i % 7},{i * 0.5},c{i},{i % 3}.5,{(i % 7) * 2 + 1.5}" for i in range(1200))
    path.write_text("a,b,name,c,y\n" + cats + "\n")
    line = one_line_error(run("train", "--backend", "cpu", "--data", path, "--features", "a,zzz"), 4)
    assert "--features names no column 'zzz'" in line
    r = run("train", "--backend", "cpu", "--data", path, "--epochs", "1", "-q")  # --quiet keeps the warnings
    assert r.exit_code == 0 and "text column 'name' has 960 categories" in r.stderr, r.output  # the training rows'
    assert r.stderr.count("Warning: ") == 2 and "240 cells hold a category not seen in training" in r.stderr
    assert "(name: 240); they are all zeros" in r.stderr
    r = run("train", "--backend", "cpu", "--data", path, "--drop", "name", "--epochs", "1", "--json")
    out = json.loads(r.stdout)
    assert out["config"]["d_in"] == 3 and not any("Warning" in n for n in out["notes"]) and out["notes"]
    r = run("train", "--backend", "cpu", "--data", path, "--features", "b,a", "--epochs", "1", "--save",
            tmp_path / "m.npz", "-q")
    assert r.exit_code == 0 and checkpoint.load(str(tmp_path / "m.npz")).input_names == ["b", "a"]
    all_missing = tmp_path / "gap.csv"
    all_missing.write_text("a,g,y\n" + "\n".join(f"{i},,{i * 1.5}" for i in range(20)) + "\n")
    line = one_line_error(run("train", "--backend", "cpu", "--data", all_missing), 4)
    assert "'g' has no values on the training rows; --drop it" in line


def test_missing_cells_are_filled_counted_and_refused_on_request(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("a,b,y\n1,NA,1.5\n2,3,2.5\n,4,3.5\n4,5,\n5,N/A,5.5\n6,7,6.5\n7,8,7.25\n8,9,8.75\n")
    r = run("train", "--backend", "cpu", "--data", path, "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "dropped 1 rows whose target (y) is missing" in r.stderr and "filled 3 missing cells" in r.stderr
    line = one_line_error(run("train", "--backend", "cpu", "--data", path, "--missing", "error"), 4)
    assert "column 2 (b) is empty" in line or "column 1 (a) is empty" in line


def test_a_semicolon_file_gets_a_hint_and_reads_with_delimiter(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;y\n" + "\n".join(f"{i};{i % 3};{i * 0.5 + 0.25}" for i in range(30)) + "\n")
    line = one_line_error(run("train", "--backend", "cpu", "--data", path), 4)
    assert "read as one column, but its header holds ';': give --delimiter ';'" in line
    r = run("train", "--backend", "cpu", "--data", path, "--delimiter", ";", "--epochs", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["config"]["d_in"] == 2, r.output
    assert "--delimiter" in one_line_error(run("train", "--backend", "cpu", "--delimiter", ";"), 2)


def test_a_format_2_model_still_loads_and_matches_by_name(tmp_path):
    """A model written before the preparation was saved (format 2): its inputs are numbers, taken by name."""
    path = tmp_path / "old.npz"
    result = gpunet.train(backend="cpu", epochs=3, d_in=2)
    checkpoint.save(str(path), result.model)
    with np.load(path) as f:
        keys = {k: f[k] for k in f if k not in ("prep", "metrics")}
    keys["gpunet_format"] = np.array(2)
    np.savez(path, **keys)
    model = checkpoint.load(str(path))
    assert model.file_format == 2 and model.prep.names == ["x1", "x2"] and model.metrics == {}
    x = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_allclose(gpunet.predict(model, x, backend="cpu"), gpunet.predict(result.model, x, backend="cpu"))
    assert json.loads(run("info", path, "--json").stdout)["format"] == 2


def test_table_defaults_only_with_data_and_the_tutorial_untouched(tmp_path):
    data = table_dataset(read_table(PENGUINS), target="species", classify=True, select=Select(drop=["year"]))
    assert data.prep.names == ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
    result = gpunet.train(data=data, backend="cpu", epochs=3)
    c = result.config
    assert (c.defaults, c.optimizer, c.lr, c.hidden, c.batch_size, c.loss) == ("table", "adam", 1e-3, (100,), 200, "ce")
    assert gpunet.train(backend="cpu", epochs=3).config.defaults == "tutorial"
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "with --data: adam" in help_text and "with --data: min(200, rows)" in help_text
    assert "with --data" not in run("check", "--help").stdout


def test_small_things_a_user_meets(tmp_path):
    r = run()
    assert r.exit_code == 0 and "Commands:" in r.stdout and "Error" not in r.output  # bare gpunet: its help
    assert "got 0" in one_line_error(run("train", "--hidden", "0"), 2)
    np.savez(tmp_path / "objects.npz", gpunet_format=np.array([{"a": 1}], dtype=object))
    (tmp_path / "x.csv").write_text("x1,x2,x3\n1,2,3\n")
    line = one_line_error(run("predict", "--model", tmp_path / "objects.npz", "--data", tmp_path / "x.csv"), 5)
    assert "not a gpunet model" in line and "allow_pickle" not in line
    line = one_line_error(run("info", tmp_path / "x.csv"), 5)  # a table given as the model
    assert "not a gpunet model" in line and "pickle" not in line
    assert "--distributed" not in run("predict", "--help").stdout
    assert "gpunet check ... --distributed" in " ".join(run("check", "--help").stdout.split())


def test_the_progress_bar_is_cleared_before_a_log_line(capsys):
    from gpunet.cli_train import Progress

    progress = Progress(10, after=0.0)
    progress(1)  # the bar is drawn
    capsys.readouterr()
    progress.clear()
    assert capsys.readouterr().err == "\r\033[K"
    progress.close()
    idle = Progress(10, after=3600.0)
    idle(1)  # not drawn yet: nothing to clear
    idle.clear()
    assert capsys.readouterr().err == ""


def test_booleans_are_the_same_inputs_from_a_csv_a_parquet_file_and_a_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"flag": rng.random(120) > 0.5, "x": rng.standard_normal(120)})
    frame["y"] = 3.0 * frame.flag + frame.x
    frame.to_csv(tmp_path / "b.csv", index=False)  # True / False as text
    frame.to_parquet(tmp_path / "b.parquet")  # a boolean column
    model = tmp_path / "m.npz"
    assert run("train", "--backend", "cpu", "--data", tmp_path / "b.csv", "--target", "y", "--epochs", "30",
               "--save", model, "-q").exit_code == 0
    by_csv = gpunet.predict(str(model), str(tmp_path / "b.csv"), backend="cpu")
    with warnings.catch_warnings():  # no warning: the same categories from every source
        warnings.simplefilter("error")
        np.testing.assert_array_equal(gpunet.predict(str(model), str(tmp_path / "b.parquet"), backend="cpu"), by_csv)
        np.testing.assert_array_equal(gpunet.predict(str(model), frame, backend="cpu"), by_csv)
    assert checkpoint.load(str(model)).prep.columns[0].categories == ["False", "True"]


def test_missing_cells_refused_where_they_are_and_named_by_their_row(tmp_path):
    rows = [f"{i},{'' if i == 3 else 'abc'[i % 3]},{i * 0.5}" for i in range(40)]
    rows[1] = "1,b,"  # a missing target: the row is dropped, not named
    rows[20] = ",a,10.0"
    path = tmp_path / "m.csv"
    path.write_text("x,c,y\n" + "\n".join(rows) + "\n")
    line = one_line_error(run("train", "--backend", "cpu", "--data", path, "--missing", "error"), 4)
    assert "row 5, column 2 (c) is empty" in line  # the first missing input of a kept row, its CSV line
    nan_text = tmp_path / "n.csv"  # NaN in a text column is a missing cell, as pandas reads it
    nan_text.write_text("x,c,y\n" + "\n".join(f"{i},{'NaN' if i % 5 == 0 else 'ab'[i % 2]},{i}.5" for i in range(30)))
    r = run("train", "--backend", "cpu", "--data", nan_text, "--epochs", "2", "--save", tmp_path / "n.npz")
    assert r.exit_code == 0 and "c: 6" in r.stderr and checkpoint.load(str(tmp_path / "n.npz")).prep.columns[1].categories == ["", "a", "b"]


def test_more_bad_input_is_one_line(tmp_path, capfd):
    path = tmp_path / "d.csv"
    path.write_text("a,label,y\n" + "\n".join(f"{i},{'xy'[i % 2]}," for i in range(10)) + "\n")
    assert "the target (y) has no values" in one_line_error(run("train", "--backend", "cpu", "--data", path), 4)
    line = one_line_error(run("train", "--backend", "cpu", "--data", path, "--target", "label", "--keep", "label"), 4)
    assert "--keep names 'label', the target" in line
    semi = tmp_path / "s.csv"
    semi.write_text("a;b;y\n" + "\n".join(f"{i};{i % 3};{i}.5" for i in range(20)) + "\n")
    result = gpunet.train(data=str(semi), delimiter=";", backend="cpu", epochs=2)
    assert result.config.d_in == 2
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    assert "--delimiter is for CSV files" in one_line_error(
        run("train", "--backend", "cpu", "--data", tmp_path / "x.npy", "--delimiter", ";"), 4)
    cats = tmp_path / "c.csv"
    cats.write_text("g,x,y\n" + "\n".join(f"{'pq'[i % 2]},{i},{i % 2}.5" for i in range(30)) + "\n")
    assert run("train", "--backend", "cpu", "--data", cats, "--epochs", "2", "--save", tmp_path / "c.npz").exit_code == 0
    line = one_line_error(run("predict", "--backend", "cpu", "--model", tmp_path / "c.npz", "--data",
                              tmp_path / "x.npy"), 4)
    assert "holds numbers, but the model takes text there (column 'g')" in line
    floats = tmp_path / "f.csv"  # a category column of whole numbers with a missing cell: no cast warning
    floats.write_text("k,y\n1,0.5\n,1.5\n3,2.5\n" + "".join(f"{i % 4},{i}.5\n" for i in range(20)))
    capfd.readouterr()
    assert run("train", "--backend", "cpu", "--data", floats, "--task", "regression", "--epochs", "1").exit_code == 0
    assert "RuntimeWarning" not in capfd.readouterr().err

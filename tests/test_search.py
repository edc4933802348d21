"""gpunet search: candidates cross-validated on a table with the table defaults, ranked, the best refitted."""

import json
import os

import numpy as np
import pytest

import gpunet
from gpunet import checkpoint
from gpunet.search import candidates, search
from tests.clitools import one_line_error, run
from tests.conftest import needs_pyarrow

pytestmark = needs_pyarrow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IRIS = os.path.join(ROOT, "examples", "iris.csv")


def test_a_fold_score_is_a_model_trained_without_those_rows_scored_on_them():
    pd = pytest.importorskip("pandas")
    given = dict(epochs=60, hidden=(16,))
    found = search(IRIS, given, candidates([1e-2, 1e-6]), folds=3, seeds=2, refit=False, target="species")
    assert found.metric == "accuracy" and [len(c.scores) for c in found.ranked] == [6, 6]
    assert found.ranked[0].options == {"lr": 1e-2} and found.ranked[0].mean > found.ranked[1].mean + 0.2
    frame = pd.read_csv(IRIS)  # fold 0 of seed 0, drawn as search draws it, trained and scored independently
    test = np.sort(np.array_split(np.random.default_rng([42, 3]).permutation(len(frame)), 3)[0])
    train = frame.drop(index=test)
    result = gpunet.train(data=train, target="species", backend="cpu", lr=1e-2, seed=42, **given)
    predicted = gpunet.predict(result.model, frame.iloc[test].drop(columns="species"), backend="cpu")
    good = next(c for c in found.ranked if c.options == {"lr": 1e-2})
    assert good.scores[0] == pytest.approx(np.mean(predicted == frame.species.to_numpy()[test]), abs=1e-12)


def test_the_command_ranks_saves_the_best_and_writes_json(tmp_path):
    r = run("search", "--backend", "cpu", "--data", IRIS, "--target", "species", "--lr", "1e-2,1e-5",
            "--folds", "2", "--epochs", "40", "--save", tmp_path / "best.npz", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lr") and "accuracy (mean of 2 folds x 1 seed)" in lines[0]
    assert lines[1].startswith("0.01") and "Best: lr 0.01" in r.stdout and "task: classification" in r.stderr
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [c["options"] for c in saved["candidates"]] == [{"lr": 0.01}, {"lr": 1e-05}]
    model = checkpoint.load(str(tmp_path / "best.npz"))
    assert model.config["lr"] == 0.01 and model.config["defaults"] == "table"


def test_bad_search_options_are_one_line():
    assert "--data" in one_line_error(run("search", "--backend", "cpu"), 2)
    assert "--folds" in one_line_error(run("search", "--backend", "cpu", "--data", IRIS, "--folds", "1"), 2)
    assert "--lr" in one_line_error(run("search", "--backend", "cpu", "--data", IRIS, "--lr", "fast"), 2)


DIABETES = os.path.join(ROOT, "examples", "diabetes.csv")


def test_a_diverging_candidate_ranks_last_and_the_others_are_kept(tmp_path):
    r = run("search", "--backend", "cpu", "--data", DIABETES, "--lr", "1e15,1e-3", "--folds", "3", "--epochs", "20",
            "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[1].startswith("0.001 ") and lines[2].startswith("1e+15") and "diverged in 3 of 3" in lines[2]
    saved = json.loads((tmp_path / "s.json").read_text())["candidates"]
    assert saved[1]["scores"] == [None] * 3 and saved[1]["diverged"] == 3 and saved[0]["diverged"] == 0
    assert all(isinstance(v, float) for v in saved[0]["scores"])


def test_a_search_whose_every_candidate_diverges_fails_as_train_does():
    r = run("search", "--backend", "cpu", "--data", DIABETES, "--lr", "1e15", "--folds", "2", "--epochs", "5")
    assert "training diverged" in one_line_error(r, 3)


def test_a_score_that_is_nan_without_a_divergence_is_shown_not_raised(tmp_path):
    """R-squared on one held-out row is undefined (NaN): the candidate is not said to diverge, nor the search to
    fail."""
    rows = open(DIABETES).read().splitlines()[:13]
    (tmp_path / "twelve.csv").write_text("\n".join(rows) + "\n")
    r = run("search", "--backend", "cpu", "--data", tmp_path / "twelve.csv", "--task", "regression", "--folds", "12",
            "--epochs", "2", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert "nan" in r.stdout.splitlines()[1] and "diverged" not in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["candidates"][0]["diverged"] == 0


def test_a_terminal_sees_which_stack_trains_and_how_many_of_its_models_still_do(monkeypatch, capsys):
    import sys

    from gpunet import cli_search

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(cli_search.time, "monotonic", iter(range(0, 10**6)).__next__)  # 1 s between calls
    for given, first, last in [
        (dict(epochs=30, hidden=(8,)), "stack 1 of 1 (4 models): epoch 1, 4 training; fits done 0 of 4",  # small
         "stack 1 of 1 (4 models): epoch 30, 4 training; fits done 0 of 4"),  # whole batches: both folds at once
        (dict(epochs=30, hidden=(8,), batch_size=16), "stack 1 of 2 (2 models): epoch 1, 2 training; fits done 0 of 4",
         "stack 2 of 2 (2 models): epoch 30, 2 training; fits done 2 of 4")]:  # in batches: a stack per fold
        each = cli_search.progress(candidates([1e-2, 1e-3]), 1, 2)
        search(IRIS, given, candidates([1e-2, 1e-3]), folds=2, refit=False, target="species", on_epoch=each)
        lines = capsys.readouterr().err.split("\r\033[K")
        assert first in lines and last in lines


def test_a_gpus_single_stack_of_every_fold_and_seed_scores_as_the_cpus_stacks(monkeypatch):
    from gpunet import search as search_module
    from gpunet import stack_train

    given = dict(epochs=40, hidden=(8,), batch_size=32, dtype="float64")
    cpu = search(IRIS, given, candidates([1e-2, 3e-3], [1e-3, 0.0]), folds=3, seeds=2, refit=False, target="species")
    for module in (search_module, stack_train):
        monkeypatch.setattr(module, "one_stack", lambda *a: True)
    seen = []
    one = search(IRIS, given, candidates([1e-2, 3e-3], [1e-3, 0.0]), folds=3, seeds=2, refit=False, target="species",
                 on_epoch=lambda stack, stacks, t, running, models: seen.append(models))
    assert set(seen) == {24}  # 4 candidates x 3 folds x 2 seeds, one stack
    assert [c.options for c in one.ranked] == [c.options for c in cpu.ranked]
    for a, b in zip(one.ranked, cpu.ranked):
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-12)


def test_a_search_in_whole_batches_given_as_none():
    found = search(IRIS, dict(epochs=5, batch_size=None), candidates([1e-2, 1e-3]), folds=3, refit=False,
                   target="species")
    assert [len(c.scores) for c in found.ranked] == [3, 3] and not any(c.diverged for c in found.ranked)


def test_the_fits_done_count_the_models_that_have_stopped(monkeypatch, capsys):
    """One stack of every fold: its models that stop early are fits done, before the stack ends."""
    import sys

    from gpunet import cli_search

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(cli_search.time, "monotonic", iter(range(0, 10**6)).__next__)
    each = cli_search.progress(candidates([1e-2, 1e-3]), 1, 2)
    for stack, stacks, epoch, running, models in [(0, 1, 5, 4, 4), (0, 1, 9, 1, 4)]:
        each(stack, stacks, epoch, running, models)
    each = cli_search.progress(candidates([1e-2, 1e-3]), 1, 2)
    for stack, stacks, epoch, running, models in [(0, 2, 9, 1, 2), (1, 2, 3, 2, 2)]:
        each(stack, stacks, epoch, running, models)
    lines = capsys.readouterr().err.split("\r\033[K")
    assert "stack 1 of 1 (4 models): epoch 9, 1 training; fits done 3 of 4" in lines
    assert "stack 2 of 2 (2 models): epoch 3, 2 training; fits done 2 of 4" in lines


def test_one_candidate_says_that_nothing_is_compared():
    r = run("search", "--backend", "cpu", "--data", IRIS, "--target", "species", "--folds", "2", "--epochs", "2")
    assert r.exit_code == 0 and "one candidate is scored and nothing compared" in r.stderr
    r = run("search", "--backend", "cpu", "--data", IRIS, "--target", "species", "--folds", "2", "--epochs", "2",
            "--lr", "1e-3,1e-2")
    assert r.exit_code == 0 and "nothing compared" not in r.stderr

"""Data-parallel training over real MPI ranks (mpiexec from the `mpich` wheel): P ranks follow one process's
trajectory, the command line's launch and outputs, and failures that end every rank."""

import json
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import gpunet
from gpunet import checkpoint
from gpunet.cli import cli
from gpunet.comm import BLAS_THREAD_VARS

pytest.importorskip("mpi4py", reason="the distributed tests need mpi4py and mpich (gpunet's extra [mpi])")
BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN) or shutil.which("mpiexec")
GPUNET = shutil.which("gpunet", path=BIN) or shutil.which("gpunet")
HERE = os.path.dirname(os.path.abspath(__file__))

if MPIEXEC is None:
    pytest.skip("no mpiexec: pip install mpich", allow_module_level=True)

# Every loss and optimizer, full batch and mini-batches (13 rows do not divide by 2 or 3 ranks, nor
# 100 by the batch of 16), validation and early stopping, weight decay and activations.
BASE = dict(dtype="float64", n=100, d_in=4, hidden=(9, 5), init="he", epochs=12, log_every=3)
CASES = [
    dict(loss="sse", lr=1e-3),
    dict(loss="mse", lr=0.05, batch_size=16, optimizer="momentum"),
    dict(loss="mse", lr=0.01, batch_size=13, optimizer="adam", weight_decay=0.01, activation="tanh"),
    dict(loss="ce", d_out=3, lr=0.3, val_split=0.25),
    dict(loss="ce", d_out=4, lr=0.02, batch_size=16, optimizer="adam", val_split=0.2, early_stop=1,
         activation="sigmoid", epochs=60),
    dict(loss="sse", d_out=2, lr=5e-4, batch_size=7, optimizer="sgd", val_split=0.1),
    dict(loss="mse", lr=0.01, batch_size=64, optimizer="adam"),  # a rank's share of a batch below the batch
]


def mpirun(ranks, *args, timeout=120, env=None):
    return subprocess.run([MPIEXEC, "-n", str(ranks), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def one_process():
    return [gpunet.train(backend="cpu", **{**BASE, **case}) for case in CASES]


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_follow_one_process(tmp_path, one_process, ranks):
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([{**BASE, **case} for case in CASES]))
    out = tmp_path / "out.npz"
    r = mpirun(ranks, sys.executable, os.path.join(HERE, "dist_worker.py"), cases, out)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    for i, want in enumerate(one_process):
        assert got[f"meta{i}"].tolist() == [ranks, want.epochs_run, -1 if want.best_epoch is None else want.best_epoch]
        np.testing.assert_allclose(got[f"losses{i}"], [l for _, l in want.losses] + [want.final_loss], rtol=1e-10)
        np.testing.assert_allclose(got[f"val{i}"], [l for _, l in want.val_losses + want.val_accuracies + want.accuracies],
                                   rtol=1e-10)
        np.testing.assert_allclose(got[f"params{i}"], want.flat_params, rtol=1e-9, atol=1e-12)
    assert one_process[4].stopped_early  # the early-stopping case does stop early, on every rank alike


def test_cli_on_a_data_file_saves_one_processes_model(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((157, 3))
    path = tmp_path / "t.csv"
    np.savetxt(path, np.column_stack([x, x @ [1.0, -2.0, 0.5]]), delimiter=",", header="a,b,c,t", comments="")
    common = ["train", "--backend", "cpu", "--data", path, "--dtype", "float64", "--batch-size", "20",
              "--optimizer", "adam", "--lr", "0.01", "--epochs", "15", "--json"]
    single = CliRunner().invoke(cli, [str(a) for a in common + ["--save", tmp_path / "one.npz"]])
    assert single.exit_code == 0, single.output
    r = mpirun(3, GPUNET, *common, "--save", tmp_path / "three.npz", "--distributed")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # one JSON object: only rank 0 prints
    assert out["ranks"] == 3 and out["communicator"] == "mpi"
    np.testing.assert_allclose([l for _, l in out["val_losses"]],
                               [l for _, l in json.loads(single.stdout)["val_losses"]], rtol=1e-10)
    a, b = checkpoint.load(str(tmp_path / "one.npz")), checkpoint.load(str(tmp_path / "three.npz"))
    np.testing.assert_allclose(b.params, a.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.x_scaler.mean, a.x_scaler.mean, rtol=1e-12)


def test_the_tutorial_on_two_ranks_prints_its_lines_once():
    r = mpirun(2, GPUNET, "train", "--backend", "cpu", "--distributed")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 21 and lines[0].startswith("Epoch:  10    Loss:  ") and lines[-1].startswith("Trained on cpu")


def test_a_failing_rank_ends_every_rank_and_writes_nothing(tmp_path):
    model = tmp_path / "m.npz"
    r = mpirun(2, GPUNET, "train", "--backend", "cpu", "--distributed", "--lr", "10", "--save", model, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "Error: rank" in r.stderr and "diverged" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not model.exists()


def test_distributed_outside_a_launch_is_one_rank_with_a_note():
    r = CliRunner().invoke(cli, ["train", "--backend", "cpu", "--distributed", "--epochs", "20"])
    assert r.exit_code == 0, r.output
    assert "not launched by an MPI launcher" in r.stderr and "one rank" in r.stderr


def test_distributed_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    r = CliRunner().invoke(cli, ["train", "--backend", "cpu", "--distributed"])
    assert r.exit_code == 2 and "mpi4py" in r.stderr and "[mpi]" in r.stderr


def test_each_rank_reads_its_rows_and_the_classes_are_every_ranks(tmp_path):
    """Text labels in a folder of shards, one class only in the last rows: 3 ranks, each reading its share,
    end with one process's classes, standardisation and parameters."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((150, 3)) * [1, 5, 0.2] + [0, 3, -1]
    labels = np.where(x[:, 0] > 0, "up", "down").astype(object)
    labels[-20:] = "elephant"  # only the last rank's rows hold this class, and its name is the longest
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(150), 4)):  # shards that do not line up with the ranks
        text = "\n".join(",".join(f"{v:.6f}" for v in x[i]) + f",{labels[i]}" for i in rows)
        (folder / f"part-{k}.csv").write_text("a,b,c,kind\n" + text + "\n")
    common = ["train", "--backend", "cpu", "--data", folder, "--loss", "ce", "--dtype", "float64", "--lr", "0.5",
              "--epochs", "20", "-q"]
    single = CliRunner().invoke(cli, [str(a) for a in common + ["--save", tmp_path / "one.npz"]])
    assert single.exit_code == 0, single.output
    r = mpirun(3, GPUNET, *common, "--save", tmp_path / "three.npz", "--distributed")
    assert r.returncode == 0, r.stderr
    a, b = checkpoint.load(str(tmp_path / "one.npz")), checkpoint.load(str(tmp_path / "three.npz"))
    assert b.classes.tolist() == a.classes.tolist() == ["down", "elephant", "up"]
    np.testing.assert_allclose(b.x_scaler.scale, a.x_scaler.scale, rtol=1e-12)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-9, atol=1e-12)


def test_a_broken_shard_on_one_rank_ends_all_ranks(tmp_path):
    rows = [f"{i},{i % 7},{2 * i}" for i in range(60)]
    rows[45] = "45,oops,90"  # line 47 of the file, in the second rank's half
    path = tmp_path / "broken.csv"
    path.write_text("a,b,t\n" + "\n".join(rows) + "\n")
    model = tmp_path / "m.npz"
    r = mpirun(2, GPUNET, "train", "--backend", "cpu", "--data", path, "--distributed", "--save", model, timeout=60)
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert "Error: rank 1 of 2: " in r.stderr and "row 47, column 2 (b) is not a number: 'oops'" in r.stderr
    assert not model.exists()


def test_check_and_bench_run_with_the_ranks():
    r = mpirun(2, GPUNET, "check", "--backends", "cpu", "--reference", "--distributed", "--batch-size", "16",
               "--optimizer", "momentum", "--lr", "1e-3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("PASS: all 5 comparisons") == 1 and "2 ranks" in r.stdout
    r = mpirun(2, GPUNET, "bench", "--backend", "cpu", "--workload", "seed", "--repeats", "1", "--distributed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("seed      gpunet  cpu") == 1  # one table, from rank 0


def test_ctrl_c_on_the_launcher_stops_every_rank_together(tmp_path):
    model = tmp_path / "m.npz"
    p = subprocess.Popen([MPIEXEC, "-n", "2", GPUNET, "train", "--backend", "cpu", "--distributed", "--epochs",
                          "100000000", "--log-every", "500", "--save", str(model)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()  # training has started on every rank
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert first.startswith("Epoch:  500"), (first, err)
    assert p.returncode == 130 and "Interrupted at epoch" in err, (p.returncode, err)
    assert checkpoint.load(str(model)).sizes == [3, 32, 1]


def blas_threads_of_two_ranks(**user):
    """Each of 2 ranks' BLAS thread counts after launch(True), in an environment with only `user`'s thread variables."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARS}
    r = mpirun(2, sys.executable, os.path.join(HERE, "dist_threads_worker.py"), env={**env, **user})
    assert r.returncode == 0, r.stderr
    ranks = json.loads(r.stdout)
    assert len(ranks) == 2 and all(ranks), r.stdout  # every rank found its BLAS
    return [n for threads in ranks for n in threads]


def share_of_two_ranks():
    """Each of 2 ranks' share of this machine's cores, worked out here as the README says."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores // 2), cores


def test_ranks_on_one_node_share_its_cores_between_their_blas_threads():
    share, _ = share_of_two_ranks()
    assert blas_threads_of_two_ranks() == [share] * 2


@pytest.mark.parametrize("var", ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"])
def test_the_users_blas_threads_are_left_as_set(var):
    share, cores = share_of_two_ranks()
    if share + 1 > cores:
        pytest.skip("one core: OpenBLAS caps its threads at the cores, so no count can differ from the share")
    assert blas_threads_of_two_ranks(**{var: str(share + 1)}) == [share + 1] * 2  # not the share: a limit would show


class FakeDeviceArray(np.ndarray):
    """A host array standing in for a CuPy one: it has CuPy's set()."""

    def set(self, host):
        self[...] = host


def test_the_gradient_transports_plumb_through_on_one_rank():
    """MPIComm over this process's one-rank world: each transport leaves the buffer as it was (a sum over
    one rank), and NCCL needs CUDA."""
    from mpi4py import MPI

    from gpunet.backend import resolve
    from gpunet.comm import MPIComm
    from gpunet.errors import ConfigError

    cpu = resolve("cpu")
    assert MPIComm(MPI).bind(cpu, "auto").name == "mpi"
    with pytest.raises(ConfigError, match="--comm nccl needs --backend cuda"):
        MPIComm(MPI).bind(cpu, "nccl")
    comm = MPIComm(MPI)  # a device stand-in: to the host by copying, nothing to wait for
    comm.backend = SimpleNamespace(name="cuda", to_numpy=lambda a: np.array(a), synchronize=lambda: None)
    buf = np.arange(5.0).view(FakeDeviceArray)
    for how in ("host", "mpi"):
        comm._move = getattr(comm, {"host": "_staged", "mpi": "_mpi"}[how])
        np.testing.assert_array_equal(comm.allreduce(buf), np.arange(5.0))
    assert comm.sum([1.5, 2.0]).tolist() == [1.5, 2.0] and comm.any(True) and not comm.any(False)


def test_a_constant_column_is_found_exactly_and_the_ranks_agree(tmp_path):
    """0.1 repeated has a standard deviation of about 1e-17 in floating point, not 0: it must still be a
    constant column (left unscaled, with a warning), on one process and on 3 ranks alike."""
    path = tmp_path / "c.csv"
    path.write_text("a,b,t\n" + "\n".join(f"{i % 7},0.1,{i % 5}" for i in range(80)) + "\n")
    common = ["train", "--backend", "cpu", "--data", path, "--dtype", "float64", "--epochs", "30", "--lr", "0.01"]
    single = CliRunner().invoke(cli, [str(a) for a in common + ["--save", tmp_path / "one.npz"]])
    assert single.exit_code == 0 and "input column 'b' is constant" in single.stderr, single.output
    r = mpirun(3, GPUNET, *common, "--distributed", "--save", tmp_path / "three.npz")
    assert r.returncode == 0 and "input column 'b' is constant" in r.stderr, r.stderr
    assert r.stdout.splitlines()[:3] == single.stdout.splitlines()[:3]  # the log lines
    a, b = checkpoint.load(str(tmp_path / "one.npz")), checkpoint.load(str(tmp_path / "three.npz"))
    assert a.x_scaler.scale[1] == b.x_scaler.scale[1] == 1.0 and a.x_scaler.mean[1] == b.x_scaler.mean[1] == 0.0
    np.testing.assert_allclose(b.params, a.params, rtol=1e-9, atol=1e-12)

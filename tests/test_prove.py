"""gpunet check, gradcheck and bench: they pass on correct code, fail on a planted bug, and report figures."""

import json

import pytest

from bench.peers import PEERS, available
from gpunet import backend as shim
from gpunet import fused
from gpunet.agree import compare
from gpunet.bench import GpunetRunner, measure
from gpunet.train import Config, train
from gpunet.workloads import WORKLOADS, matmul_flops, needed_bytes
from tests.planted import drop_relu_mask, wrong_fused_derivative
from tests.clitools import run



def test_check_against_the_reference_passes():
    r = run("check", "--backends", "cpu", "--reference")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("PASS") == 6 and "FAIL" not in r.stdout


def test_check_catches_a_wrong_gradient(monkeypatch):
    drop_relu_mask(monkeypatch, "float32")  # the float64 reference stays right
    r = run("check", "--backends", "cpu", "--reference")
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.stdout


def test_check_float64_backends_agree_to_machine_precision(backend):
    a, b = train(dtype="float64", backend=backend), train(dtype="float64", backend="cpu")
    assert all(row.ok and row.max_rel < 1e-9 for row in compare(a, b))


def test_check_needs_something_to_compare_and_usable_backends(monkeypatch):
    r = run("check", "--backends", "cpu")
    assert r.exit_code == 2 and "--reference" in r.stderr
    monkeypatch.setattr(shim, "_cuda", lambda *args: (_ for _ in ()).throw(shim.BackendUnavailable("no GPU here")))
    r = run("check", "--backends", "cpu,cuda")
    assert r.exit_code == 2 and r.stderr.strip() == "Error: no GPU here"


def test_check_on_a_named_workload_with_an_override():
    r = run("check", "--workload", "medium", "--n", "64", "--epochs", "2", "--backends", "cpu", "--reference")
    assert r.exit_code == 0, r.output
    assert "n=64 d_in=256 hidden=1024 d_out=16, 2 epochs" in r.stdout


def test_gradcheck_passes_and_catches_a_missing_mask(monkeypatch):
    r = run("gradcheck", "--backend", "cpu", "--hidden", "16,8")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("PASS") == 7  # six tensors and the verdict
    drop_relu_mask(monkeypatch)
    r = run("gradcheck", "--backend", "cpu", "--hidden", "16,8")
    assert r.exit_code == 1 and "FAIL" in r.stdout


@pytest.mark.parametrize("n", ["8", "2100"], ids=["whole", "blocked"])  # 16 x 2100 hidden units: in blocks
def test_gradcheck_catches_a_wrong_fused_derivative(monkeypatch, n):
    monkeypatch.setattr(fused, "WHOLE", 2 * fused.BLOCK)  # blocks from 32768 elements: the blocked path at n=2100
    args = ("gradcheck", "--backend", "cpu", "--activation", "tanh", "--hidden", "16", "--n", n)
    r = run(*args)
    assert r.exit_code == 0, r.output
    wrong_fused_derivative(monkeypatch, "tanh")
    r = run(*args)
    assert r.exit_code == 1 and "FAIL" in r.stdout


def test_flop_count_follows_the_products_done():
    # seed: forward 2*100*3*32 + 2*100*32*1, the same again for weight gradients, and one input gradient
    assert matmul_flops(WORKLOADS["seed"]) == 2 * (19200 + 6400) + 6400
    c = Config(n=10, d_in=4, hidden=(5, 6), d_out=2)
    per = [2 * 10 * 4 * 5, 2 * 10 * 5 * 6, 2 * 10 * 6 * 2]
    assert matmul_flops(c) == 2 * sum(per) + per[1] + per[2]


def test_buffers_are_the_minimum_the_math_needs_plus_the_ones_rows():
    for name in ("seed", "medium"):
        config = WORKLOADS[name]
        runner = GpunetRunner(config, shim.resolve("cpu"))
        ones_rows = 4 * config.n * (1 + len(config.hidden))
        assert runner.buffer_bytes() == needed_bytes(config) + ones_rows


def test_bench_runner_restarts_from_the_same_point_each_run():
    runner = GpunetRunner(WORKLOADS["seed"], shim.resolve("cpu"))
    times = measure([runner], repeats=2, settle=0, min_seconds=0)[runner]
    assert len(times) == 2 and all(t > 0 for t in times)
    assert runner.final_loss() == train(backend="cpu").final_loss


@pytest.mark.parametrize("name", [name for name, _, _ in PEERS])
def test_each_installed_peer_agrees_with_gpunet(name):
    cpu = shim.resolve("cpu")
    chosen, notes = available(cpu)
    makers = dict(chosen)
    if name not in makers:
        pytest.skip(next(n for n in notes if n.startswith(name)))
    config = WORKLOADS["seed"]
    peer = makers[name](config, cpu)
    assert peer.run() > 0
    assert peer.final_loss() == pytest.approx(train(config, backend="cpu").final_loss, rel=1e-4)


def test_bench_command_writes_json_with_every_figure(tmp_path):
    path = tmp_path / "bench.json"
    r = run("bench", "--workload", "seed", "--backend", "cpu", "--repeats", "2", "--json", str(path))
    assert r.exit_code == 0, r.output
    report = json.loads(path.read_text())
    assert report["machine"]["cpu"] and report["machine"]["cores"] >= 1 and "blas" in report["machine"]
    assert report["ceilings_gflops"]["cpu"] > 0
    (rec,) = report["records"]
    for key in ("median_s", "min_s", "max_s", "seconds_per_epoch", "gflops", "pct_of_ceiling", "peak_bytes",
                "buffer_bytes", "needed_bytes", "final_loss"):
        assert rec[key] > 0, key
    assert rec["min_s"] <= rec["median_s"] <= rec["max_s"] and len(rec["seconds"]) == rec["runs"] >= 2
    assert "seed" in r.stdout and "GFLOP/s" in r.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left behind


def test_bench_rejects_unknown_workloads_and_backends():
    r = run("bench", "--workload", "huge", "--backend", "cpu")
    assert r.exit_code == 2 and "huge" in r.stderr
    r = run("bench", "--workload", "seed", "--backend", "tpu")
    assert r.exit_code == 2 and "tpu" in r.stderr

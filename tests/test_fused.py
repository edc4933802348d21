"""Fused element-wise passes: each engine against the expression, each derivative against central differences
of its activation, the CUDA kernels' C against the same expression, and the memory they save."""

import re

import numpy as np
import pytest

from gpunet import backend as backends
from gpunet import fused, model
from gpunet.activations import ACTIVATIONS
from gpunet.config import Config
from gpunet.gradcheck import generic_network, gradcheck
from gpunet.model import Network, workspace_bytes
from gpunet.train import Trainer
from tests import fake_device
from tests.planted import drop_relu_mask, wrong_fused_derivative

CPU = backends.resolve("cpu")
ACTS = [a for a in ACTIVATIONS.values() if a.derivative is not None]
PASSES = [p for a in ACTS for p in (a.forward_pass, a.backward_pass, a.derivative_pass)]
# elements: whole (tiny, and just below the blocks), blocked (exactly two blocks, and a ragged last block)
SMALL_WHOLE = 2 * fused.BLOCK  # the tests' threshold: networks small enough to check take the blocked path too
SIZES = [(3, 5), (1, SMALL_WHOLE - 1), (2, fused.BLOCK), (7, fused.BLOCK // 3 + 5)]


@pytest.fixture(autouse=True)
def blocks_from_two(monkeypatch):
    monkeypatch.setattr(fused, "WHOLE", SMALL_WHOLE)


def operands(p, shape, dtype, seed=0):
    """Inputs for pass `p`: z anywhere (zeros included), a as an activation's output, g an error."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape).astype(dtype)
    z.reshape(-1)[::11] = 0  # ReLU's kink, where > and >= differ
    named = {"z": z, "a": np.tanh(z).astype(dtype) if "tanh" in p.name else np.maximum(z, 0) if "relu" in p.name
             else (1 / (1 + np.exp(-z))).astype(dtype), "g": rng.standard_normal(shape).astype(dtype)}
    return [named[name] for name in p.inputs]


def reference(expr, inputs, names):
    """The expression evaluated by NumPy in float64, whole arrays: an independent run of the same math."""
    env = {"exp": np.exp, "tanh": np.tanh, **{n: np.asarray(v, np.float64) for n, v in zip(names, inputs)}}
    return eval(expr, env)  # the language is Python's syntax (gpunet/fused.py)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("p", PASSES, ids=lambda p: p.name)
def test_cpu_engine_computes_the_expression_in_place(p, shape, threads):
    for dtype, tol in ((np.float32, 2e-7), (np.float64, 1e-15)):
        inputs = operands(p, shape, dtype)
        expected = reference(p.expr, inputs, p.inputs)
        out = inputs[0]  # in place over the first input, as the network runs them
        fused.calls(CPU, p, *inputs, out, threads=threads)()
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_each_derivative_is_the_derivative_of_its_activation(act):
    """act'(z) as written from a = act(z), against central differences of the forward pass, in float64."""
    z = np.linspace(-4, 4, 2 * SMALL_WHOLE + 3).reshape(1, -1)
    z = z[:, np.abs(z[0]) > 1e-3]  # off ReLU's kink
    h = 1e-6

    def forward(v):
        v = v.copy()
        fused.calls(CPU, act.forward_pass, v, v)()
        return v

    numeric = (forward(z + h) - forward(z - h)) / (2 * h)
    g = np.ones_like(z)
    fused.calls(CPU, act.backward_pass, g, forward(z), g)()  # the blocked pass
    d = np.empty_like(z[:, :100])
    fused.calls(CPU, act.derivative_pass, forward(z)[:, :100], d)()  # the whole-array pass (small layers)
    np.testing.assert_allclose(g, numeric, atol=1e-8)
    np.testing.assert_allclose(d, numeric[:, :100], atol=1e-8)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_a_wrong_fused_derivative_fails_the_checks(monkeypatch, name):
    act = ACTIVATIONS[name]
    wrong_fused_derivative(monkeypatch, name)
    with pytest.raises(AssertionError):
        test_each_derivative_is_the_derivative_of_its_activation(ACTIVATIONS[name])
    for n in (7, 1000):  # the small layer's derivative buffer, and the large layer's fused pass
        errors = dict(gradcheck(generic_network(CPU, [3, 40, 2], n=n, activation=name)))
        assert errors["w1"] > 1e-3, (n, errors)
    assert ACTIVATIONS[name] != act


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("n", [7, 1000], ids=["whole", "blocked"])
def test_backward_matches_finite_differences_on_both_cpu_paths(activation, n):
    ws = generic_network(CPU, [3, 40, 5, 2], n=n, activation=activation, loss="mse")
    assert (ws.d[0] is None) == (n == 1000 or activation == "identity")  # 40 x 1000: read from the output
    errors = gradcheck(ws)
    assert max(e for _, e in errors) < 1e-6, errors


def test_a_missing_mask_fails_on_the_blocked_path(monkeypatch):
    drop_relu_mask(monkeypatch)
    errors = dict(gradcheck(generic_network(CPU, [3, 40, 2], n=1000)))
    assert errors["w1"] > 1e-2


def test_large_layers_keep_no_derivative_buffer():
    sizes, n = [16, 512, 4], 256  # 512 x 256 hidden units: blocked
    ws = Network(CPU, sizes, np.zeros(4 * 0 + (17 * 512 + 513 * 4)), np.float32).workspace(n)
    assert ws.d == [None]
    assert ws.bytes() == 4 * (17 * n + 513 * n + 4 * n + 512 * n + 4 * n + 4 * n)  # a[0], a[1], z[-1], g[0], g[1], y


@pytest.mark.parametrize("p", PASSES, ids=lambda p: p.name)
def test_cuda_source_is_the_same_expression(p):
    """The kernel's C, its casts to T taken out, read as Python: the same values as the CPU engine's."""
    inputs = operands(p, (4, 33), np.float64)
    python = re.sub(r"\(T\)", "", p.cuda_source)
    env = {"exp": np.exp, "tanh": np.tanh, **dict(zip(p.inputs, inputs))}
    out = inputs[0].copy()
    fused.calls(CPU, p, *inputs, out)()
    np.testing.assert_allclose(eval(python, env), out, rtol=1e-15)


def test_cuda_runs_one_kernel_per_pass_made_once(monkeypatch):
    made = []

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            made.append((in_params, out_params, operation, name))

        def __call__(self, *arrays):
            raise AssertionError("not run here")

    fake = fake_device.install(monkeypatch)
    fake.ElementwiseKernel = ElementwiseKernel
    cuda = backends.Backend("cuda", fake, "Fake", 0)
    p = ACTIVATIONS["relu"].backward_pass
    g, a = fake_device.to_device(np.ones(3)), fake_device.to_device(np.ones(3))
    first, again = fused.calls(cuda, p, g, a, g), fused.calls(cuda, p, g, a, g)
    assert made == [("T g, T a", "T out", "out = (g * (T)(a > (T)0))", "gpunet_relu_grad")]
    assert len(first) == 1 and first[0][0] is again[0][0] and first[0][1] == (g, a, g)


def test_a_pass_outside_the_language_is_refused():
    with pytest.raises(ValueError, match="not in a fused pass's language"):
        fused.Pass("bad", ("a",), "a ** 2")


def test_large_passes_take_as_many_threads_as_blas():
    """The element-wise threads are BLAS's (what an MPI rank's share of the cores left it, gpunet/comm.py)."""
    from threadpoolctl import threadpool_limits

    z = np.zeros((4, fused.BLOCK))
    with threadpool_limits(limits=1, user_api="blas"):
        assert fused.blas_threads() == 1
        (blocked, _), = fused.calls(CPU, ACTIVATIONS["relu"].forward_pass, z, z)
        assert len(blocked.parts) == 1
    (blocked, _), = fused.calls(CPU, ACTIVATIONS["relu"].forward_pass, z, z, threads=2)
    assert len(blocked.parts) == 2


def test_small_layers_keep_their_derivative_large_ones_read_it_from_the_output(monkeypatch):
    monkeypatch.undo()  # the real threshold
    from gpunet.workloads import WORKLOADS
    sizes = WORKLOADS["medium"].sizes
    net = Network(CPU, sizes, np.zeros(257 * 1024 + 1025 * 16), np.float32)
    assert net.workspace(200).d[0] is not None  # a mini-batch of 200 x 1024 units: a buffer of 800 KiB
    assert net.workspace(8192).d == [None]  # medium's 8192 x 1024: 32 MiB not kept


# two hidden layers of 10 and 8 units over 20 rows, taken as large: dS/dz written over their outputs in blocks of
# 3 rows, the last ragged (10 = 3 * 3 + 1, 8 = 2 * 3 + 2), a block's pass in the engine's blocks and the last one
# whole; the lower layer's product reads the upper one's dS/dz, itself written over that layer's output
OVER = dict(sizes=[3, 10, 8, 2], n=20)


@pytest.fixture
def blocks_of_three(monkeypatch):
    monkeypatch.setattr(fused, "WHOLE", 50)
    monkeypatch.setattr(model, "GRADIENT_BLOCK", 3 * OVER["n"])
    monkeypatch.setattr(model, "MIN_BLOCK_ROWS", 1)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
def test_large_layers_write_their_gradient_over_their_output(blocks_of_three, activation):
    ws = generic_network(CPU, **OVER, activation=activation, loss="mse")
    assert ws.g[0] is ws.z[0] and ws.g[1] is ws.z[1] and ws.d == [None, None]
    assert (ws.scratch is None) == (activation == "identity")  # the identity's products go straight over a
    assert ws.bytes() == workspace_bytes(CPU, OVER["sizes"], OVER["n"], np.float64, activation)
    errors = gradcheck(ws)
    assert max(e for _, e in errors) < 1e-6, errors


def test_a_wrong_fused_derivative_fails_where_the_gradient_is_written_over_the_output(blocks_of_three, monkeypatch):
    wrong_fused_derivative(monkeypatch, "tanh")
    assert dict(gradcheck(generic_network(CPU, **OVER, activation="tanh")))["w1"] > 1e-3


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cuda_writes_over_the_output_too(blocks_of_three, monkeypatch, activation):
    """Every layer on CUDA reads act'(z) from its output (here the stand-in's ufuncs, tests/fake_device.py)."""
    fake_device.install(monkeypatch)
    cuda = backends.resolve("cuda")
    ws = generic_network(cuda, **OVER, activation=activation)
    assert ws.g[0] is ws.z[0] and ws.g[1] is ws.z[1] and ws.d == [None, None]
    assert ws.bytes() == workspace_bytes(cuda, OVER["sizes"], OVER["n"], np.float64, activation)
    assert max(e for _, e in gradcheck(ws)) < 1e-6
    wrong_fused_derivative(monkeypatch, "tanh")
    assert dict(gradcheck(generic_network(cuda, **OVER, activation="tanh")))["w1"] > 1e-3


@pytest.mark.parametrize("changes", [{}, dict(batch_size=8, val_split=0.2), dict(batch_size=12, activation="tanh"),
                                     dict(activation="identity"), dict(hidden=(10, 8), dtype="float64")])
def test_the_out_of_memory_count_is_the_buffers_made(blocks_of_three, changes):
    """Trainer.needed_bytes, which the out-of-memory message quotes, counts the buffers the run makes (SGD: no
    optimizer state), through the same workspace_bytes as the bench's count."""
    trainer = Trainer(Config(**{**dict(n=30, d_in=3, hidden=(10,), d_out=2, epochs=1), **changes}), CPU)
    assert trainer.needed_bytes() == trainer.buffer_bytes()


def test_a_tall_batch_takes_blocks_of_at_least_min_block_rows():
    """Blocks of 1-4 rows on 2^18 rows made the input gradient 2x slower; whole layers keep their buffer."""
    relu = ACTIVATIONS["relu"]
    assert model.block_rows(CPU, 256, 1 << 18, relu) == model.MIN_BLOCK_ROWS
    assert model.block_rows(CPU, 4096, 4096, relu) == model.GRADIENT_BLOCK // 4096  # large's: 256 rows
    assert model.block_rows(CPU, 64, 1 << 18, relu) == 0  # no fewer rows than a block: a buffer of its own


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork here")
def test_a_forked_child_runs_a_threaded_pass(monkeypatch):
    """After fork() a child has none of its parent's threads: its first threaded pass must not wait for them."""
    import multiprocessing

    size = fused.WHOLE * 2
    a, out = np.arange(size, dtype=np.float64), np.empty(size)
    fused.calls(CPU, ACTIVATIONS["relu"].forward_pass, a, out, threads=2)()  # the parent's pool is made
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_relu_sum_in_child, (size,))
        assert result.get(timeout=60) == float(np.maximum(np.arange(size, dtype=np.float64), 0).sum())


def _relu_sum_in_child(size):
    a, out = np.arange(size, dtype=np.float64), np.empty(size)
    fused.calls(CPU, ACTIVATIONS["relu"].forward_pass, a, out, threads=2)()
    return float(out.sum())


def test_run_parts_ends_every_part_before_raising():
    """A part that raises (the caller's own, or a thread's): every other part has ended when run_parts raises, and
    the caller's exception is the one raised."""
    import threading
    import time

    from gpunet.fused import run_parts

    ended = []

    def slow():
        time.sleep(0.2)
        ended.append(threading.current_thread().name)

    def boom():
        raise ValueError("the caller's part")

    with pytest.raises(ValueError, match="the caller's part"):
        run_parts([boom, slow, slow])
    assert len(ended) == 2

    def thread_boom():
        raise KeyError("a thread's part")

    ended.clear()
    with pytest.raises(KeyError, match="a thread's part"):
        run_parts([slow, thread_boom, slow])
    assert len(ended) == 2

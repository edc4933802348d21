"""Fused element-wise passes: each written once, as an expression over named buffers, and run by a CPU
engine or by one CUDA kernel.

A `Pass` is `out = expr(inputs)`, the expression in a small language that reads the same in Python and
in C: names, constants, + - * /, unary -, `>` (1 or 0), `exp` and `tanh`. `calls(backend, p, *arrays)`
gives the calls (gpunet/calls.py) that run it over `arrays` (the inputs, then the output, which may be
one of them), ready to replay:

- CUDA: one `ElementwiseKernel` per pass, its body the expression in C (`cuda_source`), made once per
  process; every buffer is read and written once.
- CPU: the expression as NumPy ufunc calls, each into a scratch buffer. Small arrays (the tutorial's)
  take them whole: the fewest calls. Large ones are cut into blocks of BLOCK elements, so that the
  scratch and the block in flight stay in the core's cache and the buffers are read and written about
  once; the blocks are split between as many threads as BLAS has (NumPy releases the GIL in ufuncs),
  which run between the matrix products, on the cores the products use, never beside them.
"""

import ast
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from gpunet.calls import Calls

BLOCK = 1 << 14  # elements per block: 64 KiB of float32, a block and its scratch well inside a core's L2
# arrays of fewer elements are taken whole on the CPU (and a small layer keeps its derivative, gpunet/model.py):
# 4 MiB of float32. Below it the blocks' calls and the threads' hand-offs cost more than they save (a mini-batch
# of 200 x 256 units in blocks: 15% slower an epoch), and a buffer of that size is no one's memory problem.
WHOLE = 1 << 20
BINARY = {ast.Add: (np.add, "+"), ast.Sub: (np.subtract, "-"), ast.Mult: (np.multiply, "*"),
          ast.Div: (np.divide, "/")}
FUNCTIONS = {"exp": np.exp, "tanh": np.tanh}


class Pass:
    """out = expr(inputs), element by element.

    Args:
        name: the pass's name (the CUDA kernel's is gpunet_<name>).
        inputs: the names `expr` reads, in the order their arrays are given.
        expr: the expression (see the module's docstring).
    """

    def __init__(self, name, inputs, expr):
        self.name, self.inputs, self.expr = name, tuple(inputs), expr
        self.tree = ast.parse(expr, mode="eval").body
        self.cuda_source = _c(self.tree)  # checked here: a pass outside the language fails at import

    def __repr__(self):
        return f"Pass({self.name!r}: {self.expr})"


def _c(node):
    """The C expression of `node`, every constant cast to the kernel's type T."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return f"(T){node.value!r}"
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        return f"({_c(node.left)} {BINARY[type(node.op)][1]} {_c(node.right)})"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"(-{_c(node.operand)})"
    if _is_greater(node):
        return f"(T)({_c(node.left)} > {_c(node.comparators[0])})"
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in FUNCTIONS and len(node.args) == 1:
        return f"{node.func.id}({_c(node.args[0])})"
    raise ValueError(f"not in a fused pass's language: {ast.unparse(node)}")


def _is_greater(node):
    return isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Gt)


class _Steps:
    """The ufunc calls of an expression over one set of operands (whole arrays or one block of each),
    intermediates in scratch buffers (`scratch(i)`: the i-th, of the operands' length)."""

    def __init__(self, tree, operands, out, scratch, constant, xp=np):
        self.operands, self.scratch, self.constant, self.xp = operands, scratch, constant, xp
        self.calls, self.free, self.made = [], [], []
        self._emit(tree, out)

    def _buffer(self):
        if self.free:
            return self.free.pop()
        self.made.append(self.scratch(len(self.made)))
        return self.made[-1]

    def _release(self, *values):
        self.free += [v for v in values if any(v is m for m in self.made)]

    def _emit(self, node, target=None):
        """Append the calls that compute `node`; return where its value is (an operand, constant or buffer)."""
        if isinstance(node, ast.Name):
            return self.operands[node.id]
        if isinstance(node, ast.Constant):
            return self.constant(node.value)
        if isinstance(node, ast.BinOp):
            fn, args = BINARY[type(node.op)][0], [node.left, node.right]
        elif isinstance(node, ast.UnaryOp):
            fn, args = np.negative, [node.operand]
        elif _is_greater(node):  # into a float buffer: float x bool runs at half speed
            fn, args = np.greater, [node.left, node.comparators[0]]
        else:
            fn, args = FUNCTIONS[node.func.id], node.args
        values = [self._emit(a) for a in args]
        self._release(*values)
        out = target if target is not None else self._buffer()
        self.calls.append((getattr(self.xp, fn.__name__), (*values, out)))
        return out


class _Pool:
    """Persistent threads that run parts of a pass: the caller runs the first, the threads the others."""

    _executor, _workers, _lock = None, 0, threading.Lock()

    @classmethod
    def run(cls, parts):
        executor = cls.reserve(len(parts) - 1)  # after a fork the child has no threads: made again here
        err = np.geterr()  # the caller's errstate, for each thread (thread-local before NumPy 2)
        futures = [executor.submit(_in_errstate, err, p) for p in parts[1:]]
        try:
            parts[0]()
        finally:  # every part ends before the caller goes on or unwinds: they write the caller's buffers
            wait(futures)
        for f in futures:
            f.result()  # a thread's exception, raised here

    @classmethod
    def reserve(cls, workers):
        """An executor of at least `workers` threads. One replaced is not shut down (a caller in another thread may
        be submitting to it): its threads end when it is collected."""
        with cls._lock:
            if cls._workers < workers:
                cls._executor, cls._workers = ThreadPoolExecutor(workers, thread_name_prefix="gpunet-fused"), workers
            return cls._executor

    @classmethod
    def forget(cls):
        """In a forked child: the parent's threads are not there, so neither is its pool."""
        cls._executor, cls._workers, cls._lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Pool.forget)


def _in_errstate(err, part):
    with np.errstate(**err):
        part()


def run_parts(parts):
    """Run the callables `parts` at once, the caller the first, persistent threads the others, each under the
    caller's NumPy errstate; return when all have ended (the first exception of the caller's part, else of the
    threads', raised then)."""
    _Pool.run(parts)


def blas_threads():
    """The threads BLAS runs its products on (what the MPI ranks' share set, gpunet/comm.py), at least 1."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # a dependency; without it, one thread
        return 1
    counts = [p.get("num_threads") or 1 for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(1, min(counts)) if counts else 1


class _Blocked:
    """A pass over large arrays: blocks of BLOCK elements, split in contiguous runs between threads."""

    def __init__(self, p, flat, dtype, constant, threads):
        size = flat[0].size
        per = -(-size // threads)
        per = -(-per // BLOCK) * BLOCK  # whole blocks per thread
        self.parts = []
        for lo in range(0, size, per):
            hi = min(size, lo + per)
            scratch = []
            calls = Calls()
            for b in range(lo, hi, BLOCK):
                e = min(hi, b + BLOCK)
                views = [a[b:e] for a in flat]
                steps = _Steps(p.tree, dict(zip(p.inputs, views)), views[-1],
                               lambda i, n=e - b: _grow(scratch, i, dtype)[:n], constant)
                calls += steps.calls
            self.parts.append(calls)
        if len(self.parts) > 1:
            _Pool.reserve(len(self.parts) - 1)

    def __call__(self):
        if len(self.parts) == 1:
            return self.parts[0]()
        _Pool.run(self.parts)


def _grow(scratch, i, dtype):
    while len(scratch) <= i:
        scratch.append(np.empty(BLOCK, dtype))
    return scratch[i]


_KERNELS = {}  # (CuPy module, pass name, its source) -> its ElementwiseKernel


def cuda_kernel(xp, p):
    """The pass as one CuPy ElementwiseKernel (compiled at its first call), made once per process."""
    key = (id(xp), p.name, p.cuda_source)  # two passes of one name and other expressions are two kernels
    if key not in _KERNELS:
        params = ", ".join(f"T {name}" for name in p.inputs)
        _KERNELS[key] = xp.ElementwiseKernel(params, "T out", f"out = {p.cuda_source}", f"gpunet_{p.name}")
    return _KERNELS[key]


def whole(backend, size):
    """Whether arrays of `size` elements are taken whole, not in blocks: on the CPU, below WHOLE elements."""
    return backend.name == "cpu" and size < WHOLE


def calls(backend, p, *arrays, threads=None):
    """The calls that run pass `p` over `arrays` (its inputs, then its output; of one shape and dtype,
    C-contiguous), in place.

    On the CPU, `threads` (default: as many as BLAS has) share a pass over arrays of WHOLE elements or more.
    An array module without kernels on a CUDA backend (the tests' stand-in for CuPy) runs the ufuncs whole.
    """
    *inputs, out = arrays
    if len(inputs) != len(p.inputs):
        raise TypeError(f"{p!r} takes {len(p.inputs)} inputs, got {len(inputs)}")
    xp, dtype, consts = backend.xp, out.dtype, {}
    if backend.name == "cuda" and hasattr(xp, "ElementwiseKernel"):
        return Calls([(cuda_kernel(xp, p), (*inputs, out))])

    def constant(value):  # 0-d arrays of the dtype: NumPy takes them faster than Python scalars
        if value not in consts:
            consts[value] = xp.full((), value, dtype)
        return consts[value]

    if backend.name != "cpu" or whole(backend, out.size):
        scratch = []
        return Calls(_Steps(p.tree, dict(zip(p.inputs, inputs)), out,
                            lambda i: _grow_like(xp, scratch, i, out), constant, xp).calls)
    flat = [a.reshape(-1) for a in arrays]  # a view: the buffers are contiguous
    return Calls([(_Blocked(p, flat, dtype, constant, threads or blas_threads()), ())])


def _grow_like(xp, scratch, i, like):
    while len(scratch) <= i:
        scratch.append(xp.empty_like(like))
    return scratch[i]

"""Named configurations for `check` and `bench`: the tutorial, and two sizes where the hardware matters."""

from dataclasses import replace

import numpy as np

from gpunet.backend import resolve
from gpunet.errors import ConfigError
from gpunet.model import Layout, workspace_bytes
from gpunet.train import Config

WORKLOADS = {
    # the tutorial; per-operation overhead dominates
    "seed": Config(),
    # elementwise passes over 8192 x 1024 activations matter as much as the matrix products
    "medium": Config(n=8192, d_in=256, hidden=(1024,), d_out=16, epochs=20, lr=1e-2, loss="mse", init="he"),
    # dominated by matrix products
    "large": Config(n=4096, d_in=1024, hidden=(4096,), d_out=1024, epochs=3, lr=1e-2, loss="mse", init="he"),
    # MNIST-shaped classification: 784 pixels, 512 hidden units, 10 classes, softmax cross-entropy
    "mnist": Config(n=8192, d_in=784, hidden=(512,), d_out=10, epochs=10, lr=0.1, loss="ce", init="he"),
}


def workload(name, **changes):
    """The named workload's Config, with `changes` applied; `custom` is the tutorial's, changed."""
    if name == "custom":
        return replace(Config(), **changes)
    if name not in WORKLOADS:
        raise ConfigError(f"unknown workload {name!r}: choose from {', '.join(WORKLOADS)}, custom")
    return replace(WORKLOADS[name], **changes)


def matmul_flops(config):
    """Floating-point operations of the matrix products in one epoch.

    2 * n * fan_in * fan_out for each layer's forward product and its weight gradient, and again for
    each input gradient computed (none for the first layer). The ones row that carries the bias is
    not counted.
    """
    sizes, n = config.sizes, config.n
    per_layer = [2 * n * fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def needed_bytes(config, backend=None):
    """Bytes the math cannot do without on `backend` (default the CPU): data, parameters, gradients, and the
    workspace's buffers (gpunet.model.workspace_bytes) less its rows of ones."""
    backend = backend or resolve("cpu")
    item = np.dtype(config.dtype).itemsize
    ones = item * config.n * (len(config.sizes) - 1)
    space = workspace_bytes(backend, config.sizes, config.n, config.dtype, config.activation)
    return 2 * item * Layout(config.sizes).size + space - ones

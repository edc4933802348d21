"""Named configurations for `check` and `bench`: the tutorial, and two sizes where the hardware matters."""

from dataclasses import replace

from gpunet.errors import ConfigError
from gpunet import fused
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


def needed_bytes(config):
    """Bytes the math cannot do without: data, parameters, gradients, and per layer its output and the
    gradient with respect to it (a hidden layer's activation is written over its input), and on the CPU a
    small hidden layer's derivative (gpunet/fused.py; a large one's is read from its output)."""
    sizes, n = config.sizes, config.n
    item = 8 if config.dtype == "float64" else 4
    params = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    kept = sum(n * h for h in sizes[1:-1] if n * h < fused.WHOLE and config.activation != "identity")
    acts = 2 * n * sum(sizes[1:]) + kept
    return item * (n * (sizes[0] + sizes[-1]) + 2 * params + acts)

"""Hidden-layer activations, each written once: its function of z and its derivative written as a function
of its output a = act(z), as expressions of gpunet/fused.py's language, run by the CPU engine and CUDA.

From the derivative come the passes the network runs: `backward_pass`, dL/dz = g * act'(z) with act'(z) read
from a, which the next layer's input holds anyway, so that no copy of z and no derivative buffer is kept
(large layers, and CUDA); and `derivative_pass`, act'(z) into a buffer that the forward pass fills and the
backward pass multiplies by (the CPU's small layers, where a few kilobytes save a call: what NumPy's time is
spent on there).
"""

from dataclasses import dataclass
from functools import cached_property

from gpunet.errors import ConfigError
from gpunet.fused import Pass


@dataclass(frozen=True)
class Activation:
    """act: `forward`, an expression of z, or None for z * act'(z) with the derivative read at z (ReLU's own
    identity: relu(z) = z * [z > 0], and [z > 0] = [relu(z) > 0]); `derivative`, act'(z) as an expression of
    a = act(z), or None where it is 1 (the identity, which then has no pass at all)."""

    name: str
    forward: str | None
    derivative: str | None

    @cached_property
    def forward_pass(self):
        """z -> act(z) (input z), or None (the identity)."""
        if self.derivative is None and self.forward is None:
            return None
        if self.forward is None:  # z * act'(z), its input named as the derivative's variable
            return Pass(self.name, ("a",), f"a * ({self.derivative})")
        return Pass(self.name, ("z",), self.forward)

    @cached_property
    def backward_pass(self):
        """g -> g * act'(z), from a = act(z) (inputs g, a), or None (the identity)."""
        return None if self.derivative is None else Pass(f"{self.name}_grad", ("g", "a"), f"g * ({self.derivative})")

    @cached_property
    def derivative_pass(self):
        """act'(z) from a (input a), or None (the identity); for ReLU, whose forward is None, the same from z."""
        return None if self.derivative is None else Pass(f"{self.name}_derivative", ("a",), self.derivative)


ACTIVATIONS = {
    # the mask as a multiplication: NaN stays NaN (a diverged run shows as one), and relu(z) is the tutorial's z * (z > 0)
    "relu": Activation("relu", None, "a > 0"),
    "tanh": Activation("tanh", "tanh(z)", "1 - a * a"),
    "sigmoid": Activation("sigmoid", "1 / (1 + exp(-z))", "(1 - a) * a"),  # exp(-z) = inf for z < -88: 1 / inf = 0
    "identity": Activation("identity", None, None),
}


def activation(name):
    """The activation called `name`."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown --activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]

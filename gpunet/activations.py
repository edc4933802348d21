"""Hidden-layer activations, each applied in place and leaving its derivative in a buffer, written once against `xp`.

`act(xp, z, d, zero, one)` turns z into act(z) in place and fills d with act'(z), read back by the
backward pass as one multiplication (dL/dz = dL/dact * d). Each derivative is written from the
activation's own output, so no copy of z is kept. `zero` and `one` are 0-d arrays of z's dtype
(NumPy takes those faster than Python scalars). The workspace fills d with ones when it makes it,
which is identity's derivative.
"""

from gpunet.errors import ConfigError


def relu(xp, z, d, zero, one):
    xp.greater(z, zero, out=d)  # relu'(z): 1.0 where z > 0, in the float dtype (float x bool runs at half speed)
    xp.multiply(z, d, out=z)


def tanh(xp, z, d, zero, one):
    xp.tanh(z, out=z)
    xp.multiply(z, z, out=d)
    xp.subtract(one, d, out=d)  # tanh' = 1 - tanh^2


def sigmoid(xp, z, d, zero, one):
    xp.negative(z, out=z)
    xp.exp(z, out=z)  # exp(-z) overflows to inf for z < -88 (float32): 1 / inf is the right 0
    xp.add(z, one, out=z)
    xp.reciprocal(z, out=z)
    xp.subtract(one, z, out=d)
    xp.multiply(d, z, out=d)  # sigmoid' = s (1 - s)


def identity(xp, z, d, zero, one):
    pass  # d holds ones from the start


ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "identity": identity}


def activation(name):
    """The activation function called `name`."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown --activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]

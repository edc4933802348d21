"""Hidden-layer activations, each applied in place and leaving its derivative in a buffer, written once against `xp`.

`act(xp, z, d, zero, one)` lists the calls (gpunet/calls.py) that turn z into act(z) in place and fill d
with act'(z), read back by the backward pass as one multiplication (dL/dz = dL/dact * d). Each derivative
is written from the activation's own output, so no copy of z is kept. `zero` and `one` are 0-d arrays of
z's dtype (NumPy takes those faster than Python scalars). The workspace fills d with ones when it makes
it, which is identity's derivative.
"""

from gpunet.errors import ConfigError


def relu(xp, z, d, zero, one):
    # relu'(z): 1.0 where z > 0, in the float dtype (float x bool runs at half speed; maximum and sign, at a
    # third of the speed of greater and multiply on float32)
    return [(xp.greater, (z, zero, d)), (xp.multiply, (z, d, z))]


def tanh(xp, z, d, zero, one):
    return [(xp.tanh, (z, z)), (xp.multiply, (z, z, d)), (xp.subtract, (one, d, d))]  # tanh' = 1 - tanh^2


def sigmoid(xp, z, d, zero, one):
    return [
        (xp.negative, (z, z)),
        (xp.exp, (z, z)),  # exp(-z) overflows to inf for z < -88 (float32): 1 / inf is the right 0
        (xp.add, (z, one, z)),
        (xp.reciprocal, (z, z)),
        (xp.subtract, (one, z, d)),
        (xp.multiply, (d, z, d)),  # sigmoid' = s (1 - s)
    ]


def identity(xp, z, d, zero, one):
    return []  # d holds ones from the start


ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "identity": identity}


def activation(name):
    """The activation function called `name`."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown --activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]

"""The tutorial's synthetic data, drawn on the host so that every backend sees the same numbers."""

import numbers

import numpy as np

# The tutorial's rule: y = 0.2 * x1 - 1.3 * x2 - 0.5 * x3 + N(0, 1) noise.
TUTORIAL_COEF = (0.2, -1.3, -0.5)
DEFAULT_SEED = 42


def check_random_state(seed):
    """Turn None, an int or a Generator into a numpy Generator (None: the default seed)."""
    if seed is None:
        return np.random.default_rng(DEFAULT_SEED)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, not {type(seed).__name__}")


def true_coefficients(d_in, d_out):
    """The linear rule behind the synthetic targets: coef[i, j] = TUTORIAL_COEF[(i + j) % 3].

    For d_in=3, d_out=1 this is the tutorial's column (0.2, -1.3, -0.5); wider inputs repeat
    the pattern and each further output shifts it by one feature.
    """
    i, j = np.indices((d_in, d_out))
    return np.asarray(TUTORIAL_COEF)[(i + j) % len(TUTORIAL_COEF)]


def synthetic(n, d_in, d_out, rng):
    """Draw x ~ N(0, 1) of shape (n, d_in) and y = x @ coef + N(0, 1) noise of shape (n, d_out), in float64."""
    x = rng.standard_normal((n, d_in))
    y = x @ true_coefficients(d_in, d_out) + rng.standard_normal((n, d_out))
    return x, y

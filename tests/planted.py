"""A planted bug that every correctness check must catch: the backward pass forgets the ReLU mask."""

import numpy as np

from gpunet.model import Network


def drop_relu_mask(monkeypatch, dtype=None):
    """Make Network's backward pass skip the ReLU (for networks of `dtype` only, when given).

    The forward pass and the loss stay right; only the masks the backward pass reads are set to 1.
    """
    residual = Network.residual

    def buggy(self, sse_out=None):
        r = residual(self, sse_out)
        if dtype is None or self.dtype == np.dtype(dtype):
            for m in self.mask:
                m[...] = 1
        return r

    monkeypatch.setattr(Network, "residual", buggy)

"""A planted bug that every correctness check must catch: the backward pass forgets the ReLU mask."""

import numpy as np

from gpunet.model import Workspace


def drop_relu_mask(monkeypatch, dtype=None):
    """Make the backward pass skip the ReLU (for networks of `dtype` only, when given).

    The forward pass and the loss stay right; only the masks the backward pass reads are set to 1.
    """
    residual = Workspace.residual

    def buggy(self, sse_out=None):
        r = residual(self, sse_out)
        if dtype is None or self.net.dtype == np.dtype(dtype):
            for m in self.mask:
                m[...] = 1
        return r

    monkeypatch.setattr(Workspace, "residual", buggy)

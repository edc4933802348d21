"""The tutorial's training loop transliterated line by line to NumPy: the reference gpunet is checked against.

Kept deliberately plain (fresh arrays every step, boolean-mask assignment), exactly as the tutorial writes it.
Two generalisations, both identities for the tutorial's own experiment: `loss_scale` k trains k * SSE
(k = 1 is the tutorial's loss; 1 / (n * d_out) is the mean), and the output bias gradient is summed per
output column (the tutorial's `grad_y_pred$sum()` is that sum for its single output).
"""

import numpy as np


def tutorial(x, y, w1, w2, b1, b2, learning_rate=1e-4, epochs=200, loss_scale=1.0):
    """Run the tutorial's loop from the given start; return the loss of every epoch and the final parameters."""
    losses = []
    for _ in range(epochs):
        ### -------- Forward pass --------
        h = x @ w1 + b1
        h_relu = np.clip(h, 0, None)
        y_pred = h_relu @ w2 + b2

        ### -------- compute loss --------
        loss = float(loss_scale * ((y_pred - y) ** 2).sum())
        losses.append(loss)

        ### -------- Backpropagation --------
        grad_y_pred = 2 * loss_scale * (y_pred - y)
        grad_w2 = h_relu.T @ grad_y_pred
        grad_h_relu = grad_y_pred @ w2.T
        grad_h = grad_h_relu.copy()
        grad_h[h < 0] = 0
        grad_b2 = grad_y_pred.sum(axis=0)
        grad_w1 = x.T @ grad_h
        grad_b1 = grad_h.sum(axis=0)

        ### -------- Update weights --------
        w2 = w2 - learning_rate * grad_w2
        b2 = b2 - learning_rate * grad_b2
        w1 = w1 - learning_rate * grad_w1
        b1 = b1 - learning_rate * grad_b1
    return np.array(losses), (w1, b1, w2, b2)

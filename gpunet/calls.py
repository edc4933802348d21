"""Calls: a pass of backend operations on fixed buffers, listed once and replayed.

On a small network each NumPy call costs more than its arithmetic, and the Python around the calls
(method calls, attribute lookups, keyword arguments) about half as much again: 353 rows x 10 -> 16 in
batches of 32 spend a third of each step there. A pass whose buffers are fixed for a batch size (the
forward and backward passes, the weight decay, an optimizer's update) is therefore listed once as
(function, args) pairs, each function writing into its last argument, which NumPy's and CuPy's ufuncs
and `dot` take positionally, and replayed by one loop. Values that change between replays (a step size,
a scale) live in 0-d buffers that the list reads.
"""


class Calls(list):
    """A list of (function, args) pairs; calling it runs them in order."""

    def __call__(self):
        for fn, args in self:
            fn(*args)

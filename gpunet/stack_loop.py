"""scikit-learn's stochastic epochs for a stack (gpunet/stack.py): sklearn_loop.fit_stochastic's loss curve,
schedule, stopping rule and early stopping for each of K models trained as one computation."""

from functools import partial

import numpy as np


def fit_stochastic_stack(stack, opt, hists, rows, s):
    """scikit-learn's stochastic epochs (sklearn_loop.fit_stochastic) for a stack: its batches from the row plan,
    each model's own loss curve, schedule and stopping rule.

    Args:
        stack, opt: the Stack and its StackSGD / StackAdam.
        hists: one sklearn_loop.History per model, continued.
        rows: the models' row plan, a stack_rows.SharedRows or stack_rows.ModelRows.
        s: settings with max_iter, tol, n_iter_no_change and score (with early stopping a
            stack_scores.ValidationScores, else None).

    Returns:
        Per model (params, optimizer, unconverged): its flat host parameters, its optimizer as
        gpunet.sklearn keeps it, and whether it stopped at max_iter without converging.
    """
    done = [None] * stack.k
    ids = np.arange(stack.k)  # the model of each row of the stack
    score = s.score
    for hist in hists:
        hist.n_iter_ = 0
    for _ in range(s.max_iter):
        if not opt.active.any():
            break
        if 2 * opt.active.sum() <= stack.k:  # most have stopped: the others as a smaller stack
            keep = np.flatnonzero(opt.active)
            stack, opt, rows, ids = stack.select(keep), opt.select(keep), rows.select(keep), ids[keep]
            score = None if score is None else score.select(keep)
        losses = rows.epoch(stack, opt)
        scores = None if score is None else score(stack)
        for k in np.flatnonzero(opt.active):
            hist = hists[ids[k]]
            hist.loss_ = losses[k]
            hist.n_iter_ += 1
            hist.t_ += int(rows.n[k])
            hist.loss_curve_.append(hist.loss_)
            hist.update(s.tol, None if scores is None else partial(float, scores[k]), _Row(stack, k))
            opt.iteration_ends(k, hist.t_)
            if hist.no_improvement_count > s.n_iter_no_change:
                if opt.trigger_stopping(k):
                    done[ids[k]] = _finished(stack, opt, k, hist, False)
                    opt.freeze(k)
                    continue
                hist.no_improvement_count = 0
        opt.epoch_ends()
    for k in np.flatnonzero(opt.active):
        done[ids[k]] = _finished(stack, opt, k, hists[ids[k]], True)
    return done


class _Row:
    """Model k's parameters as History.update copies them when its validation score improves: a host copy."""

    def __init__(self, stack, k):
        self.stack, self.k = stack, k

    def copy(self):
        return self.stack.params_host(self.k)


def _finished(stack, opt, k, hist, unconverged):
    """(params, optimizer, unconverged) of model k as its fit ends: with early stopping its best parameters."""
    params = stack.params_host(k) if hist.best_params is None else hist.best_params
    return params, opt.single(k, params), unconverged

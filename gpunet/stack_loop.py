"""scikit-learn's stochastic epochs for a stack (gpunet/stack.py): sklearn_loop.fit_stochastic's loss curve,
schedule, stopping rule and early stopping for each of K models trained as one computation."""

import numpy as np


def fit_stochastic_stack(stack, opt, hists, rows, s):
    """scikit-learn's stochastic epochs (sklearn_loop.fit_stochastic) for a stack: its batches from the row plan,
    each model's own loss curve, schedule and stopping rule (their bookkeeping as arrays over the models).

    Args:
        stack, opt: the Stack and its StackSGD / StackAdam.
        hists: one sklearn_loop.History per model, continued; written back at the end.
        rows: the models' row plan, a stack_rows.SharedRows or stack_rows.ModelRows.
        s: settings with max_iter, tol, n_iter_no_change and score (with early stopping a
            stack_scores.ValidationScores, else None).

    Returns:
        Per model (params, optimizer, unconverged): its flat host parameters, its optimizer as
        gpunet.sklearn keeps it, and whether it stopped at max_iter without converging.
    """
    with stack.on_threads():
        return _epochs(stack, opt, hists, rows, s)


def _epochs(stack, opt, hists, rows, s):
    done = [None] * stack.k
    ids = np.arange(stack.k)  # the model of each row of the stack
    score, book = s.score, _Records(hists, s.max_iter)
    for _ in range(s.max_iter):
        if not opt.active.any():
            break
        if 2 * opt.active.sum() <= stack.k:  # most have stopped: the others as a smaller stack
            keep = np.flatnonzero(opt.active)
            stack, opt, rows, ids = stack.select(keep), opt.select(keep), rows.select(keep), ids[keep]
            score = None if score is None else score.select(keep)
        losses = rows.epoch(stack, opt)
        active = np.flatnonzero(opt.active)
        improved = book.epoch(ids[active], losses[active], rows.n[active], s.tol,
                              None if score is None else score(stack)[active])
        better = active[improved]  # a better validation score: its parameters kept, as History.update keeps them
        if better.size:  # one copy to the host for them all
            for k, params in zip(better, stack.backend.to_numpy(stack.params[stack.backend.asarray(better)])):
                book.best_params[ids[k]] = params
        opt.iteration_ends(active, book.t[ids[active]])
        for k in active[book.count[ids[active]] > s.n_iter_no_change]:
            if opt.trigger_stopping(k):
                done[ids[k]] = _finished(stack, opt, k, book.best_params[ids[k]], False)
                opt.freeze(k)
            else:
                book.count[ids[k]] = 0
        opt.epoch_ends()
    for k in np.flatnonzero(opt.active):
        done[ids[k]] = _finished(stack, opt, k, book.best_params[ids[k]], True)
    book.write(hists)
    return done


class _Records:
    """Every model's History (sklearn_loop.History) as arrays over the models while a stack trains: epochs, rows
    seen, loss curve, best loss or validation score, epochs without improvement; written back by write()."""

    def __init__(self, hists, max_iter):
        self.early = hists[0].early_stopping
        self.n_iter = np.zeros(len(hists), np.int64)
        self.t = np.array([h.t_ for h in hists], np.int64)
        self.count = np.array([h.no_improvement_count for h in hists], np.int64)
        best = [h.best_validation_score_ if self.early else h.best_loss_ for h in hists]
        self.best = np.array(best, np.float64)
        self.curve, self.scores = np.full((max_iter, len(hists)), np.nan), np.full((max_iter, len(hists)), np.nan)
        self.best_params = [h.best_params for h in hists]

    def epoch(self, ids, losses, n, tol, scores):
        """The models `ids` ended an epoch with `losses` over n rows each (and validation `scores`): History.update's
        rules for each; returns where a validation score improved."""
        self.curve[self.n_iter[ids], ids] = losses
        self.n_iter[ids] += 1
        self.t[ids] += n
        best = self.best[ids]
        if scores is None:  # the training loss: improved by more than tol, else counted; min as Python's min
            self.count[ids] = np.where(losses > best - tol, self.count[ids] + 1, 0)
            self.best[ids] = np.where(losses < best, losses, best)
            return np.zeros(len(ids), bool)
        self.scores[self.n_iter[ids] - 1, ids] = scores
        self.count[ids] = np.where(scores < best + tol, self.count[ids] + 1, 0)
        improved = scores > best
        self.best[ids] = np.where(improved, scores, best)
        return improved

    def write(self, hists):
        """Each model's record into its History, as History.update would have left it."""
        for k, h in enumerate(hists):
            m = int(self.n_iter[k])
            h.n_iter_, h.t_, h.no_improvement_count = m, int(self.t[k]), int(self.count[k])
            h.loss_curve_.extend(self.curve[:m, k])
            if m:
                h.loss_ = self.curve[m - 1, k]
            if self.early:
                h.validation_scores_.extend(self.scores[:m, k].tolist())  # Python floats, as the scores fit() keeps
                h.best_validation_score_, h.best_params = float(self.best[k]), self.best_params[k]
            else:
                h.best_loss_ = self.best[k]


def _finished(stack, opt, k, best_params, unconverged):
    """(params, optimizer, unconverged) of model k as its fit ends: with early stopping its best parameters."""
    params = stack.params_host(k) if best_params is None else best_params
    return params, opt.single(k, params), unconverged

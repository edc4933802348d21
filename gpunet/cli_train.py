"""`gpunet train`: the tutorial's experiment, or a table; its log lines, progress, Ctrl-C and outputs."""

import contextlib
import functools
import json
import signal
import sys
import threading
import time
from dataclasses import replace

import click
from click.core import ParameterSource

from gpunet import checkpoint, plotting
from gpunet.cli import (backend_options, delimiter_option, distributed_options, explicit_options, failing_together,
                        network_options, split_config, tf32_option, training_options, use_backend)
from gpunet.comm import device_of, launch
from gpunet.files import check_writable
from gpunet.prepare import MISSING_MODES, TASKS
from gpunet.report import format_loss_line, summary_line
from gpunet.table_run import clip_batch, table_run
from gpunet.train import train


def table_options(f, train=True):
    """The options of a run on a table (--data): the target, the task, which columns, and missing cells; for
    train (the data instead of the synthetic data, and --loss deciding the task too) or search."""
    opts = [
        click.option("--data", "data_path", default=None,
                     help=("Train on this table instead of synthetic data: " if train else "The table: ")
                     + "a .csv with a header row, .parquet, .feather/.arrow, .npy or .npz file, or a folder or "
                     "quoted glob of such files read as one table."),
        click.option("--target", default=None, help="Target column(s) of --data: names or 0-based indices, "
                     "comma-separated  [default: the last column]"),
        click.option("--task", default="auto", show_default=True, type=click.Choice(TASKS),
                     help="auto: text labels, and integers with few distinct values, are classes; other numbers "
                     "are values." + (" --loss ce (classes) or mse/sse (values) decides it too." if train else "")),
        click.option("--features", default=None, help="The input columns of --data, comma-separated  "
                     "[default: every column but the targets, --drop and --keep]"),
        click.option("--drop", default=None, help="Columns of --data to leave out, comma-separated."),
        click.option("--keep", default=None, help="Columns of --data that are not inputs but are carried into "
                     "predict's output (an identifier, say), comma-separated."),
        click.option("--missing", default="fill", show_default=True, type=click.Choice(MISSING_MODES),
                     help="Missing cells (empty, NA, NaN) of the inputs: fill (numbers: the training rows' mean; "
                     "text: a category of its own), or error. Rows with a missing target are dropped."),
        delimiter_option,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("train")
@functools.partial(backend_options, ranks=True)
@functools.partial(network_options, table=True)
@functools.partial(training_options, table=True)
@table_options
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Write the trained model here (.npz), atomically.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write the loss curve here (PNG; needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line (and warnings).")
@tf32_option
@distributed_options("train")
@click.pass_context
def train_cmd(ctx, backend, device, data_path, target, task, features, drop, keep, missing, delimiter, save_path,
              plot_path, as_json, quiet, tf32, distributed, comm, **options):
    """Train the network; with no options, the tutorial's experiment.

    100 observations of 3 features, 32 hidden units, 1 output, sum of squared errors,
    learning rate 1e-4, 200 epochs, the loss printed every 10 epochs.

    With --data, a table: the task comes from the target (classes or values), text inputs are
    one-hot, missing cells filled, inputs and targets standardised with statistics of the training
    rows (all of it kept in a saved model), 20% of the rows held out, and the options not given take
    defaults made for tables: Adam at 1e-3 in batches of 200, 100 hidden units, an L2 penalty that
    shrinks as the rows grow, the best epoch kept once the validation loss has stopped improving.
    Ctrl-C stops at the end of the current epoch, prints the loss, writes --save, and exits with code
    130.
    """
    given = explicit_options(ctx, options)
    table = dict(target=target, task=task, features=features, drop=drop, keep=keep, missing=missing)
    ranks = launch(distributed)
    with failing_together(ranks):
        lead = ranks.rank == 0  # the rank that prints and writes
        for path, option in ((save_path, "--save"), (plot_path, "--plot")):  # before training, not after it
            if path and lead:
                check_writable(path, option)
        if plot_path and lead:
            plotting.require()
        config, data, notes = training_data(ctx, data_path, delimiter, given, options, table, ranks)
        show = lead and not (quiet or as_json)
        b = use_backend(backend, device_of(ranks, device), quiet=not show, tf32=tf32)
        ranks.bind(b, comm)
        if show and ranks.note:
            click.echo(ranks.note, err=True)
        if lead and not as_json:
            for note in notes:
                if not (quiet and note.startswith("Note: ")):  # --quiet keeps the warnings
                    click.echo(note, err=True)
        # the table defaults look at every epoch (for early stopping) and print every tenth, as the tutorial does
        shown_every = 10 if config.defaults == "table" and "log_every" not in given else 1
        result = replace(train_reporting(config, b, data, ranks, show, shown_every), notes=notes)
        if lead:
            write_outputs(result, save_path, plot_path, as_json)
    if result.interrupted:
        ctx.exit(130)


def train_reporting(config, b, data, ranks, show, shown_every=1):
    """Train with the log lines (every `shown_every`-th log point's), a progress bar on a terminal, and
    Ctrl-C stopping after the epoch."""
    stop = threading.Event()
    progress = Progress(config.epochs) if show and sys.stderr.isatty() else None

    def log_line(*figures):
        if figures[0] % (shown_every * config.log_every) == 0:
            if progress is not None:  # on a line of its own, not after the bar
                progress.clear()
            click.echo(format_loss_line(*figures))

    with on_interrupt(stop):
        try:
            return train(config, backend=b, data=data, stop=stop, progress=progress, comm=ranks,
                         on_log=log_line if show else None)
        finally:
            if progress is not None:
                progress.close()


def write_outputs(result, save_path, plot_path, as_json):
    """The trained model, the plot, and the JSON or summary line."""
    if save_path:
        checkpoint.save(save_path, result.model)
    if plot_path:
        plotting.loss_curve(plot_path, result)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.interrupted:
        click.echo(f"Interrupted at epoch {result.epochs_run}: loss {result.final_loss:.7g}", err=True)
    else:
        click.echo(summary_line(result))


def training_data(ctx, data_path, delimiter, given, options, table, ranks):
    """(Config, Dataset or None, notes) from train's options: a table's (gpunet.table_run), or the synthetic data (None)."""
    if data_path:
        return table_run(data_path, given, comm=ranks, delimiter=delimiter, **table)
    table_given = [k for k, v in table.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT]
    if table_given or delimiter:
        raise click.UsageError(f"--{(table_given or ['delimiter'])[0]} needs --data")
    config = split_config(options)[0]
    config, note = clip_batch(config, config.n - int(round(config.val_split * config.n)))
    return config, None, [note] if note else []


@contextlib.contextmanager
def on_interrupt(event):
    """While inside, the first Ctrl-C sets `event` (training stops after the epoch); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Progress:
    """A progress bar on stderr that appears once a run has taken two seconds."""

    def __init__(self, total, after=2.0):
        self.total, self.after, self.start, self.bar, self.done = total, after, time.monotonic(), None, 0

    def __call__(self, epoch):
        if self.bar is None:
            if time.monotonic() - self.start < self.after:
                return
            self.bar = click.progressbar(length=self.total, label="training", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(epoch - self.done)
        self.done = epoch

    def clear(self):
        """Wipe the bar's line (it is drawn again at the next epoch)."""
        if self.bar is not None:
            click.echo("\r\033[K", err=True, nl=False, color=True)  # the bar is only drawn on a terminal

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

"""The `gpunet` command line: parses options, calls the library, prints. No math here."""

import contextlib
import functools
import io
import json
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace

import click
from click.core import ParameterSource

from gpunet import __version__, checkpoint, gradcheck, plotting
from gpunet import backend as shim
from gpunet import inference
from gpunet.agree import compare
from gpunet.comm import COMMS, device_of, launch
from gpunet.data import DEFAULT_SEED
from gpunet.prepare import MISSING_MODES, TASKS
from gpunet.table_run import clip_batch, table_run
from gpunet.errors import Diverged, GpunetError
from gpunet.files import atomic_write, check_writable, write_json
from gpunet.config import DTYPES, HIDDEN_ACTIVATIONS
from gpunet.losses import LOSSES
from gpunet.model import INITS
from gpunet.optim import OPTIMIZERS
from gpunet.report import (bench_table, class_report, describe, format_loss_line, format_rows, model_report,
                           summary_line)
from gpunet.tabular import read_table
from gpunet.train import Config, train
from gpunet.workloads import workload as workload_config


class OneLineErrors(click.Group):
    """A group whose user errors print one line on stderr and exit with their own code, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"Error: {e.format_message()}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except GpunetError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def parse_hidden(ctx, param, value):
    """'32' or '64,64' -> (32,) or (64, 64)."""
    try:
        return tuple(int(h) for h in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of integers (e.g. 32 or 64,64)"
        ) from None


DEVICE_DEFAULT = "0; with --distributed, the rank's index on its node"
TABLE_SHOWN = {"hidden": "100", "epochs": "1000, stopped early", "lr": "0.001", "optimizer": "adam",
               "weight_decay": "min(0.1, 30 / training rows)", "log_every": "1", "loss": "ce for classes, mse for values",
               "init": "he (relu), glorot (tanh, sigmoid)"}


def shown(key, tutorial, table=True):
    """An option's default as --help shows it: the tutorial's, and with --data the table's where it differs."""
    return f"{tutorial}; with --data: {TABLE_SHOWN[key]}" if table and key in TABLE_SHOWN else str(tutorial)


def backend_options(f, ranks=False):
    """--backend and --device, shared by every command that runs on a backend (`ranks`: one with --distributed)."""
    f = click.option(
        "--device", default=None, show_default=DEVICE_DEFAULT if ranks else "0", type=int,
        help="CUDA device index (with --backend cuda or auto)."
    )(f)
    return click.option(
        "--backend",
        default=shim.default_backend,
        show_default="$GPUNET_BACKEND, else auto",
        type=click.Choice(shim.BACKENDS, case_sensitive=False),
        help="Where to run: cpu (NumPy), cuda (CuPy), or auto (CUDA when usable, else the CPU).",
    )(f)


def network_options(f, table=False):
    """The options that define what is trained; their defaults are the tutorial's experiment (and with
    `table`, --help shows the table defaults of train --data beside them)."""
    d = Config()
    opts = [
        click.option("--n", default=d.n, show_default=True, type=int, help="Number of observations."),
        click.option("--d-in", default=d.d_in, show_default=True, type=int, help="Number of input features."),
        click.option(
            "--hidden",
            default=",".join(map(str, d.hidden)),
            show_default=shown("hidden", ",".join(map(str, d.hidden)), table),
            callback=parse_hidden,
            help="Hidden layer widths, comma-separated (e.g. 64,64 for two layers).",
        ),
        click.option("--d-out", default=d.d_out, show_default=True, type=int, help="Number of outputs."),
        click.option("--epochs", default=d.epochs, show_default=shown("epochs", d.epochs, table), type=int,
                     help="Passes over the training rows (one step each; with --batch-size, one per batch)."),
        click.option("--lr", default=d.lr, show_default=shown("lr", d.lr, table), type=float, help="Learning rate."),
        click.option(
            "--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed for the data and initial weights."
        ),
        click.option("--dtype", default=d.dtype, show_default=True, type=click.Choice(DTYPES), help="Float type."),
        click.option(
            "--loss",
            default=d.loss,
            show_default=shown("loss", d.loss, table),
            type=click.Choice(LOSSES),
            help="sse: sum of squared errors (the tutorial's); mse: their mean; ce: softmax cross-entropy "
            "over the --d-out classes (a classifier), averaged over the rows.",
        ),
        click.option("--activation", default=d.activation, show_default=True, type=click.Choice(HIDDEN_ACTIVATIONS),
                     help="The hidden layers' activation (relu is the tutorial's)."),
        click.option(
            "--init",
            default=d.init,
            show_default=shown("init", d.init, table),
            type=click.Choice(INITS),
            help="normal: N(0,1) weights, zero biases (the tutorial's); he: scaled by sqrt(2/fan_in); glorot: "
            "uniform within +-sqrt(6/(fan_in+fan_out)).",
        ),
        click.option(
            "--log-every", default=d.log_every, show_default=shown("log_every", d.log_every, table), type=int,
            help="Print the loss (and look at the validation loss) every this many epochs."
            + (" With --data and without this option, every epoch is looked at and every tenth printed." if table
               else "")
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def training_options(f, table=False):
    """Mini-batches, optimizers and validation; their defaults train exactly as the tutorial does."""
    d = Config()
    opts = [
        click.option("--batch-size", type=int, default=None, help="Rows per gradient step, shuffled every epoch "
                     "from the seed; more than the training rows is all of them  [default: the whole set, as in the "
                     f"tutorial{'; with --data: min(200, rows)' if table else ''}]"),
        click.option("--optimizer", default=d.optimizer, show_default=shown("optimizer", d.optimizer, table),
                     type=click.Choice(OPTIMIZERS),
                     help="sgd: plain gradient descent (the tutorial's); momentum; adam."),
        click.option("--momentum", default=d.momentum, show_default=True, type=float,
                     help="Momentum coefficient (--optimizer momentum)."),
        click.option("--beta1", default=d.beta1, show_default=True, type=float, help="Adam's first-moment decay."),
        click.option("--beta2", default=d.beta2, show_default=True, type=float, help="Adam's second-moment decay."),
        click.option("--eps", default=d.eps, show_default=True, type=float, help="Adam's epsilon."),
        click.option("--val-split", type=float, default=None, help="Fraction of rows held out for validation, "
                     "drawn from the seed  [default: 0" + ("; with --data: 0.2]" if table else "]")),
        click.option("--weight-decay", default=d.weight_decay, show_default=shown("weight_decay", d.weight_decay, table),
                     type=float,
                     help="L2 penalty L: adds L/2 * sum(w^2) over the weights (not the biases) to the loss."),
        click.option("--early-stop", type=int, default=None, help="Stop when the validation loss has not improved "
                     "for this many log points, and keep the best epoch's parameters (needs validation rows)"
                     + ("  [default: none; with --data: about 50 steps, at least 10 epochs]" if table else "")),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


CONFIG_KEYS = tuple(Config.__dataclass_fields__)


def split_config(options, **defaults):
    """Pull the Config fields out of a command's options (None: the default); return (Config, the rest)."""
    given = {k: options.pop(k) for k in CONFIG_KEYS if k in options}
    given = {k: v for k, v in given.items() if v is not None or k == "batch_size"}
    return Config(**{**defaults, **given}), options


tf32_option = click.option(
    "--tf32", is_flag=True, help="On CUDA, let float32 matrix products round their inputs to TF32 on tensor cores "
    "(faster, less exact; off by default, whatever CUPY_TF32 says).")


def distributed_options(command):
    """--distributed and --comm for `command` (train, check, bench): one model trained by every rank of an MPI launch."""
    return functools.partial(_distributed_options, command=command)


def _distributed_options(f, command):
    f = click.option("--comm", default="auto", show_default=True, type=click.Choice(COMMS),
                     help="How the gradient travels between ranks: nccl (GPUs), mpi (the buffer as it is: host "
                     "memory, or CUDA-aware MPI), host (GPU buffers staged through host memory); auto: nccl on "
                     "CUDA when CuPy has it, else host, and mpi on the CPU.")(f)
    return click.option("--distributed", is_flag=True,
                        help=f"Train one model with every rank of an MPI launch (mpiexec -n P gpunet {command} ... "
                        "--distributed): each rank computes the gradient of its share of the rows; the result "
                        "is one process's. Needs mpi4py (the extra [mpi]).")(f)


def use_backend(name, device, quiet=False, tf32=False):
    """Resolve the backend; say on stderr what `auto` chose and why."""
    b = shim.resolve(name, device or 0, tf32=tf32)
    if b.note and not quiet:
        click.echo(b.note, err=True)
    return b


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="gpunet")
@click.pass_context
def cli(ctx):
    """Train a fully-connected network with hand-written gradients, on the GPU (CuPy) or the CPU (NumPy)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def parse_delimiter(ctx, param, value):
    """A CSV separator as typed in a shell: '\\t' or 'tab' is a tab; otherwise one character."""
    if value is None:
        return None
    value = "\t" if value in ("\\t", "tab") else value
    if len(value) != 1:
        raise click.BadParameter(f"{value!r} is not one character (e.g. ';' or '\\t')")
    return value


delimiter_option = click.option("--delimiter", default=None, callback=parse_delimiter,
                                help="A CSV's cell separator, one character ('\\t' or tab for a tab)  [default: ,]")


def table_options(f):
    """The options of a run on a table (--data): the target, the task, which columns, and missing cells."""
    opts = [
        click.option("--data", "data_path", default=None,
                     help="Train on this table instead of synthetic data: a .csv with a header row, .parquet, "
                     ".feather/.arrow, .npy or .npz file, or a folder or quoted glob of such files read as one table."),
        click.option("--target", default=None, help="Target column(s) of --data: names or 0-based indices, "
                     "comma-separated  [default: the last column]"),
        click.option("--task", default="auto", show_default=True, type=click.Choice(TASKS),
                     help="auto: text labels, and integers with few distinct values, are classes; other numbers "
                     "are values. --loss ce (classes) or mse/sse (values) decides it too."),
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


@cli.command("train")
@functools.partial(backend_options, ranks=True)
@functools.partial(network_options, table=True)
@functools.partial(training_options, table=True)
@table_options
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Write the trained model here (.npz), atomically.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write the loss curve here (PNG; needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
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


@contextlib.contextmanager
def failing_together(comm):
    """With several ranks, an error on one ends them all within moments: one line naming the rank and the
    cause, then MPI's abort (no rank is left waiting in a collective, and no rank writes a model)."""
    if comm.size == 1:
        yield
        return
    try:
        yield
    except click.exceptions.Exit:
        raise
    except (GpunetError, click.ClickException) as e:
        message = e.format_message() if isinstance(e, click.ClickException) else str(e)
        if comm.rank == 0 or not isinstance(e, Diverged):  # a divergence is every rank's: said once
            click.echo(f"Error: rank {comm.rank} of {comm.size}: {message}", err=True)
        comm.abort(e.exit_code)
    except KeyboardInterrupt:
        click.echo(f"Aborted: rank {comm.rank} of {comm.size}", err=True)
        comm.abort(130)
    except BaseException as e:  # a bug: the traceback, then every rank ends
        traceback.print_exc()
        click.echo(f"Error: rank {comm.rank} of {comm.size}: {type(e).__name__}: {e}", err=True)
        comm.abort(1)


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


def model_data_options(f):
    """--model, --data, --target, --by-position and --delimiter, shared by predict and evaluate."""
    f = delimiter_option(f)
    f = click.option("--by-position", is_flag=True, help="Take the inputs by position (the training order), "
                     "not by name; a file without names (.npy, .npz) always is.")(f)
    f = click.option("--target", default=None, help="The file's target column(s), as train's --target, when its "
                     "names differ from the model's.")(f)
    f = click.option("--data", "data_path", required=True,
                     help="A table (a file, folder or glob, as train's --data): the model's input columns are "
                     "taken by name, prepared as in training; other columns are ignored.")(f)
    return click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
                        help="A model saved by gpunet train --save.")(f)


def model_columns(model, data_path, delimiter, with_targets, target, by_position, quiet=False):
    """(inputs, targets or None, table): the model's columns of the table at `data_path`, its notes on stderr."""
    table = read_table(data_path, delimiter=delimiter)
    x, y, notes = inference.columns(model, table, with_targets, target, by_position)
    for note in [] if quiet else notes:
        click.echo(note, err=True)
    return x, y, table


@cli.command("predict")
@model_data_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the predictions here as CSV (atomically)  [default: stdout]")
@click.option("--proba", is_flag=True, help="A classifier: also one probability column per class, named by the class.")
@backend_options
def predict_cmd(model_path, data_path, target, by_position, delimiter, out_path, proba, backend, device):
    """Predict with a saved model: a regressor's targets in their own units, a classifier's label per row.

    The columns the model was trained with --keep (an identifier, say) come first in the output.
    """
    if out_path:
        check_writable(out_path, "--out")
    model = checkpoint.load(model_path)
    if proba and model.classes is None:
        raise click.UsageError("--proba is for classifiers (trained with --loss ce); this model is a regressor")
    x, _, table = model_columns(model, data_path, delimiter, False, target, by_position)
    y = inference.outputs(model, x, use_backend(backend, device))
    header, cols = inference.prediction_columns(model, y, proba)
    kept, kept_cols = inference.kept_columns(model, table)
    header, cols = kept + header, kept_cols + cols
    if out_path is None:
        out = io.BytesIO()
        inference.write_csv(out, header, cols, model.dtype)
        click.echo(out.getvalue().decode(), nl=False)
        return

    def write(tmp):
        with open(tmp, "wb") as f:
            inference.write_csv(f, header, cols, model.dtype)

    atomic_write(out_path, write, suffix=".csv")


@cli.command("evaluate")
@model_data_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@backend_options
def evaluate_cmd(model_path, data_path, target, by_position, delimiter, as_json, backend, device):
    """Score a saved model on data with known targets.

    A regressor: its loss, and MSE and R-squared per target. A classifier: accuracy, log-loss,
    precision, recall and F1 per class, and the confusion matrix.
    """
    model = checkpoint.load(model_path)
    x, y, _ = model_columns(model, data_path, delimiter, True, target, by_position, quiet=as_json)
    s = inference.scores(model, y, inference.outputs(model, x, use_backend(backend, device, quiet=as_json)))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    if model.classes is None:
        click.echo(f"{s['rows']} rows, loss ({s['loss_name']}, standardised targets): {s['loss']:.7g}")
        click.echo(format_rows(("target", "MSE", "R-squared"),
                               [(t["target"], f"{t['mse']:.7g}", f"{t['r2']:.4f}") for t in s["targets"]]))
        return
    if s["unknown_labels"]:
        click.echo(f"Warning: {s['unknown_labels']} rows have a label the model does not know; they count as "
                   "misclassified", err=True)
    click.echo(class_report(s))


@cli.command("info")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_cmd(model_path, as_json):
    """What a model file holds: layers, activation, task, classes, input columns and their preparation,
    training settings, final figures, format version."""
    d = checkpoint.describe(model_path)
    click.echo(json.dumps(d, indent=2) if as_json else model_report(d))


def explicit_options(ctx, options):
    """The options the user gave on the command line (not their defaults)."""
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}


def split_list(value):
    return [v.strip().lower() for v in value.split(",") if v.strip()]


@cli.command("check")
@network_options
@training_options
@click.option("--workload", default=None, help="Start from a named workload (seed, medium, large, mnist); options given override it.")
@click.option("--backends", default="cpu,cuda", show_default=True, help="Comma-separated backends to train and compare.")
@click.option("--device", default=None, show_default=DEVICE_DEFAULT, type=int, help="CUDA device index.")
@click.option("--reference", is_flag=True, help="Also compare each backend with a float64 NumPy run.")
@tf32_option
@distributed_options("check")
@click.pass_context
def check_cmd(ctx, workload, backends, device, reference, tf32, distributed, comm, **options):
    """Train one configuration on several backends from the same start and compare them.

    Compares the losses at the log points, the final loss and every final parameter tensor, as the
    max absolute and max relative difference (relative to the tensor's largest magnitude), against a tolerance for
    the dtype: float64 1e-9 (summation order only), float32 5e-3 (rounding grows over epochs; a
    wrong gradient gives 1e-2 and more). Exit code 0 when all agree, 1 when any does not, 2 when a
    backend cannot be used.
    """
    given = explicit_options(ctx, options)
    config = workload_config(workload, **given) if workload else split_config(options)[0]
    names = split_list(backends)
    if len(names) < 2 and not reference:
        raise click.UsageError("nothing to compare: give two or more --backends, or --reference")
    ranks = launch(distributed)
    with failing_together(ranks):
        device = device_of(ranks, device)
        resolved = [shim.resolve(n, device, tf32=tf32) for n in names]  # every backend usable before any training
        say = click.echo if ranks.rank == 0 else (lambda *args, **kw: None)
        say(f"Checking {describe(config)}" + (", TF32 products on CUDA" if tf32 else "")
            + (f", {ranks.size} ranks" if ranks.size > 1 else ""))
        results = {b.name: train(config, backend=b, comm=ranks.bind(b, comm)) for b in resolved}
        pairs = [(f"{n} vs {names[0]}", results[n], results[names[0]]) for n in names[1:]]
        if reference:
            cpu = shim.resolve("cpu")
            ref = train(replace(config, dtype="float64"), backend=cpu, comm=ranks.bind(cpu, "mpi" if comm == "nccl" else comm))
            pairs += [(f"{n} vs float64 reference", results[n], ref) for n in names]
    report_agreement(ctx, pairs, say)


def report_agreement(ctx, pairs, say):
    """check's table of (label, result, reference) pairs, its verdict, and exit code 1 on a disagreement."""
    table, failed = [], 0
    for label, a, b in pairs:
        for row in compare(a, b):
            failed += not row.ok
            table.append((label, row.quantity, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.tol:.0e}",
                          "PASS" if row.ok else "FAIL"))
    say(format_rows(("compared", "quantity", "max abs diff", "max rel diff", "tolerance", "result"), table))
    if failed:
        say(f"FAIL: {failed} of {len(table)} comparisons above tolerance")
        ctx.exit(1)
    say(f"PASS: all {len(table)} comparisons within tolerance")


@cli.command("gradcheck")
@backend_options
@click.option("--n", default=8, show_default=True, type=int, help="Number of observations.")
@click.option("--d-in", default=3, show_default=True, type=int, help="Number of input features.")
@click.option("--hidden", default="32", show_default=True, callback=parse_hidden, help="Hidden layer widths, comma-separated.")
@click.option("--d-out", default=1, show_default=True, type=int, help="Number of outputs.")
@click.option("--loss", default="sse", show_default=True, type=click.Choice(LOSSES),
              help="Loss function (ce: over --d-out classes, 2 or more).")
@click.option("--activation", default="relu", show_default=True, type=click.Choice(HIDDEN_ACTIVATIONS),
              help="The hidden layers' activation.")
@click.option("--weight-decay", default=0.0, show_default=True, type=float, help="L2 penalty, checked with the rest.")
@click.option("--init", default="he", show_default=True, type=click.Choice(INITS), help="Initialisation.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed for the data and parameters.")
@click.option("--eps", default=gradcheck.DEFAULT_EPS, show_default=True, type=float, help="Finite-difference step.")
@click.option("--tol", default=gradcheck.DEFAULT_TOL, show_default=True, type=float, help="Largest relative error that passes.")
@click.pass_context
def gradcheck_cmd(ctx, backend, device, n, d_in, hidden, d_out, loss, activation, weight_decay, init, seed, eps, tol):
    """Check the hand-written backward pass against central finite differences, in float64.

    Uses the training code's own forward and backward passes, at a generic point (the initial
    parameters plus noise of standard deviation 0.1, so that no unit sits on ReLU's kink). Prints the max
    relative error per weight and bias tensor; exit code 1 when any is above --tol.
    """
    # validates the sizes and values
    Config(n=n, d_in=d_in, hidden=hidden, d_out=d_out, loss=loss, init=init, activation=activation,
           weight_decay=weight_decay)
    if loss == "ce" and d_out < 2:
        raise click.UsageError(f"--loss ce needs two or more classes: give --d-out 2 or more, got {d_out}")
    b = use_backend(backend, device)
    ws = gradcheck.generic_network(b, [d_in, *hidden, d_out], n=n, seed=seed, init=init, activation=activation,
                                   loss=loss)
    decay = f", weight decay {weight_decay:g}" if weight_decay else ""
    click.echo(f"Gradient check on {b.name}: n={n} sizes={[d_in, *hidden, d_out]} {loss}, {activation}{decay}, "
               f"float64, eps {eps:g}")
    rows = gradcheck.gradcheck(ws, weight_decay, eps)
    shapes = [s for w, bias in ws.net.layout.unpack(ws.net.params) for s in (w.shape, bias.shape)]
    table = [(name, "x".join(map(str, shape)), f"{err:.2e}", "PASS" if err <= tol else "FAIL")
             for (name, err), shape in zip(rows, shapes)]
    click.echo(format_rows(("tensor", "shape", "max rel error", "result"), table))
    worst = max(err for _, err in rows)
    if worst > tol:
        click.echo(f"FAIL: max relative error {worst:.2e} is above {tol:g}")
        ctx.exit(1)
    click.echo(f"PASS: max relative error {worst:.2e} (tolerance {tol:g})")


def resolve_backend_list(value, device, tf32=False):
    """'cpu,cuda' -> Backends; 'all' -> the CPU, plus CUDA when it is usable (said on stderr when it is not)."""
    names = split_list(value)
    if names == ["all"]:
        try:
            return [shim.resolve("cpu"), shim.resolve("cuda", device, tf32=tf32)]
        except GpunetError as e:
            click.echo(f"bench: CPU only ({str(e).split(';')[0]})", err=True)
            return [shim.resolve("cpu")]
    return [shim.resolve(n, device, tf32=tf32) for n in names]


def stderr_progress():
    """A progress callback that writes to stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    return lambda message: click.echo(f"\r\033[K{message}", err=True, nl=False)


@cli.command("bench")
@network_options
@click.option("--workload", "workloads", default="seed,medium,large,mnist", show_default=True,
              help="Comma-separated workloads: seed, medium, large, mnist, custom (custom: the tutorial changed by "
              "the options).")
@click.option("--backend", "backend_list", default="all", show_default=True,
              help="Comma-separated backends, or all (the CPU, plus CUDA when usable).")
@click.option("--device", default=None, show_default=DEVICE_DEFAULT, type=int, help="CUDA device index.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help="Timed rounds per workload and backend.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write every figure to this JSON file.")
@tf32_option
@distributed_options("bench")
@click.pass_context
def bench_cmd(ctx, workloads, backend_list, device, repeats, json_path, tf32, distributed, comm, **options):
    """Measure training throughput per workload and backend.

    Workloads (float32 unless --dtype says otherwise): seed (the tutorial: n=100, 3-32-1, 200 epochs),
    medium (n=8192, 256-1024-16, 20 epochs), large (n=4096, 1024-4096-1024, 3 epochs), mnist (n=8192,
    784-512-10 classes, softmax cross-entropy, 10 epochs). Network options given on the command line
    change every selected workload.

    Each workload runs once untimed, then in --repeats rounds of back-to-back runs that add up to a
    second, the device synchronized before each clock read; data generation and transfer are outside the timed region. Reports the median, min and max,
    time per epoch, GFLOP/s of the matrix products and their share of the backend's float32
    matrix-product ceiling (measured in the same run), and peak memory beside the bytes the math needs.
    Where two backends ran a workload, their results are compared as in `gpunet check`. With
    --distributed, one backend's training by every rank of the launch (a run's time is its slowest rank's).
    """
    from gpunet.bench import bench

    given = explicit_options(ctx, options)
    ranks = launch(distributed)
    with failing_together(ranks):
        lead = ranks.rank == 0
        if json_path and lead:
            check_writable(json_path, "--json")
        chosen = {name: workload_config(name, **given) for name in split_list(workloads)}
        resolved = resolve_backend_list(backend_list, device_of(ranks, device), tf32)
        if ranks.size > 1:
            if len(resolved) != 1:
                raise click.UsageError("--distributed benchmarks one backend: give --backend cpu or --backend cuda")
            ranks.bind(resolved[0], comm)
        report = bench(chosen, resolved, repeats=repeats, progress=stderr_progress() if lead else None, comm=ranks)
    if not lead:
        return
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)
    if json_path:
        write_json(json_path, report)
    click.echo(bench_table(report))
    if not all(a["ok"] for a in report["agreement"]):
        ctx.exit(1)

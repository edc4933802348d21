"""The `gpunet` command line: the group, its one-line errors and the options its commands share. The
commands live in cli_train (train), cli_model (predict, evaluate, info), cli_search (search) and cli_prove
(check, gradcheck, bench); each parses, calls the library and prints. No math here."""

import contextlib
import functools
import sys
import traceback

import click

from gpunet import __version__
from gpunet import backend as shim
from gpunet.comm import COMMS
from gpunet.config import DTYPES, HIDDEN_ACTIVATIONS
from gpunet.data import DEFAULT_SEED
from gpunet.errors import Diverged, GpunetError
from gpunet.losses import LOSSES
from gpunet.model import INITS
from gpunet.optim import OPTIMIZERS
from gpunet.train import Config


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


def stderr_progress():
    """A progress callback that writes to stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    return lambda message: click.echo(f"\r\033[K{message}", err=True, nl=False)


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


def explicit_options(ctx, options):
    """The options the user gave on the command line (not their defaults)."""
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}


def split_list(value):
    return [v.strip().lower() for v in value.split(",") if v.strip()]


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


def _add_commands():
    """The commands, from their modules (imported here: they take their options from this one)."""
    from gpunet import cli_model, cli_prove, cli_search, cli_train

    for command in (cli_train.train_cmd, cli_model.predict_cmd, cli_model.evaluate_cmd, cli_model.info_cmd,
                    cli_search.search_cmd, cli_prove.check_cmd, cli_prove.gradcheck_cmd, cli_prove.bench_cmd):
        cli.add_command(command)


_add_commands()

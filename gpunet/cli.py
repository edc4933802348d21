"""The `gpunet` command line: parses options, calls the library, prints. No math here."""

import json
import sys

import click

from gpunet import __version__
from gpunet import backend as backends
from gpunet.data import DEFAULT_SEED
from gpunet.errors import GpunetError
from gpunet.model import INITS, LOSSES
from gpunet.train import DTYPES, Config, train


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


def backend_options(f):
    """--backend and --device, shared by every command that runs on a backend."""
    f = click.option(
        "--device", default=0, show_default=True, type=int, help="CUDA device index (with --backend cuda or auto)."
    )(f)
    return click.option(
        "--backend",
        default=backends.default_backend,
        show_default="$GPUNET_BACKEND, else auto",
        type=click.Choice(backends.BACKENDS, case_sensitive=False),
        help="Where to run: cpu (NumPy), cuda (CuPy), or auto (CUDA when usable, else the CPU).",
    )(f)


def network_options(f):
    """The options that define what is trained; their defaults are the tutorial's experiment."""
    d = Config()
    opts = [
        click.option("--n", default=d.n, show_default=True, type=int, help="Number of observations."),
        click.option("--d-in", default=d.d_in, show_default=True, type=int, help="Number of input features."),
        click.option(
            "--hidden",
            default=",".join(map(str, d.hidden)),
            show_default=True,
            callback=parse_hidden,
            help="Hidden layer widths, comma-separated (e.g. 64,64 for two layers).",
        ),
        click.option("--d-out", default=d.d_out, show_default=True, type=int, help="Number of outputs."),
        click.option("--epochs", default=d.epochs, show_default=True, type=int, help="Gradient-descent steps."),
        click.option("--lr", default=d.lr, show_default=True, type=float, help="Learning rate."),
        click.option(
            "--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed for the data and initial weights."
        ),
        click.option("--dtype", default=d.dtype, show_default=True, type=click.Choice(DTYPES), help="Float type."),
        click.option(
            "--loss",
            default=d.loss,
            show_default=True,
            type=click.Choice(LOSSES),
            help="sse: sum of squared errors (the tutorial's); mse: their mean.",
        ),
        click.option(
            "--init",
            default=d.init,
            show_default=True,
            type=click.Choice(INITS),
            help="normal: N(0,1) weights, zero biases (the tutorial's); he: scaled by sqrt(2/fan_in).",
        ),
        click.option(
            "--log-every", default=d.log_every, show_default=True, type=int, help="Print the loss every this many epochs."
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


CONFIG_KEYS = tuple(Config.__dataclass_fields__)


def split_config(options):
    """Pull the Config fields out of a command's options; return (Config, the rest)."""
    config = Config(**{k: options.pop(k) for k in CONFIG_KEYS})
    return config, options


def use_backend(name, device, quiet=False):
    """Resolve the backend; say on stderr what `auto` chose and why."""
    b = backends.resolve(name, device)
    if b.note and not quiet:
        click.echo(b.note, err=True)
    return b


def format_loss_line(epoch, loss):
    """The tutorial's log line: `Epoch:  10    Loss:  318.4779` (seven significant digits)."""
    return f"Epoch:  {epoch}    Loss:  {loss:.7g}"


def format_seconds(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpunet")
def cli():
    """Train a fully-connected ReLU network with hand-written gradients, on the GPU (CuPy) or the CPU (NumPy)."""


@cli.command("train")
@backend_options
@network_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
def train_cmd(backend, device, as_json, quiet, **options):
    """Train the network; with no options, the tutorial's experiment.

    100 observations of 3 features, 32 hidden units, 1 output, sum of squared errors,
    learning rate 1e-4, 200 epochs, the loss printed every 10 epochs.
    """
    config, _ = split_config(options)
    b = use_backend(backend, device, quiet=quiet or as_json)
    show = not (quiet or as_json)
    result = train(config, backend=b, on_log=(lambda e, l: click.echo(format_loss_line(e, l))) if show else None)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(
        f"Trained on {b.name} ({b.device}), {config.dtype}, seed {config.seed}: "
        f"{config.epochs} epochs in {format_seconds(result.train_seconds)} "
        f"({format_seconds(result.seconds_per_epoch)} per epoch), final loss {result.final_loss:.7g}"
    )

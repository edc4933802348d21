"""Loss curves as PNG files, with matplotlib (an optional extra)."""

from gpunet.files import atomic_write
from gpunet.errors import ConfigError

HINT = "pip install matplotlib (gpunet's extra [plot])"


def require():
    """Raise ConfigError naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"--plot needs matplotlib, which is not installed: {HINT}") from None


def loss_curve(path, result):
    """Write the training (and validation) loss at the log points of `result` to `path`, atomically."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = list(result.losses)
    if not points or points[-1][0] != result.epochs_run:
        points.append((result.epochs_run, result.final_loss))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*zip(*points), label="training", marker="." if len(points) < 50 else None)
    if result.val_losses:
        ax.plot(*zip(*result.val_losses), label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({result.config.loss})")
    ax.set_yscale("log")
    ax.set_title(f"gpunet: {result.config.sizes}, {result.config.optimizer}, lr {result.config.lr:g}")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    plt.close(fig)

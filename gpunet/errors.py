"""Errors a user can cause, each with the exit code the CLI gives it.

Bugs are not listed here: they raise ordinary exceptions with a traceback.
"""


class GpunetError(Exception):
    """A problem the user can fix; the message is one line that names the fix."""

    exit_code = 1


class ConfigError(GpunetError):
    """An option value that cannot work (a size of zero, a negative learning rate, ...)."""

    exit_code = 2


class BackendUnavailable(GpunetError):
    """The requested backend cannot be used on this machine."""

    exit_code = 2


class Diverged(GpunetError):
    """Training produced a non-finite loss.

    Attributes:
        epoch: the log point (or last epoch) where the non-finite loss was seen.
        loss: that loss (nan or inf).
        losses: the finite (epoch, loss) log points before it.
    """

    exit_code = 3

    def __init__(self, epoch, loss, losses):
        self.epoch, self.loss, self.losses = epoch, loss, losses
        super().__init__(f"training diverged: the loss at epoch {epoch} is {loss}; try a smaller --lr")


class DataError(GpunetError):
    """A data file that is missing, unreadable or malformed, or does not fit the model."""

    exit_code = 4


class ModelFileError(GpunetError):
    """A model file that is not a gpunet model, is truncated, or is of a newer format."""

    exit_code = 5


class DeviceMemoryError(GpunetError):
    """The GPU ran out of memory."""

    exit_code = 6


class OutputError(GpunetError):
    """An output file (model, predictions, plot, report) could not be written."""

    exit_code = 7

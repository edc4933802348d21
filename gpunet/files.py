"""Writing files so that a failure leaves nothing behind: a temporary file renamed into place."""

import json
import os
import tempfile

from gpunet.errors import ConfigError, OutputError


def check_writable(path, option):
    """Raise ConfigError naming `option` unless a file can be written at `path` (checked before long work)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: cannot write in {folder}")


def atomic_write(path, write, suffix=""):
    """Call write(temporary path), then rename it onto `path`: a failed or interrupted write leaves nothing."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gpunet-", suffix=suffix, dir=folder)
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        raise


def write_json(path, obj):
    """Write `obj` as JSON to `path`, atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)

    atomic_write(path, write, suffix=".json")

"""Running the `gpunet` command in-process for the tests, and checking its one-line errors."""

from click.testing import CliRunner

from gpunet.cli import cli


def run(*args):
    """Invoke `gpunet ARGS...` (each argument turned into a string); return click's Result."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(r, code):
    """Assert that `r` exited with `code` after exactly one `Error: ...` line on stderr; return that line."""
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]

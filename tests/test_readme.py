"""The README runs as written: every ```sh and ```python block, verbatim, in a folder holding a copy of
examples/, with the environment's `gpunet` (and `mpiexec`) first on the PATH.

A block that cannot run here says so in the README itself, in an HTML comment just above it:
`<!-- not run by the tests: why -->` (it installs packages, builds this environment, or needs a GPU).
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import needs_pyarrow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- not run by the tests: (?P<why>[^>]*?) -->\s*)?^```(?P<lang>sh|python)\n(?P<code>.*?)^```",
                   re.M | re.S)


def blocks():
    """(line, language, code, why it is not run or None) for every sh and python block of the README."""
    text = open(os.path.join(ROOT, "README.md")).read()
    return [(text[: m.start("lang")].count("\n") + 1, m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(text)]


def test_the_readme_has_runnable_blocks_and_few_exceptions():
    found = blocks()
    runnable = [b for b in found if b[3] is None]
    assert len(runnable) >= 7 and len(found) - len(runnable) <= 4, [(b[0], b[3]) for b in found if b[3]]


@needs_pyarrow
@pytest.mark.parametrize("line, lang, code, why", blocks(), ids=[f"line{b[0]}-{b[1]}" for b in blocks()])
def test_readme_block_runs_verbatim(tmp_path, line, lang, code, why):
    if why:
        pytest.skip(f"README line {line}: {why}")
    shutil.copytree(os.path.join(ROOT, "examples"), tmp_path / "examples")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": ROOT, "GPUNET_BACKEND": "cpu", "MPLBACKEND": "Agg"}
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README line {line} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

"""A table's preparation over real MPI ranks: each rank reads its share of the penguins as published (text,
missing cells), and the fill values, categories, classes and the trained model are one process's."""

import os

import numpy as np
import pytest
from click.testing import CliRunner

from gpunet import checkpoint
from gpunet.cli import cli
from tests.conftest import needs_pyarrow

pytest.importorskip("mpi4py", reason="the distributed tests need mpi4py and mpich (gpunet's extra [mpi])")
from tests.test_distributed import GPUNET, mpirun  # noqa: E402  (after the skip: it needs mpiexec)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(ROOT, "examples", "penguins.csv")


@needs_pyarrow
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_prepare_a_table_as_one_process_does(tmp_path, ranks):
    common = ["train", "--backend", "cpu", "--data", PENGUINS, "--target", "species", "--dtype", "float64",
              "--epochs", "15", "--log-every", "5"]
    single = CliRunner().invoke(cli, [*common, "--save", str(tmp_path / "one.npz")])
    assert single.exit_code == 0, single.output
    r = mpirun(ranks, GPUNET, *common, "--distributed", "--save", tmp_path / "many.npz")
    assert r.returncode == 0, r.stderr
    assert "filled 19 missing cells" in r.stderr and "filled 19 missing cells" in single.stderr
    a, b = checkpoint.load(str(tmp_path / "one.npz")), checkpoint.load(str(tmp_path / "many.npz"))
    assert b.prep.features == a.prep.features and b.classes.tolist() == a.classes.tolist()
    np.testing.assert_allclose([c.fill or 0 for c in b.prep.columns], [c.fill or 0 for c in a.prep.columns],
                               rtol=1e-12)
    np.testing.assert_allclose(b.x_scaler.mean, a.x_scaler.mean, rtol=1e-10)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-8, atol=1e-10)

"""scikit-learn's own tests of its MLP (sklearn/neural_network/tests/test_mlp.py, from the installed
scikit-learn), run against gpunet.sklearn with only the estimators' import changed: the same behaviour,
attributes (public, and the private ones its tests read) and numbers."""

import os
import subprocess
import sys

import pytest

sklearn = pytest.importorskip("sklearn", reason="gpunet.sklearn needs scikit-learn (the extra [sklearn])")
pytest.importorskip("scipy")

UPSTREAM = os.path.join(os.path.dirname(sklearn.__file__), "neural_network", "tests", "test_mlp.py")
IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
# scikit-learn's conftest gives its tests this fixture; outside its tree, the seed it defaults to
CONFTEST = "import pytest\n\n\n@pytest.fixture\ndef global_random_seed():\n    return 42\n"


@pytest.mark.skipif(not os.path.exists(UPSTREAM), reason="this scikit-learn was installed without its tests")
def test_scikit_learns_own_mlp_tests_pass_on_gpunet(tmp_path):
    source = open(UPSTREAM).read()
    assert source.count(IMPORT) == 1, "scikit-learn's test file imports its estimators differently now"
    (tmp_path / "test_mlp_on_gpunet.py").write_text(
        source.replace(IMPORT, "from gpunet.sklearn import MLPClassifier, MLPRegressor"))
    (tmp_path / "conftest.py").write_text(CONFTEST)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
                           "ignore::DeprecationWarning", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    assert "failed" not in done.stdout.splitlines()[-1] and "error" not in done.stdout.splitlines()[-1]

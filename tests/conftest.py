"""The backend parameter: every test that takes `backend` runs on the CPU, and on CUDA where a GPU is usable.

`needs_pyarrow` marks the tests that read or write data files through pyarrow: a dependency, absent only
from the GPU machine's bare python3, where they are skipped so that the GPU check runs everything else.
"""

import importlib.util

import pytest

from gpunet import backend as backends
from gpunet.errors import BackendUnavailable


def cuda_unavailable_reason():
    """Why CUDA cannot be used here, or '' when it can."""
    try:
        backends.resolve("cuda")
    except BackendUnavailable as e:
        return str(e)
    return ""


NO_CUDA = cuda_unavailable_reason()
needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
BACKENDS = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(bool(NO_CUDA), reason=NO_CUDA)])]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return backends.resolve(request.param)

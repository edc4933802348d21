"""gpunet: a fully-connected ReLU network with hand-written gradients, on the GPU (CuPy) or the CPU (NumPy)."""

__version__ = "0.1.0"

from gpunet.inference import predict  # noqa: E402
from gpunet.train import Config, Result, train  # noqa: E402

__all__ = ["Config", "Result", "predict", "train", "__version__"]

"""gpunet: a fully-connected ReLU network with hand-written gradients, on the GPU (CuPy) or the CPU (NumPy)."""

__version__ = "0.1.0"

from gpunet.train import Config, Result, train  # noqa: E402

__all__ = ["Config", "Result", "train", "__version__"]

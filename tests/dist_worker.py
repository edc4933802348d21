"""Run under `mpiexec -n P`: train every configuration of a JSON list with all ranks, and (rank 0) save each
result's losses and parameters to an .npz, for tests/test_distributed.py to compare with one process."""

import json
import sys

import numpy as np

import gpunet
from gpunet.comm import launch


def main(cases_path, out_path):
    with open(cases_path) as f:
        cases = json.load(f)
    comm = launch(True).bind(gpunet.backend.resolve("cpu"))
    arrays = {}
    for i, options in enumerate(cases):
        r = gpunet.train(backend="cpu", comm=comm, **options)
        arrays[f"params{i}"] = r.flat_params
        arrays[f"losses{i}"] = np.array([l for _, l in r.losses] + [r.final_loss])
        arrays[f"val{i}"] = np.array([l for _, l in r.val_losses + r.val_accuracies + r.accuracies])
        arrays[f"meta{i}"] = np.array([r.ranks, r.epochs_run, -1 if r.best_epoch is None else r.best_epoch])
    if comm.rank == 0:
        np.savez(out_path, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

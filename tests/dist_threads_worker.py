"""Run under `mpiexec -n P`: after `launch(True)`, rank 0 prints every rank's BLAS thread counts as one JSON list."""

import json

from threadpoolctl import threadpool_info

from gpunet.comm import launch

comm = launch(True)
threads = comm.allgather([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
if comm.rank == 0:
    print(json.dumps(threads))

"""
The same pipeline on a batch-system cluster
===========================================

On an HPC machine, dask-jobqueue starts dask workers as batch jobs (SLURM, PBS, SGE,
LSF, HTCondor, OAR, Moab) and a ``distributed.Client`` sends them the tasks. Nothing in
the pipeline changes: while the client is active, every computation of metatensor-dask,
``to_zarr`` included, runs on those workers, and each worker reads and writes its chunks
of the stores itself.

This example uses dask-jobqueue's ``LocalCluster``, which runs the jobs of its batch
scripts as local processes, so that it runs anywhere; on SLURM, replace it with
``dask_jobqueue.SLURMCluster(cores=..., memory=..., walltime=...)`` and call
``cluster.scale(jobs=...)`` the same way. The command line does the same with
``metatensor-dask run pipeline.yaml --cluster slurm --jobs 4``.
"""

import logging
import os
import tempfile

from dask_jobqueue.local import LocalCluster
from distributed import Client, progress

import metatensor_dask as mtd
from metatensor_dask.datasets import featomic_like

WORK = tempfile.mkdtemp()

# %%
# A store to work on
# ------------------

tensor = featomic_like(n_systems=4, atoms_per_system=24, types=(1, 8), chunks="256KiB")
mtd.to_zarr(tensor, os.path.join(WORK, "descriptors.zarr"))

# %%
# Two worker jobs
# ---------------
#
# The job script is what the batch system would receive (here, run by bash).

# distributed logs every worker and client that comes and goes (INFO): quiet them, and
# keep its warnings and errors. The logger's level applies whichever handler prints its
# records (distributed's own, or one the program set up first); silence_logs="warning"
# keeps the warnings that dask-jobqueue's default ("error") hides while the cluster runs.
logging.getLogger("distributed").setLevel(logging.WARNING)

# on the loopback interface: the scheduler and its workers are on this machine
cluster = LocalCluster(
    cores=1,
    processes=1,
    memory="1GiB",
    walltime="00:10:00",
    interface="lo",
    scheduler_options={"dashboard_address": "127.0.0.1:0"},
    silence_logs="warning",
)
print(cluster.job_script())
cluster.scale(jobs=2)
client = Client(cluster)
client.wait_for_workers(2)

# %%
# Store to store, on the workers
# ------------------------------
#
# ``compute=False`` gives a delayed write; ``client.compute`` runs it on the workers and
# ``distributed.progress`` shows it.

descriptors = mtd.open_zarr(os.path.join(WORK, "descriptors.zarr"))
squared = mtd.multiply(descriptors, descriptors)
write = mtd.to_zarr(squared, os.path.join(WORK, "squared.zarr"), compute=False)
future = client.compute(write)
progress(future, notebook=False)
future.result()

result = mtd.open_zarr(os.path.join(WORK, "squared.zarr"))
print(mtd.allclose(result, mtd.pow(descriptors, 2)))

# %%
# Workers are jobs: stop them when done, as the end of a batch job would.

cluster.scale(jobs=0)
client.close()
cluster.close()

"""
Featomic batches into one store
===============================

Descriptors of a large dataset are computed in batches: featomic computes the SOAP power
spectrum (with its positions gradients) of a few structures at a time, and no machine
holds the whole. :func:`metatensor_dask.write_batches` runs a function on every batch of
items, in parallel on the active dask scheduler, and commits the batches in item order
into one Zarr store, the same bytes whatever the scheduling. The store then equals
metatensor's ``join`` of the batches along samples, with the systems numbered globally.

Here the items are small molecules from ase, so that the example runs in seconds; with a
``distributed.Client`` on a SLURM allocation the same call ingests 10⁵ structures.
"""

import functools
import os
import tempfile

import ase.build
import featomic

import metatensor_dask as mtd

WORK = tempfile.mkdtemp()
# built here, once: ase reads its molecule collection on first use, which threads
# racing each other can see half-read
MOLECULES = [
    ase.build.molecule(name)
    for name in ["H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCN", "CO2", "C2H6"]
]

# %%
# The descriptor of one batch
# ---------------------------
#
# The function receives a list of items and returns a ``TensorMap``. featomic numbers the
# systems of each call from 0: ``write_batches`` shifts the ``system`` dimension of batch
# *k* by the index of its first item, so that the numbers are global.


@functools.cache
def calculator():
    # made in the function, once per process: a featomic calculator does not pickle, so
    # that one made outside could not be sent to the workers of a distributed cluster
    return featomic.SoapPowerSpectrum(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={
            "type": "TensorProduct",
            "max_angular": 2,
            "radial": {"type": "Gto", "max_radial": 2},
        },
    )


def soap(systems):
    return calculator().compute(systems, gradients=["positions"])


# %%
# Every batch into one store
# --------------------------
#
# Batches of three molecules; they are computed in parallel and appended in order. A run
# that is killed continues with ``resume=True`` after its last committed batch.

store = os.path.join(WORK, "soap.zarr")
mtd.write_batches(soap, MOLECULES, store, batch_size=3, quiet=True)

descriptors = mtd.open_zarr(store)
print(descriptors)
print(descriptors.block(0).samples)

# %%
# A reduction over the atoms of each system
# -----------------------------------------
#
# The store is read lazily, chunk by chunk; the sum over atoms gives one row per system
# (and its gradients with respect to the positions of every atom).

per_system = mtd.sum_over_samples(descriptors, sample_names="atom")
block = per_system.block(0).compute()
print(block.samples)
print(block.values.shape, block.gradient("positions").values.shape)
print(mtd.verify(store).ok)

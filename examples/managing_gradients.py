"""
Managing gradients
==================

metatensor's "Managing gradients" tutorial, run with metatensor-dask: the only changes
are ``metatensor_dask`` in the two import lines, the data paths, and ``.compute()``
wherever a dask array is printed.

Values and gradients are dask arrays: nothing is computed until ``.compute()`` (or a
function that must return a Python value, such as ``equal``).
"""

# %%
import metatensor_dask as metatensor
from metatensor_dask import TensorBlock, TensorMap
from metatensor_dask.datasets import tutorial_file  # the tutorial's files, shipped

# %%
# Amazing gradients and where to find them
# ----------------------------------------
#
# A tensor map with two dimensions for the keys, and 5 blocks:

radial_spectrum = metatensor.load(tutorial_file("radial-spectrum.npz"))
print(radial_spectrum)

# %%
# One of the blocks contains gradients with respect to ``"positions"``:

block = radial_spectrum.block(center_type=7, neighbor_type=7)
print(block)

# %%
# Gradients are stored inside normal ``TensorBlock``, with their own metadata.

gradient = block.gradient("positions")
print(gradient)

# %%
# The ``"sample"`` dimension tells which row of the values each gradient row belongs to.

print(gradient.samples)

# %%

print(block.samples)

# %%
# The gradient has one more component than the values: the x/y/z direction.

print(gradient.components)

# %%
# The gradient properties are the values' properties.

print(block.properties == gradient.properties)

# %%
# The gradient data is a dask array: ``.compute()`` gives the numpy array.

print(gradient.values.compute())

# %%
# What if the values have components?
# -----------------------------------

spherical_expansion = metatensor.load(tutorial_file("spherical-expansion.npz"))
print(spherical_expansion)

# %%

block = spherical_expansion.block(2)
print(block.components)

# %%
# The gradients have the ``xyz`` component first, then the values' ``o3_mu``.

gradient = block.gradient("positions")
print(gradient)

# %%

print("first set of components:", gradient.components[0])
print("second set of components:", gradient.components[1])

# %%
# Using gradients in calculations
# -------------------------------
#
# The square of the radial spectrum, :math:`h(r) = \rho^2(r)`, and its gradient
# :math:`\nabla h = 2 \rho \nabla \rho`, block by block. The same code as with
# metatensor builds lazy dask arrays.


def compute_square(block: TensorBlock) -> TensorBlock:
    # compute the new values
    new_values = block.values**2
    # store the new values in a block
    new_block = TensorBlock(
        values=new_values,
        samples=block.samples,
        components=block.components,
        properties=block.properties,
    )
    # compute the new gradient
    gradient = block.gradient("positions")
    # `block.values[gradient.samples["sample"]]` gives us an array with a shape
    # compatible with `gradient.values`; using the right row in the values to compute
    # the a given row of the gradients. ``None`` creates an additional dimension to
    # match the components of the gradients.
    broadcasted_values = block.values[gradient.samples["sample"], None, :]
    new_gradient_values = 2.0 * broadcasted_values * gradient.values
    new_gradient = TensorBlock(
        values=new_gradient_values,
        samples=gradient.samples,
        components=gradient.components,
        properties=gradient.properties,
    )
    # store the gradient in the new block
    new_block.add_gradient("positions", new_gradient)
    return new_block


# %%

gradient = radial_spectrum.block(2).gradient("positions")
print(gradient.samples["sample"])

# %%

blocks = [compute_square(block) for block in radial_spectrum.blocks()]
squared = TensorMap(keys=radial_spectrum.keys, blocks=blocks)

# %%

print(squared)

# %%

rs_block = radial_spectrum.block(2)
squared_block = squared.block(2)
print("radial_spectrum block:", rs_block)
print("square block:", squared_block)

# %%

print("radial_spectrum values:", rs_block.values.compute())
print("square values:", squared_block.values.compute())

# %%

print("radial_spectrum gradient:", rs_block.gradient("positions").values[:, 0].compute())
print("square gradient:", squared_block.gradient("positions").values[:, 0].compute())

# %%
# The same square with metatensor-dask's operations, which handle gradients and
# sparsity for us (and work chunk by chunk on data larger than memory):

squared = metatensor.multiply(radial_spectrum, radial_spectrum)
# alternatively
squared = metatensor.pow(radial_spectrum, 2)

# %%

squared_operations = metatensor.multiply(radial_spectrum, radial_spectrum)
print(metatensor.equal(squared_operations, squared))

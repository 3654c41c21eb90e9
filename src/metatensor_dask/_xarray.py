"""``TensorBlock.to_xarray``: a block's values as a lazy ``xarray.DataArray``.

xarray is an optional dependency, imported when a conversion is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray

    from .block import TensorBlock
    from .labels import Labels


def _import_xarray() -> Any:
    try:
        import xarray
    except ImportError:
        raise ImportError(
            "TensorBlock.to_xarray needs xarray, an optional dependency: pip install xarray"
        ) from None
    return xarray


def _multi_index(xr: Any, labels: Labels, dim: str) -> Any:
    """Coordinates of ``dim``: a pandas MultiIndex with one level per Labels name (one
    level too, so that ``sel(name=value)`` works whatever the number of names); none
    for Labels without dimensions (they have no entries)."""
    import pandas as pd

    if not labels.names:
        return xr.Coordinates()
    index = pd.MultiIndex.from_arrays(
        [labels.values[:, j] for j in range(len(labels.names))], names=labels.names
    )
    return xr.Coordinates.from_pandas_multiindex(index, dim)


def _check_level_names(dims: list[str], samples: Labels, properties: Labels) -> None:
    """Refuse sample and property names that xarray can not hold beside ``dims``: every
    dimension, component and MultiIndex level of a DataArray is a coordinate of its
    own, under its own name.

    Raises
    ------
    ValueError
        Naming the two uses of the name, before anything is built.
    """
    used = {dims[0]: "the samples axis", dims[-1]: "the properties axis"}
    used.update((name, f"the component '{name}'") for name in dims[1:-1])
    for axis, labels in [("samples", samples), ("properties", properties)]:
        for name in labels.names:
            if name in used:
                raise ValueError(
                    f"can not convert this block to xarray: the {axis} dimension '{name}' "
                    f"has the name of {used[name]}, and xarray needs a name per coordinate; "
                    "rename one of them first (`mtd.rename_dimension` on the map)"
                )
            used[name] = f"a {axis} dimension"


def block_to_xarray(block: TensorBlock) -> xarray.DataArray:
    """The values of ``block`` as an ``xarray.DataArray`` wrapping the same dask array.

    Dimensions are ``samples``, the component names and ``properties``. ``samples``
    and ``properties`` are indexed by a MultiIndex whose levels are the Labels names
    (select with ``array.sel(system=0)``); each component is a plain index coordinate.
    Building it computes no values; it reads the sample labels (of a stored block, from
    the store). Gradients are not included: convert ``block.gradient(name)``.
    """
    xr = _import_xarray()
    components = block.components
    dims = ["samples", *(c.names[0] for c in components), "properties"]
    if len(set(dims)) != len(dims):
        raise ValueError(
            f"can not name the axes of this block {dims} for xarray: a component is named "
            "'samples', 'properties' or like another component; rename it first"
        )
    _check_level_names(dims, block.samples, block.properties)
    array = xr.DataArray(
        block.values,
        coords={c.names[0]: c.values[:, 0] for c in components},
        dims=dims,
        name="values",
    )
    return array.assign_coords(_multi_index(xr, block.samples, "samples")).assign_coords(
        _multi_index(xr, block.properties, "properties")
    )

"""Operations on real featomic descriptors, loaded in several ways, against metatensor.

featomic computes spherical expansions, power spectra and radial spectra of a few tiny
structures (periodic and not, three species) with ``positions`` and ``strain`` or
``cell`` gradients (whose components and samples differ from the positions'). Each map
reaches metatensor-dask from memory, from a ``.mts`` file read in small chunks, from a
Zarr store re-chunked on opening, or re-chunked unevenly with gradients co-partitioned
or cut where they fall. Every operation is built without computing and must equal
metatensor's result on the same data; finite differences of the descriptors themselves
(featomic run on moved atoms) check the gradient rules where metatensor is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask._partition import gradient_row_chunks, row_pointer
from metatensor_dask.testing import assert_equal_to_metatensor, raise_if_dask_computes

featomic = pytest.importorskip("featomic")
ase = pytest.importorskip("ase")

CUTOFF = {"radius": 2.5, "smoothing": {"type": "ShiftedCosine", "width": 0.5}}
DENSITY = {"type": "Gaussian", "width": 0.3}


def structures(eps: float = 0.0, seed: int = 3) -> list[Any]:
    """Two molecules and a periodic cell, atoms moved by ``eps`` along a fixed random
    direction (:func:`moves`)."""
    rng = np.random.default_rng(0)
    systems = [
        ase.Atoms("CH2O", positions=[(0, 0, 0), (1.0, 0.2, 0), (-0.3, 1.0, 0.1), (0.1, -0.2, 1.2)]),
        ase.Atoms(
            "CO2H", positions=[(0, 0, 0), (1.1, 0.3, 0.2), (-1.0, 0.1, -0.3), (0.2, 1.0, 0.5)]
        ),
        ase.Atoms(
            "C2H2O",
            positions=rng.uniform(0, 3, size=(5, 3)),
            cell=[3.2, 3.3, 3.4],
            pbc=True,
        ),
    ]
    for system, move in zip(systems, moves(seed), strict=True):
        system.positions = system.positions + eps * move
    return systems


def moves(seed: int = 3) -> list[np.ndarray]:
    """One random displacement per atom of each of the :func:`structures`."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=(n, 3)) for n in (4, 4, 5)]


def calculator(kind: str) -> Any:
    radial = {"type": "Gto", "max_radial": 1}
    if kind == "spherical-expansion":
        basis = {"type": "TensorProduct", "max_angular": 2, "radial": radial}
        return featomic.SphericalExpansion(cutoff=CUTOFF, density=DENSITY, basis=basis)
    if kind == "power-spectrum":
        basis = {"type": "TensorProduct", "max_angular": 1, "radial": radial}
        return featomic.SoapPowerSpectrum(cutoff=CUTOFF, density=DENSITY, basis=basis)
    if kind == "radial-spectrum":
        return featomic.SoapRadialSpectrum(cutoff=CUTOFF, density=DENSITY, basis={"radial": radial})
    density = {"type": "SmearedPowerLaw", "smearing": 1.0, "exponent": 1}
    basis = {"type": "TensorProduct", "max_angular": 1, "radial": {**radial, "radius": 2.0}}
    return featomic.LodeSphericalExpansion(density=density, basis=basis)


GRADIENTS = {
    "spherical-expansion": ["positions", "strain"],
    "power-spectrum": ["positions", "cell"],
    "radial-spectrum": ["positions", "strain"],
    "lode": ["positions"],
}


def descriptor(kind: str, gradients: list[str] | None = None, eps: float = 0.0) -> bytes:
    """featomic's map, as the bytes of a ``.mts`` file (so that every use gets its own
    numpy-backed metatensor copy: some metatensor operations modify featomic's arrays)."""
    systems = structures(eps)
    if kind == "lode":
        systems = systems[2:]
    computed = calculator(kind).compute(systems, gradients=gradients or GRADIENTS[kind])
    return bytes(metatensor.io.save_buffer(computed))


def fresh(buffer: bytes) -> metatensor.TensorMap:
    return metatensor.io.load_buffer(buffer)


def uneven(rows: int) -> tuple[int, ...]:
    """Chunks of 1, 3, 1, 3, ... rows."""
    sizes = []
    while rows > 0:
        sizes.append(min(1 if len(sizes) % 2 == 0 else 3, rows))
        rows -= sizes[-1]
    return tuple(sizes)


def rechunked(tensor: mtd.TensorMap, gradient_rows: int | None) -> mtd.TensorMap:
    """Values in uneven chunks; gradients co-partitioned with them, or (with
    ``gradient_rows``) in regular chunks that cut across the values' chunks."""
    blocks = []
    for block in tensor.blocks():
        values = da.asarray(block.values).rechunk({0: uneven(len(block))})
        new = mtd.TensorBlock(values, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            if gradient_rows is None:
                pointer = row_pointer(gradient.samples.column("sample"), len(block))
                rows: Any = gradient_row_chunks(pointer, values.chunks[0])
            else:
                rows = gradient_rows
            gradient_values = da.asarray(gradient.values).rechunk({0: rows})
            new.add_gradient(
                parameter,
                mtd.TensorBlock(
                    gradient_values, gradient.samples, gradient.components, gradient.properties
                ),
            )
        blocks.append(new)
    return mtd.TensorMap(tensor.keys, blocks)


LOADERS = ["memory", "mts", "zarr", "uneven", "cut-gradients"]


def loaded(buffer: bytes, how: str, folder: Any) -> mtd.TensorMap:
    """The map of ``buffer`` read into metatensor-dask ``how``."""
    if how == "mts":
        path = folder / "t.mts"
        path.write_bytes(buffer)
        return mtd.load(path, chunks=2)
    tensor = mtd.from_metatensor(fresh(buffer))
    if how == "zarr":
        tensor.to_zarr(folder / "t.zarr", chunks=2)
        return mtd.open_zarr(folder / "t.zarr", chunks=3)
    if how == "uneven":
        return rechunked(tensor, None)
    if how == "cut-gradients":
        return rechunked(tensor, 4)
    return tensor


KINDS = ["spherical-expansion", "power-spectrum", "radial-spectrum", "lode"]


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def buffer(kind: str) -> bytes:
    return descriptor(kind)


@pytest.fixture(scope="module")
def maps(
    kind: str, buffer: bytes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, mtd.TensorMap]:
    result = {}
    for how in LOADERS:
        folder = tmp_path_factory.mktemp(f"{kind}-{how}")
        result[how] = loaded(buffer, how, folder)
    return result


def labels(module: Any, names: list[str], values: list[list[int]]) -> Any:
    return module.Labels(names, np.array(values, dtype=np.int32))


def _names(buffer: bytes) -> tuple[list[str], list[str], bool]:
    tensor = fresh(buffer)
    block = tensor.block(0)
    return list(tensor.keys.names), list(block.properties.names), len(block.components) > 0


Operation = Callable[[Any, Any, Any], Any]


def operations(buffer: bytes) -> dict[str, Operation]:
    """Operations of metatensor-operations that apply to this map: ``f(module, t, u)``
    with ``module`` metatensor or metatensor_dask and ``t``, ``u`` two copies."""
    keys, properties, components = _names(buffer)
    last = properties[-1]
    one = [[1]]
    ops: dict[str, Operation] = {
        "add": lambda M, t, u: M.add(t, u),
        "add-scalar": lambda M, t, u: M.add(t, 2.5),
        "subtract": lambda M, t, u: M.subtract(t, M.multiply(u, 0.5)),
        "multiply": lambda M, t, u: M.multiply(t, u),
        "divide": lambda M, t, u: M.divide(t, M.add(M.abs(u), 1.0)),
        "divide-scalar": lambda M, t, u: M.divide(t, 3.0),
        "pow": lambda M, t, u: M.pow(t, 3),
        "abs": lambda M, t, u: M.abs(t),
        "operators": lambda M, t, u: (t + u) * t - u / 2.0 + (-t) ** 2,
        "remove-gradients": lambda M, t, u: M.remove_gradients(t, ["positions"]),
        "sum-samples": lambda M, t, u: M.sum_over_samples(t, "atom"),
        "sum-samples-all": lambda M, t, u: M.sum_over_samples(t, ["system", "atom"]),
        "sum-samples-system": lambda M, t, u: M.sum_over_samples(t, "system"),
        "std-samples": lambda M, t, u: M.std_over_samples(M.remove_gradients(t), "atom"),
        "sum-properties": lambda M, t, u: M.sum_over_properties(t, properties[0]),
        "mean-properties": lambda M, t, u: M.mean_over_properties(
            M.remove_gradients(t), properties
        ),
        "slice-samples": lambda M, t, u: M.slice(
            t, "samples", labels(M, ["atom"], [[1], [3], [4]])
        ),
        "slice-properties": lambda M, t, u: M.slice(t, "properties", labels(M, [last], one)),
        "split-samples": lambda M, t, u: M.split(
            t, "samples", [labels(M, ["system"], [[0]]), labels(M, ["system"], [[1], [2]])]
        ),
        "join-samples": lambda M, t, u: M.join([t, u], "samples", add_dimension="tensor"),
        "join-properties": lambda M, t, u: M.join([t, u], "properties", add_dimension="tensor"),
        "join-union": lambda M, t, u: M.join(
            [t, M.drop_blocks(u, labels(M, [keys[-1]], [[6]]))],
            "samples",
            different_keys="union",
            add_dimension="tensor",
        ),
        "join-intersection": lambda M, t, u: M.join(
            [t, M.drop_blocks(u, labels(M, [keys[-1]], [[6]]))],
            "properties",
            different_keys="intersection",
            add_dimension="tensor",
        ),
        "sort": lambda M, t, u: M.sort(t, descending=True),
        "sort-samples": lambda M, t, u: M.sort(t, "samples", descending=True),
        "keys-to-samples": lambda M, t, u: t.keys_to_samples(keys[-1]),
        "keys-to-properties": lambda M, t, u: t.keys_to_properties(keys[-2:]),
        "rename": lambda M, t, u: M.rename_dimension(t, "samples", "atom", "center"),
        "insert": lambda M, t, u: M.insert_dimension(t, "samples", 1, "new", 3),
        "append": lambda M, t, u: M.append_dimension(t, "properties", "new", 3),
        "permute": lambda M, t, u: M.permute_dimensions(t, "samples", [1, 0]),
        "remove-dimension": lambda M, t, u: M.remove_dimension(
            M.filter_blocks(t, labels(M, [keys[0]], [[6]] if keys[0] != "o3_lambda" else one)),
            "keys",
            keys[0],
        ),
        "filter-blocks": lambda M, t, u: M.filter_blocks(t, labels(M, [keys[-1]], [[8], [1]])),
        "drop-empty": lambda M, t, u: M.drop_empty_blocks(
            M.slice(t, "samples", labels(M, ["system"], [[2]]))
        ),
        "ones-like": lambda M, t, u: M.ones_like(t, gradients="positions"),
        "unique-metadata": lambda M, t, u: M.unique_metadata(
            t, "samples", ["system", "atom"], gradient="positions"
        ),
    }
    if components:
        ops["components-to-properties"] = lambda M, t, u: t.components_to_properties("o3_mu")
    else:
        ops["var-properties"] = lambda M, t, u: M.var_over_properties(t, properties[:1])
        ops["dot"] = lambda M, t, u: M.dot(t, M.remove_gradients(u))
    return ops


ROUNDED = ("sum-", "mean-", "var-", "std-", "dot")


@pytest.fixture(scope="module")
def references(kind: str) -> dict[str, Any]:
    """metatensor's result of each operation on this kind's map, computed by the first
    test that needs it (the tests only read them)."""
    return {}


def check_operations(
    names: list[str],
    operations: dict[str, Operation],
    buffer: bytes,
    t: Any,
    u: Any,
    references: dict[str, Any],
) -> None:
    """The ``operations`` of ``names``, built lazily on our maps, equal metatensor's on
    the same data (our results computed together, in one ``dask.compute``)."""
    ours = {}
    for name in names:
        with raise_if_dask_computes():
            ours[name] = operations[name](mtd, t, u)
    (computed,) = dask.compute(ours)
    for name in names:
        if name not in references:
            references[name] = operations[name](metatensor, fresh(buffer), fresh(buffer))
        theirs = references[name]
        try:
            _assert_same(name, computed[name], theirs)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from error


def _assert_same(name: str, ours: Any, theirs: Any) -> None:
    tolerance = (1e-10, 1e-13) if name.startswith(ROUNDED) else (0.0, 0.0)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_equal_to_metatensor(mine, other, *tolerance)
    else:
        assert_equal_to_metatensor(ours, theirs, *tolerance)


# the radial spectrum and LODE have the layouts of these two maps
LAYOUTS = {
    "spherical-expansion": ["cut-gradients"],
    "power-spectrum": ["zarr"],
    "radial-spectrum": [],
    "lode": [],
}


@pytest.mark.parametrize("how", LOADERS)
def test_operations_like_metatensor(
    how: str, kind: str, buffer: bytes, maps: dict, references: dict
) -> None:
    if how not in LAYOUTS[kind]:
        pytest.skip("covered by the other maps and loaders (keeps the test fast)")
    ops = operations(buffer)
    check_operations(list(ops), ops, buffer, maps[how], maps["memory"], references)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if LAYOUTS[kind]], indirect=True)
@pytest.mark.parametrize("pair", [("zarr", "cut-gradients"), ("mts", "uneven")])
def test_operations_between_chunkings(
    pair: tuple[str, str], kind: str, buffer: bytes, maps: dict, references: dict
) -> None:
    """Binary operations on two maps of the same data chunked differently (of the kinds
    whose layouts the others share, see :data:`LAYOUTS`)."""
    binary = ["add", "multiply", "divide", "operators", "join-samples", "join-properties"]
    ops = operations(buffer)
    check_operations(binary, ops, buffer, maps[pair[0]], maps[pair[1]], references)


def test_comparisons(buffer: bytes, maps: dict) -> None:
    for how in LOADERS:
        assert mtd.equal(maps[how], maps["memory"])
        assert mtd.allclose(maps[how], mtd.add(maps["memory"], 1e-14))
        assert not mtd.allclose(maps[how], mtd.add(maps["memory"], 1e-3))
        assert mtd.equal_metadata(maps[how], maps["memory"])


def test_lstsq(kind: str, buffer: bytes, maps: dict) -> None:
    if kind != "radial-spectrum":
        pytest.skip("square, well-conditioned blocks are easiest with the radial spectrum")
    for how in ("zarr", "uneven"):
        t = mtd.remove_gradients(maps[how])
        fit = lambda M, X, Y: M.lstsq(X, M.pow(Y, 2), rcond=1e-12)  # noqa: E731
        with raise_if_dask_computes():
            ours = fit(mtd, t, t)
        theirs_t = metatensor.remove_gradients(fresh(buffer))
        assert_equal_to_metatensor(ours, fit(metatensor, theirs_t, theirs_t), 1e-8, 1e-10)


# finite differences of the descriptors: featomic recomputed on moved atoms


def directional(block: metatensor.TensorBlock, directions: list[np.ndarray]) -> np.ndarray:
    """The derivative of ``block``'s values when each atom moves along ``directions``,
    from its ``positions`` gradient (whose ``xyz`` labels may be in any order)."""
    gradient = block.gradient("positions")
    samples = gradient.samples
    xyz = np.asarray(gradient.components[0].values).ravel()
    moved = np.stack(
        [
            directions[system][atom][xyz]
            for system, atom in zip(samples.column("system"), samples.column("atom"), strict=True)
        ]
    ).reshape(len(samples), 3, *([1] * (gradient.values.ndim - 2)))
    result = np.zeros(block.values.shape)
    np.add.at(result, samples.column("sample"), (moved * gradient.values).sum(axis=1))
    return result


FINITE_DIFFERENCES: dict[str, Callable[[mtd.TensorMap], mtd.TensorMap]] = {
    "mean-samples": lambda t: mtd.mean_over_samples(t, "atom"),
    "mean-samples-all": lambda t: mtd.mean_over_samples(t, ["system", "atom"]),
    "var-samples": lambda t: mtd.var_over_samples(t, "atom"),
    "std-samples-system": lambda t: mtd.std_over_samples(t, "system"),
    "var-properties": lambda t: mtd.var_over_properties(t, "n"),
    "pow": lambda t: mtd.pow(t, 3),
    "divide": lambda t: mtd.divide(t, mtd.add(mtd.pow(t, 2), 1.0)),
    "keys-to-samples": lambda t: t.keys_to_samples("center_type"),
    "join-properties": lambda t: mtd.join([t, mtd.pow(t, 2)], "properties", add_dimension="j"),
    "sort": lambda t: mtd.sort(t, descending=True),
}


EPS = 1e-5


def _results(operation: Callable[[mtd.TensorMap], mtd.TensorMap], maps: list) -> list:
    """``operation`` of each of ``maps``, computed together, as metatensor maps."""
    return [mtd.to_metatensor(t) for t in dask.compute(*[operation(t) for t in maps])]


@pytest.fixture(scope="module")
def moved_radial_spectra() -> list[mtd.TensorMap]:
    """featomic's radial spectrum (``positions`` gradients) of the structures, then with
    atoms moved by +EPS and -EPS, chunked unevenly (the tests only read them)."""
    return [
        rechunked(mtd.from_metatensor(fresh(descriptor("radial-spectrum", ["positions"], e))), None)
        for e in (0.0, EPS, -EPS)
    ]


@pytest.mark.parametrize("name", sorted(FINITE_DIFFERENCES))
def test_gradients_by_finite_differences(name: str, moved_radial_spectra: list) -> None:
    """The ``positions`` gradient of an operation on featomic's radial spectrum,
    chunked unevenly, equals the change of the operation's values when featomic is run
    again on moved atoms (mean/var/std over samples: where metatensor is wrong)."""
    eps = EPS
    result, up, down = _results(FINITE_DIFFERENCES[name], moved_radial_spectra)
    for block, plus, minus in zip(result.blocks(), up.blocks(), down.blocks(), strict=True):
        finite = (plus.values - minus.values) / (2 * eps)
        np.testing.assert_allclose(directional(block, moves()), finite, rtol=1e-5, atol=1e-8)


STRAIN = np.array([[0.3, 0.1, -0.2], [0.1, -0.4, 0.25], [-0.2, 0.25, 0.5]])


def strained(eps: float) -> list[Any]:
    """The :func:`structures` deformed by ``1 + eps * STRAIN`` (cells too)."""
    result = []
    deformation = np.eye(3) + eps * STRAIN
    for system in structures():
        system.positions = system.positions @ deformation.T
        if system.pbc.any():
            system.cell = np.asarray(system.cell) @ deformation.T
        result.append(system)
    return result


STRAIN_DIFFERENCES: dict[str, Callable[[mtd.TensorMap], mtd.TensorMap]] = {
    "mean-samples": lambda t: mtd.mean_over_samples(t, "atom"),
    "std-samples-all": lambda t: mtd.std_over_samples(t, ["system", "atom"]),
    "var-properties": lambda t: mtd.var_over_properties(t, "n"),
}


@pytest.fixture(scope="module")
def strained_radial_spectra() -> list[mtd.TensorMap]:
    """featomic's radial spectrum (``strain`` gradients) of the structures, then
    strained by +EPS and -EPS, chunked unevenly (the tests only read them)."""
    result = []
    for eps in (0.0, EPS, -EPS):
        computed = calculator("radial-spectrum").compute(strained(eps), gradients=["strain"])
        buffer = bytes(metatensor.io.save_buffer(computed))
        result.append(rechunked(mtd.from_metatensor(fresh(buffer)), None))
    return result


@pytest.mark.parametrize("name", sorted(STRAIN_DIFFERENCES))
def test_strain_gradients_by_finite_differences(name: str, strained_radial_spectra: list) -> None:
    """The ``strain`` gradient (components ``xyz_2``, ``xyz_1``; samples ``sample``
    only) of an operation on the radial spectrum equals the change of its values when
    featomic is run again on strained structures (a symmetric strain, so that the order
    of the two components does not matter)."""
    eps = EPS
    result, up, down = _results(STRAIN_DIFFERENCES[name], strained_radial_spectra)
    for block, plus, minus in zip(result.blocks(), up.blocks(), down.blocks(), strict=True):
        gradient = block.gradient("strain")
        analytic = np.zeros(block.values.shape)
        contracted = np.einsum("ab,rab...->r...", STRAIN, gradient.values)
        np.add.at(analytic, gradient.samples.column("sample"), contracted)
        finite = (plus.values - minus.values) / (2 * eps)
        np.testing.assert_allclose(analytic, finite, rtol=1e-5, atol=1e-8)

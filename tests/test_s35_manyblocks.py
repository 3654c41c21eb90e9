"""Maps of many blocks mixing tiny and large ones, checked against metatensor."""

import metatensor
import numpy as np

import metatensor_dask as mtd


def _labels(names, rows):
    return metatensor.Labels(names, np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def _block(rng, samples, properties):
    """A block of the given sample and property entries, with positions gradients."""
    values = rng.standard_normal((len(samples), 3, len(properties)))
    xyz = _labels(["xyz"], np.arange(3))
    block = metatensor.TensorBlock(
        values,
        _labels(["system", "atom"], samples),
        [_labels(["c"], np.arange(3))],
        _labels(["n"], properties),
    )
    rows = np.repeat(np.arange(len(samples)), 2)
    gradient_samples = np.stack(
        [rows, np.asarray(samples)[rows, 0], np.tile([0, 1], len(samples))], 1
    )
    block.add_gradient(
        "positions",
        metatensor.TensorBlock(
            rng.standard_normal((len(rows), 3, 3, len(properties))),
            _labels(["sample", "system", "atom"], gradient_samples),
            [xyz, _labels(["c"], np.arange(3))],
            _labels(["n"], properties),
        ),
    )
    return block


def _large_among_tiny():
    """Blocks of keys (0, 0..3): one of 2,000 samples, three of 2 samples each."""
    rng = np.random.default_rng(0)
    large = [[s, 0] for s in range(2000)]
    blocks = [
        _block(rng, [[3, 1], [1500, 1]], [0, 1]),
        _block(rng, large, [0, 1, 2]),
        _block(rng, [[7, 0], [8, 0]], [4]),
        _block(rng, [[1999, 0], [2000, 0]], [1, 3]),
    ]
    return metatensor.TensorMap(_labels(["k0", "k1"], [[0, 2], [0, 0], [0, 3], [0, 1]]), blocks)


def test_keys_to_properties_spreads_tiny_blocks_in_few_chunks():
    """A tiny block merged with a large one is spread over the large one's rows: in
    chunks of the output's size, not of its own 2 rows (1,000 chunks, and as many
    tasks, for each tiny block, values and gradients: 76 s for 200 blocks where
    metatensor takes 0.9 s)."""
    tensor = _large_among_tiny()
    expected = tensor.keys_to_properties("k1")
    result = mtd.from_metatensor(tensor).keys_to_properties("k1")
    assert len(dict(result.__dask_graph__())) < 200
    got = mtd.to_metatensor(result)
    assert metatensor.equal(got, expected)

"""Bytes read through metatensor-core raise metatensor-dask's ``MetatensorError``."""

from pathlib import Path

import metatensor
import pytest

import metatensor_dask as mtd

DATA = Path(__file__).parent.parent / "data" / "metatensor-core"


@pytest.mark.parametrize(
    ("read", "file"),
    [
        (mtd.io.load_buffer, "keys.mts"),
        (mtd.TensorMap.load_buffer, "block.mts"),
        (mtd.io.load_block_buffer, "data.mts"),
        (mtd.io.load_labels_buffer, "data.mts"),
        (mtd.Labels.load_buffer, "block.mts"),
    ],
    ids=["io-map", "TensorMap", "io-block", "io-labels", "Labels"],
)
def test_buffer_of_another_kind_raises_our_error_with_metatensors_message(read, file):
    buffer = (DATA / file).read_bytes()
    theirs = {
        mtd.io.load_buffer: metatensor.io.load_buffer,
        mtd.TensorMap.load_buffer: metatensor.io.load_buffer,
        mtd.io.load_block_buffer: metatensor.io.load_block_buffer,
        mtd.io.load_labels_buffer: metatensor.io.load_labels_buffer,
        mtd.Labels.load_buffer: metatensor.io.load_labels_buffer,
    }[read]
    with pytest.raises(metatensor.MetatensorError) as expected:
        theirs(buffer)
    with pytest.raises(mtd.MetatensorError) as raised:
        read(buffer)
    assert raised.value.message == expected.value.message
    assert str(raised.value) == str(expected.value)

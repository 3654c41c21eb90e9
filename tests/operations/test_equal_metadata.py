import metatensor
import pytest
from oracle import tutorial

import metatensor_dask as mtd
from metatensor_dask.testing import raise_if_dask_computes


def _both(name, theirs_1, theirs_2, **kwargs):
    ours_1, ours_2 = mtd.from_metatensor(theirs_1), mtd.from_metatensor(theirs_2)
    expected = getattr(metatensor, name)(theirs_1, theirs_2, **kwargs)
    with raise_if_dask_computes():
        assert getattr(mtd, name)(ours_1, ours_2, **kwargs) == expected
    return expected


def test_agrees_with_metatensor():
    theirs, _ = tutorial()
    renamed = metatensor.rename_dimension(theirs, "samples", "atom", "center")
    assert _both("equal_metadata", theirs, metatensor.multiply(theirs, 2))
    assert not _both("equal_metadata", theirs, renamed)
    assert _both("equal_metadata", theirs, renamed, check=["components", "properties"])
    assert not _both("equal_metadata", theirs, metatensor.remove_gradients(theirs))
    assert _both(
        "equal_metadata", theirs, metatensor.remove_gradients(theirs), check_gradients=False
    )
    assert _both("equal_metadata_block", theirs.block(0), renamed.block(0), check=["properties"])


def test_same_messages_as_metatensor():
    theirs, ours = tutorial()
    for other in [
        metatensor.rename_dimension(theirs, "samples", "atom", "center"),
        metatensor.rename_dimension(theirs, "components", "o3_mu", "mu"),
        metatensor.remove_gradients(theirs),
        metatensor.rename_dimension(theirs, "keys", "o3_sigma", "sigma"),
    ]:
        with pytest.raises(metatensor.NotEqualError) as expected:
            metatensor.equal_metadata_raise(theirs, other)
        with pytest.raises(mtd.NotEqualError) as got:
            mtd.equal_metadata_raise(ours, mtd.from_metatensor(other))
        assert str(got.value) == str(expected.value)


def test_invalid_check_and_types():
    theirs, ours = tutorial()
    message = (
        "'keys' does not refer to metadata to check, "
        "choose from 'samples', 'properties' and 'components'"
    )
    with pytest.raises(ValueError, match=message):
        metatensor.equal_metadata(theirs, theirs, check=["keys"])
    with pytest.raises(ValueError, match=message):
        mtd.equal_metadata(ours, ours, check=["keys"])
    assert mtd.equal_metadata(ours, 3) is False
    with pytest.raises(mtd.NotEqualError, match="`block_2` must be a metatensor TensorBlock"):
        mtd.equal_metadata_block_raise(ours.block(0), ours)

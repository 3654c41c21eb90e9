"""Text and HTML output: the seed tutorial's layout, truncation rules, and laziness."""

import dask.array as da
import metatensor
import numpy as np
import pytest

import metatensor_dask as mtd
from metatensor_dask._format import MAX_KEYS_IN_STR, nbytes_text
from metatensor_dask.datasets import tutorial_file
from metatensor_dask.testing import raise_if_dask_computes


def tokens(text):
    """Whitespace-separated tokens of each non-blank line (the seed lost its spacing)."""
    return [line.split() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def radial_spectrum():
    return mtd.from_metatensor(metatensor.load(tutorial_file("radial-spectrum.npz")))


@pytest.fixture(scope="module")
def spherical_expansion():
    return mtd.from_metatensor(metatensor.load(tutorial_file("spherical-expansion.npz")))


# -- the seed tutorial's output ----------------------------------------------------------------

SEED_RADIAL_SPECTRUM = """
TensorMap with 5 blocks
keys: center_type neighbor_type
6 6
6 8
7 7
8 6
8 8
"""

SEED_BLOCK = """
TensorBlock
samples (2): ['system', 'atom']
components (): []
properties (3): ['n']
gradients: ['positions']
"""

SEED_GRADIENT = """
Gradient TensorBlock ('positions')
samples (4): ['sample', 'system', 'atom']
components (3): ['xyz']
properties (3): ['n']
gradients: None
"""

SEED_GRADIENT_SAMPLES = """
Labels(
sample system atom
0 0 4
0 0 5
1 0 4
1 0 5
)
"""

SEED_BLOCK_SAMPLES = """
Labels(
system atom
0 4
0 5
)
"""

SEED_GRADIENT_COMPONENTS = """
[Labels(
xyz
0
1
2
)]
"""

SEED_SPHERICAL_EXPANSION = """
TensorMap with 12 blocks
keys: o3_lambda o3_sigma center_type neighbor_type
0 1 6 6
1 1 6 6
2 1 6 6
0 1 6 8
1 1 6 8
2 1 6 8
0 1 8 6
1 1 8 6
2 1 8 6
0 1 8 8
1 1 8 8
2 1 8 8
"""

SEED_BLOCK_COMPONENTS = """
[Labels(
o3_mu
-2
-1
0
1
2
)]
"""

SEED_GRADIENT_WITH_COMPONENTS = """
Gradient TensorBlock ('positions')
samples (1): ['sample', 'system', 'atom']
components (3, 5): ['xyz', 'o3_mu']
properties (5): ['n']
gradients: None
"""

SEED_COMPONENTS_STR = """
first set of components: Labels(
xyz
0
1
2
)
second set of components: Labels(
o3_mu
-2
-1
...
1
2
)
"""


def test_radial_spectrum_prints_as_the_seed(radial_spectrum):
    assert tokens(str(radial_spectrum)) == tokens(SEED_RADIAL_SPECTRUM)
    block = radial_spectrum.block(center_type=7, neighbor_type=7)
    assert tokens(str(block)) == tokens(SEED_BLOCK)
    gradient = block.gradient("positions")
    assert tokens(str(gradient)) == tokens(SEED_GRADIENT)
    assert tokens(str(gradient.samples)) == tokens(SEED_GRADIENT_SAMPLES)
    assert tokens(str(block.samples)) == tokens(SEED_BLOCK_SAMPLES)
    assert tokens(str(gradient.components)) == tokens(SEED_GRADIENT_COMPONENTS)
    assert tokens("radial_spectrum block: " + str(radial_spectrum.block(2))) == tokens(
        "radial_spectrum block: " + SEED_BLOCK.strip()
    )


def test_spherical_expansion_prints_as_the_seed(spherical_expansion):
    assert tokens(str(spherical_expansion)) == tokens(SEED_SPHERICAL_EXPANSION)
    block = spherical_expansion.block(2)
    assert tokens(str(block.components)) == tokens(SEED_BLOCK_COMPONENTS)
    gradient = block.gradient("positions")
    assert tokens(str(gradient)) == tokens(SEED_GRADIENT_WITH_COMPONENTS)
    text = (
        f"first set of components: {gradient.components[0]}\n"
        f"second set of components: {gradient.components[1]}"
    )
    assert tokens(text) == tokens(SEED_COMPONENTS_STR)


def test_metatensor_prints_differently():
    """The seed's layout is the spec: metatensor 0.2.6 itself prints another one."""
    theirs = metatensor.load(tutorial_file("radial-spectrum.npz"))
    assert tokens(str(theirs)) != tokens(SEED_RADIAL_SPECTRUM)


# -- Labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 4, 5, 12])
def test_labels_str_shows_at_most_four_entries(count):
    values = np.arange(count)[:, None] * 10
    labels = mtd.Labels(["a"], values)
    lines = tokens(str(labels))
    assert lines[0] == ["Labels("]
    assert lines[1] == ["a"]
    assert lines[-1] == [")"]
    shown = [int(line[0]) for line in lines[2:-1] if line != ["..."]]
    if count <= 4:
        assert shown == values[:, 0].tolist()
        assert ["..."] not in lines
    else:
        assert shown == [0, 10, 10 * (count - 2), 10 * (count - 1)]
        assert lines[4] == ["..."]
    # repr shows them all
    assert [int(line[0]) for line in tokens(repr(labels))[2:-1]] == values[:, 0].tolist()


def test_labels_str_matches_metatensor_tables():
    values = np.array([[0, 1], [2, 300], [4, 5], [6, 7], [8, 9]])
    ours, theirs = mtd.Labels(["a", "bb"], values), metatensor.Labels(["a", "bb"], values)
    # same table as metatensor's, in the seed's "Labels(...)" frame
    assert str(ours) == "Labels(\n    " + theirs.print(4, 4) + "\n)"
    assert repr(ours) == "Labels(\n    " + theirs.print(-1, 4) + "\n)"


def test_list_of_labels_uses_repr():
    components = [mtd.Labels.range("o3_mu", 6)]
    assert len(tokens(str(components))) == 2 + 6 + 1


def test_empty_and_dimensionless_labels_print():
    assert tokens(str(mtd.Labels.empty(["a", "b"]))) == [["Labels("], ["a", "b"], [")"]]
    assert tokens(str(mtd.Labels([], np.zeros((2, 0), dtype=np.int32)))) == [["Labels("], [")"]]


def test_printing_labels_loads_them():
    calls = []

    def load():
        calls.append(1)
        return np.array([[0], [1]])

    lazy = mtd.Labels.lazy(["s"], 2, load)
    assert tokens(str(lazy)) == [["Labels("], ["s"], ["0"], ["1"], [")"]]
    assert calls == [1]


def test_labels_entry_text():
    entry = mtd.Labels(["a", "b"], np.array([[0, -1]]))[0]
    assert str(entry) == repr(entry) == "LabelsEntry(a=0, b=-1)"
    assert entry.print() == "(a=0, b=-1)"


# -- TensorMap ---------------------------------------------------------------------------------


def small_block():
    return mtd.TensorBlock(
        da.zeros((2, 3), chunks=(1, 3)), mtd.Labels.range("s", 2), [], mtd.Labels.range("p", 3)
    )


def many_keys_tensor(count):
    keys = mtd.Labels(["k", "j"], np.stack([np.arange(count), np.arange(count) * 7], axis=1))
    return mtd.TensorMap(keys, [small_block() for _ in range(count)])


@pytest.mark.parametrize("count", [0, 1, 2, MAX_KEYS_IN_STR, MAX_KEYS_IN_STR + 1, 100])
def test_tensor_str_truncates_many_keys(count):
    tensor = many_keys_tensor(count)
    lines = tokens(str(tensor))
    assert lines[0] == ["TensorMap", "with", str(count), "block" if count == 1 else "blocks"]
    assert lines[1] == ["keys:", "k", "j"]
    rows = [line for line in lines[2:] if line != ["..."]]
    if count <= MAX_KEYS_IN_STR:
        assert ["..."] not in lines
        assert [int(r[0]) for r in rows] == list(range(count))
    else:
        half = MAX_KEYS_IN_STR // 2
        assert lines[2 + half] == ["..."]
        expected = list(range(half)) + list(range(count - half, count))
        assert [int(r[0]) for r in rows] == expected
        assert [int(r[1]) for r in rows] == [7 * k for k in expected]


def test_tensor_repr_shows_every_key_and_the_arrays():
    tensor = many_keys_tensor(MAX_KEYS_IN_STR + 5)
    lines = tokens(repr(tensor))
    assert ["..."] not in lines
    assert len(lines) == 2 + MAX_KEYS_IN_STR + 5 + 1
    assert lines[-1] == [
        "lazy:",
        str(MAX_KEYS_IN_STR + 5),
        "arrays,",
        "1.17",
        "KiB,",
        str(2 * (MAX_KEYS_IN_STR + 5)),
        "chunks",
    ]
    assert tokens(repr(tensor.compute()))[-1][0:2] == ["in", "memory:"]


# -- TensorBlock -------------------------------------------------------------------------------


def test_block_without_components_or_gradients():
    block = small_block()
    assert tokens(str(block)) == [
        ["TensorBlock"],
        ["samples", "(2):", "['s']"],
        ["components", "():", "[]"],
        ["properties", "(3):", "['p']"],
        ["gradients:", "None"],
    ]
    assert tokens(repr(block))[-1] == ["lazy:", "1", "arrays,", "48", "B,", "2", "chunks"]
    assert tokens(repr(block.compute()))[-1] == [
        "in",
        "memory:",
        "1",
        "arrays,",
        "48",
        "B,",
        "1",
        "chunks",
    ]


def nested_block():
    block = mtd.TensorBlock(
        np.zeros((2, 3)), mtd.Labels.range("s", 2), [], mtd.Labels.range("p", 3)
    )
    gradient = mtd.TensorBlock(
        np.zeros((2, 3, 3)),
        mtd.Labels(["sample"], np.array([[0], [1]])),
        [mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("p", 3),
    )
    inner = mtd.TensorBlock(
        np.zeros((1, 2, 3, 3)),
        mtd.Labels(["sample"], np.array([[1]])),
        [mtd.Labels.range("abc", 2), mtd.Labels.range("xyz", 3)],
        mtd.Labels.range("p", 3),
    )
    gradient.add_gradient("strain", inner)
    block.add_gradient("positions", gradient)
    block.add_gradient("cell", gradient.copy())
    return block


def test_nested_gradient_headers():
    block = nested_block()
    assert tokens(str(block))[-1] == ["gradients:", "['positions',", "'cell']"]
    gradient = block.gradient("positions")
    assert tokens(str(gradient))[0] == ["Gradient", "TensorBlock", "('positions')"]
    assert tokens(str(gradient))[-1] == ["gradients:", "['strain']"]
    inner = gradient.gradient("strain")
    assert tokens(str(inner)) == [
        ["Gradient", "TensorBlock", "('positions/strain')"],
        ["samples", "(1):", "['sample']"],
        ["components", "(2,", "3):", "['abc',", "'xyz']"],
        ["properties", "(3):", "['p']"],
        ["gradients:", "None"],
    ]
    assert tokens(str(block.gradient("cell").gradient("strain")))[0][2] == "('cell/strain')"
    # the path survives compute and copies; a copy of a gradient is a block of its own
    assert str(block.compute().gradient("positions").gradient("strain")) == str(inner)
    assert tokens(str(inner.copy()))[0] == ["TensorBlock"]


def test_nbytes_text():
    assert nbytes_text(0) == "0 B"
    assert nbytes_text(1023) == "1023 B"
    assert nbytes_text(1024) == "1.00 KiB"
    assert nbytes_text(1.5 * 1024**2) == "1.50 MiB"
    assert nbytes_text(3 * 1024**3) == "3.00 GiB"
    assert nbytes_text(1024**4) == "1.00 TiB"
    assert nbytes_text(5 * 1024**5) == "5120.00 TiB"


# -- HTML --------------------------------------------------------------------------------------


def test_html_reprs_are_present_and_lazy(radial_spectrum):
    with raise_if_dask_computes():
        tensor_html = radial_spectrum._repr_html_()
        block_html = radial_spectrum.block(2)._repr_html_()
    assert tensor_html.startswith("<div class='mtd-repr'><style>")
    assert "<th>center_type</th><th>neighbor_type</th>" in tensor_html
    assert tensor_html.count("<tr>") == 1 + len(radial_spectrum)
    assert "positions" in tensor_html
    assert "(2, 3)" in block_html and "(4, 3, 3)" in block_html and "float64" in block_html
    labels_html = radial_spectrum.block(2).gradient("positions").samples._repr_html_()
    assert "<th>sample</th><th>system</th><th>atom</th>" in labels_html
    assert labels_html.count("<tr>") == 1 + 4


def test_html_of_an_empty_tensor():
    tensor = mtd.TensorMap(mtd.Labels(["k"], np.zeros((0, 1), dtype=np.int32)), [])
    text = tensor._repr_html_()
    assert "<b>TensorMap</b> with 0 blocks<br>" in text and "None" not in text
    assert text.count("<tr>") == 1


def test_html_truncates_long_tables():
    tensor = many_keys_tensor(50)
    text = tensor._repr_html_()
    assert text.count("<tr>") == 1 + 10 + 1 + 10
    assert "<td>49</td>" in text and "<td>25</td>" not in text
    labels_text = mtd.Labels.range("n", 50)._repr_html_()
    assert labels_text.count("<tr>") == 1 + 10 + 1 + 10
    assert "(50 entries)" in labels_text


def test_html_escapes_gradient_names():
    block = nested_block().copy()
    block.add_gradient("<b>x</b>", block.gradient("cell").copy())
    text = block._repr_html_()
    assert "<b>x</b>" not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    tensor = mtd.TensorMap(mtd.Labels.range("k", 1), [block])
    assert "<b>x</b>" not in tensor._repr_html_()


def test_html_of_computed_objects():
    tensor = many_keys_tensor(2).compute()
    assert "in memory" in tensor._repr_html_()
    assert "in memory" in tensor.block(0)._repr_html_()

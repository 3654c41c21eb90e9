"""The command line driven as users will: numbers and words as they type them, YAML
written with anchors, merge keys and tabs, operation names in another case, and every
operation that takes options, with metatensor's results (values and every gradient) as
the reference."""

import os
import shutil

import metatensor
import numpy as np
import pytest
from pipeline_support import RADIAL, SPHERICAL, run, write_pipeline, write_store

import metatensor_dask as mtd
from metatensor_dask.execution.pipeline import load_yaml_value
from metatensor_dask.testing import assert_equal_to_metatensor


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tutorial's radial spectrum (r) and spherical expansion (s) as Zarr stores,
    written once for the module's tests, which only read them."""
    folder = tmp_path_factory.mktemp("s45-cli")
    return {
        "r": write_store(folder / "r.zarr"),
        "s": write_store(folder / "s.zarr", SPHERICAL),
    }


def _labels(names, rows):
    return metatensor.Labels(names, np.array(rows, dtype=np.int32))


def test_numbers_in_exponent_notation_with_a_dot_are_numbers(tmp_path, capsys, stores):
    """`--arg B=2.5e3` failed with "`B` must be a metatensor TensorMap or a scalar
    value, not <class 'str'>": YAML 1.1 reads an exponent without its sign as a string
    when the number has a dot (`1.5e+3` was a number, `1.5e3` not), and only the form
    without a dot (`1e3`) was read as YAML 1.2 reads it."""
    for text, number in [("2.5e3", 2500.0), ("-1.e2", -100.0), (".5E1", 5.0), ("1_0.5e1", 105.0)]:
        assert load_yaml_value(text) == number, text
    # strings that only look like numbers stay strings
    assert load_yaml_value("1.2.3e4") == "1.2.3e4"
    assert load_yaml_value(".e3") == ".e3"

    out = str(tmp_path / "out.zarr")
    code, _, err = run(
        capsys, "apply", "multiply", stores["r"], "--arg", "B=2.5e3", "-o", out, "-q"
    )
    assert (code, err) == (0, "")
    expected = metatensor.multiply(metatensor.load(RADIAL), 2500.0)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)


def test_anchors_and_merge_keys_of_yaml_with_a_join_of_two_inputs(tmp_path, capsys, stores):
    """A pipeline that wrote the arguments shared by steps once, with YAML's merge key
    (`args: {<<: *common, ...}`), failed before reading anything: "could not determine
    a constructor for the tag 'tag:yaml.org,2002:merge'". The keys of a step replace
    the merged ones, as YAML reads a merge, and a key given twice by the step itself is
    still refused."""
    text = """\
        inputs: {{r: {r}, s: {s}}}
        steps:
          - {{op: sum_over_samples, inputs: r, args: &reduce {{sample_names: atom}}, name: rs}}
          - {{op: pow, inputs: rs, args: &square {{B: 2}}, name: squared}}
          - {{op: join, inputs: [rs, squared], args: {{<<: [*reduce, *square], axis: properties,
              add_dimension: tensor}}}}
        output: out.zarr
    """
    # `sample_names` and `B`, merged from both anchors, are no arguments of join
    path = write_pipeline(tmp_path, text, r=stores["r"], s=stores["s"])
    code, _, err = run(capsys, "run", path, "-q")
    assert code == 1 and "constructor" not in err
    assert "join has no argument 'sample_names', 'B'" in err
    assert not os.path.exists(tmp_path / "out.zarr")

    text = """\
        inputs: {{r: {r}}}
        steps:
          - {{op: sum_over_samples, inputs: r, args: &reduce {{sample_names: atom}}, name: rs}}
          - {{op: pow, inputs: rs, args: {{<<: *reduce, B: 3}}, name: cubed}}
          - op: join
            inputs: [rs, cubed]
            args: &joined {{axis: properties, different_keys: intersection, add_dimension: t}}
          - {{op: multiply, inputs: [rs, rs], name: unused}}
          - {{op: join, inputs: [rs, cubed], args: {{<<: *joined, add_dimension: tensor}}}}
        output: out.zarr
    """
    # pow refuses the merged sample_names: merged keys are passed as any other
    code, _, err = run(capsys, "run", write_pipeline(tmp_path, text, r=stores["r"]), "-q")
    assert code == 1 and "pow has no argument 'sample_names'" in err

    text = text.replace("{{<<: *reduce, B: 3}}", "{{B: 3}}")
    code, _, err = run(capsys, "run", write_pipeline(tmp_path, text, r=stores["r"]), "-q")
    assert (code, err) == (0, "")
    reduced = metatensor.sum_over_samples(metatensor.load(RADIAL), "atom")
    cubed = metatensor.pow(reduced, 3)
    expected = metatensor.join([reduced, cubed], "properties", add_dimension="tensor")
    assert_equal_to_metatensor(mtd.open_zarr(tmp_path / "out.zarr").compute(), expected)

    text = text.replace(
        "add_dimension: tensor}}", "add_dimension: tensor, axis: samples, axis: x}}"
    )
    code, _, err = run(capsys, "run", write_pipeline(tmp_path, text, r=stores["r"]), "-q")
    assert code == 1 and "(steps[4].args.axis): 'axis' is given twice" in err


def test_a_tab_in_a_pipeline_names_the_remedy(tmp_path, capsys, stores):
    """A tab (an editor's indentation) gave PyYAML's "found character '\\t' that cannot
    start any token" and no remedy."""
    path = write_pipeline(tmp_path, f"inputs:\n\tx: {stores['r']}\nsteps: [{{op: abs}}]\n")
    code, _, err = run(capsys, "run", path)
    assert code == 1
    assert "line 2: this is not valid YAML" in err
    assert "replace the tabs with spaces" in err


@pytest.mark.parametrize(
    "value, tag",
    [
        ("!!python/object/apply:os.system [echo hi]", "python/object/apply:os.system"),
        ("!!set {a, b}", "set"),
    ],
)
def test_a_tag_on_a_mapping_or_list_is_refused(tmp_path, capsys, stores, value, tag):
    """Mappings and lists are built as plain ones: a tag on them was dropped without a
    word (the argument became a list or a mapping, nothing ran)."""
    output = tmp_path / "out.zarr"
    text = (
        f"inputs: {{x: {stores['r']}}}\nsteps:\n  - op: multiply\n    args: {{B: {value}}}\n"
        f"output: {output}\n"
    )
    code, _, err = run(capsys, "run", write_pipeline(tmp_path, text))
    assert code == 1
    assert f"line 4: the YAML tag 'tag:yaml.org,2002:{tag}' is not supported" in err
    assert "remove it" in err
    assert not output.exists()


@pytest.mark.parametrize(
    "typed, meant", [("POW", "pow"), ("MEAN-OVER-SAMPLES", "mean_over_samples")]
)
def test_an_operation_in_capitals_or_with_dashes_is_suggested(
    tmp_path, capsys, stores, typed, meant
):
    """`apply POW` said "unknown operation 'POW'" with no suggestion: names were compared
    as typed, and no operation is close to three capitals."""
    code, _, err = run(capsys, "apply", typed, stores["r"], "-o", tmp_path / "out.zarr")
    assert code == 1
    assert f"unknown operation '{typed}': did you mean '{meant}'?" in err
    assert not os.path.exists(tmp_path / "out.zarr")


def test_infinity_and_nan_typed_as_words_say_how_yaml_writes_them(tmp_path, capsys, stores):
    """`--arg B=inf` (and `B: nan` in a pipeline) failed with "`B` must be ... a scalar
    value, not <class 'str'>": YAML reads these words as strings, and writes the floats
    .inf and .nan, which the message did not say."""
    code, _, err = run(
        capsys, "apply", "multiply", stores["r"], "--arg", "B=-Infinity", "-o", tmp_path / "o.zarr"
    )
    assert code == 1
    assert "the value '-Infinity' of `B` is read as a string: YAML writes infinity .inf" in err
    path = write_pipeline(
        tmp_path,
        f"inputs: {{x: {stores['r']}}}\nsteps: [{{op: divide, args: {{B: nan}}}}]\n"
        "output: o.zarr\n",
    )
    code, _, err = run(capsys, "run", path)
    assert code == 1 and "'nan' of `B` is read as a string" in err and "not-a-number .nan" in err
    # which says what to write, and that is taken
    out = tmp_path / "o.zarr"
    code, _, err = run(capsys, "apply", "divide", stores["r"], "--arg", "B=-.inf", "-o", out, "-q")
    assert (code, err) == (0, "")
    expected = metatensor.divide(metatensor.load(RADIAL), -np.inf)
    assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected)


# every operation that takes options, with the options as a user types them on the
# command line (YAML values: words, numbers, lists, booleans, Labels as columns)
OPTIONS = [
    (
        ["sum_over_samples", "r", "sample_names=[atom, system]"],
        lambda r, s: metatensor.sum_over_samples(r, ["atom", "system"]),
    ),
    (
        ["sum_over_properties", "r", "property_names=[n]"],
        lambda r, s: metatensor.sum_over_properties(r, ["n"]),
    ),
    (
        ["slice", "r", "axis=samples", "selection={atom: [1, 2]}"],
        lambda r, s: metatensor.slice(r, "samples", _labels(["atom"], [[1], [2]])),
    ),
    (
        ["drop_blocks", "r", "keys={center_type: [6, 8], neighbor_type: [6, 8]}", "copy=yes"],
        lambda r, s: metatensor.drop_blocks(
            r, _labels(["center_type", "neighbor_type"], [[6, 6], [8, 8]])
        ),
    ),
    (
        ["keys_to_properties", "r", "keys_to_move={neighbor_type: [6, 7, 8]}", "sort_samples=off"],
        lambda r, s: r.keys_to_properties(
            _labels(["neighbor_type"], [[6], [7], [8]]), sort_samples=False
        ),
    ),
    (
        ["keys_to_samples", "s", "keys_to_move=[center_type, neighbor_type]"],
        lambda r, s: s.keys_to_samples(["center_type", "neighbor_type"]),
    ),
    (
        ["components_to_properties", "s", "dimensions=o3_mu"],
        lambda r, s: s.components_to_properties("o3_mu"),
    ),
    (
        ["permute_dimensions", "r", "axis=samples", "dimensions_indexes=[1, 0]"],
        lambda r, s: metatensor.permute_dimensions(r, "samples", [1, 0]),
    ),
    (
        ["insert_dimension", "r", "axis=properties", "index=0", "name=tensor", "values=-7"],
        lambda r, s: metatensor.insert_dimension(r, "properties", 0, "tensor", -7),
    ),
    (
        ["append_dimension", "r", "axis=keys", "name=extra", "values=[0, 1, 2, 3, 4]"],
        lambda r, s: metatensor.append_dimension(r, "keys", "extra", np.arange(5)),
    ),
    (
        ["rename_dimension", "s", "axis=components", "old=o3_mu", "new='no'"],
        lambda r, s: metatensor.rename_dimension(s, "components", "o3_mu", "no"),
    ),
    (
        ["sort", "r", "axes=[samples, properties]", "descending=true"],
        lambda r, s: metatensor.sort(r, ["samples", "properties"], descending=True),
    ),
    (["pow", "r", "B=0.5e1"], lambda r, s: metatensor.pow(r, 5.0)),
    (["lstsq", "r", "r", "rcond=1e-13"], lambda r, s: metatensor.lstsq(r, r, 1e-13)),
    (
        ["join", "r", "r", "axis=samples", "different_keys=error", "add_dimension=tensor"],
        lambda r, s: metatensor.join([r, r], "samples", add_dimension="tensor"),
    ),
]


def test_every_operation_with_options_typed_as_a_user_would(tmp_path, capsys, stores):
    """Each `apply` equals metatensor's same operation (values and gradients)."""
    r, s = metatensor.load(RADIAL), metatensor.load(SPHERICAL)
    for i, ((op, *inputs_and_args), expected) in enumerate(OPTIONS):
        inputs = [stores[name] for name in inputs_and_args if name in stores]
        args = [item for text in inputs_and_args if "=" in text for item in ("--arg", text)]
        out = str(tmp_path / f"{i}.zarr")
        code, _, err = run(capsys, "apply", op, *inputs, *args, "-o", out, "-q")
        assert (code, err) == (0, ""), op
        assert_equal_to_metatensor(mtd.open_zarr(out).compute(), expected(r, s))


def test_a_metatensor_file_inside_a_store_is_refused(tmp_path, capsys, stores):
    """`convert r.zarr r.zarr/r.mts` wrote the file into the store it read (and into any
    other store), where it is an unknown node that overwriting the store deletes: a
    Zarr destination there was refused, a metatensor file was not."""
    store = tmp_path / "r.zarr"
    shutil.copytree(stores["r"], store)
    for source, destination in [
        (store, store / "r.mts"),
        (RADIAL, store / "blocks" / "r.mts"),
    ]:
        code, _, err = run(capsys, "convert", source, destination, "-q")
        assert code == 1
        assert f"can not write {destination}: it is inside the Zarr store {store}" in err
        assert "Write the file outside of the store" in err
        assert not os.path.exists(destination)
    assert run(capsys, "convert", store, tmp_path / "r.mts", "-q")[:2] == (0, "")


def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
    tmp_path, capsys, monkeypatch, stores
):
    """`apply abs in.zarr -o "$OUT"` with OUT unset (and `convert in.mts "$DST"`) wrote
    the store into the current folder when it was empty, as a new job's folder is: the
    empty path named it."""
    job = tmp_path / "job"
    job.mkdir()
    monkeypatch.chdir(job)
    for argv, argument in [
        (["apply", "abs", stores["r"], "-o", ""], "-o/--output"),
        (["convert", RADIAL, ""], "PATH"),
        (["convert", stores["r"], "", "--append"], "PATH"),
        (["verify", ""], "STORE"),
    ]:
        code, _, err = run(capsys, *argv, "-q")
        assert code == 2, argv
        assert f"argument {argument}: an empty path (an unset shell variable?)" in err
        assert list(job.iterdir()) == []


def test_words_in_the_wrong_place_are_named_with_their_place(tmp_path, capsys, stores):
    """Three slips of the command line that got a message without the remedy: a store
    given to `add` as `--arg B=b.zarr` ("`B` must be a metatensor TensorMap or a
    scalar value, not <class 'str'>"), the operation after its input ("unknown
    operation 'r.zarr'"), and `--traceback` after the command ("unrecognized
    arguments")."""
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "apply", "add", stores["r"], "--arg", f"B={stores['r']}", "-o", out)
    assert code == 1
    assert f"`B: {stores['r']}` passes the path as a string: tensors are the inputs" in err
    assert "`apply OP A.zarr B.zarr` on the command line" in err

    code, _, err = run(capsys, "apply", stores["r"], "abs", "-o", out)
    assert code == 2
    assert f"'{stores['r']}' is no operation and 'abs' is: the operation comes first" in err

    code, _, err = run(capsys, "apply", "abs", stores["r"], "-o", out, "--traceback")
    assert code == 2
    assert "--traceback is an option of the program, given before the command" in err
    assert not os.path.exists(out)


def test_a_url_with_one_slash_is_refused_not_written_to_a_local_folder(
    tmp_path, capsys, monkeypatch, stores
):
    """`-o s3:/bucket/t.zarr` (one slash) wrote the store into the local folder `s3:`
    of the current one, with exit code 0: the user thought it on S3."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "apply", "abs", stores["r"], "-o", "s3:/bucket/t.zarr", "-q")
    assert code == 2
    assert "'s3:/bucket/t.zarr' is a URL with one slash after 's3:'" in err
    assert "write s3://bucket/t.zarr (or ./s3:/bucket/t.zarr for a local folder" in err
    code, _, err = run(capsys, "convert", stores["r"], f"file:{tmp_path}/t.zarr", "-q")
    assert code == 2 and f"write file://{tmp_path}/t.zarr" in err
    pipeline = write_pipeline(
        tmp_path, f"inputs: {{x: {stores['r']}}}\nsteps: [{{op: abs}}]\noutput: gs:/b/t.zarr\n"
    )
    code, _, err = run(capsys, "run", pipeline, "-q")
    assert code == 1 and "line 3 (output): 'gs:/b/t.zarr' is a URL with one slash" in err
    assert sorted(os.listdir(tmp_path)) == ["pipeline.yaml"]
    # a local folder so named is written when the path says it is one
    code, _, err = run(capsys, "apply", "abs", stores["r"], "-o", "./s3:/t.zarr", "-q")
    assert (code, err) == (0, "")
    assert mtd.open_zarr(tmp_path / "s3:" / "t.zarr").keys.names == ["center_type", "neighbor_type"]


def test_a_tilde_the_shell_left_names_the_home_folder_for_metatensor_files_too(
    tmp_path, capsys, monkeypatch, stores
):
    """`convert t.zarr '~/t.mts'` (a `~` quoted, or after `=` where shells leave it)
    failed with "its folder .../~ does not exist", and `convert '~/t.mts' ...` with "no
    such store or file", while Zarr stores at `~/...` were read and written in the home
    folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "convert", stores["r"], "~/t.mts", "-q")[:2] == (0, "")
    assert run(capsys, "convert", "~/t.mts", "~/t.zarr", "-q")[:2] == (0, "")
    assert sorted(os.listdir(home)) == ["t.mts", "t.zarr"]
    assert_equal_to_metatensor(mtd.open_zarr(home / "t.zarr").compute(), metatensor.load(RADIAL))


def test_a_dashed_name_or_a_list_with_commas_says_how_to_write_it(tmp_path, capsys, stores):
    """`--arg sample-names=atom` got "--arg expects NAME=VALUE", and `sample_names:
    atom, system` (one string for YAML) the operation's refusal of a name `atom,
    system`, neither saying how to write them."""
    out = tmp_path / "out.zarr"
    argv = ["apply", "sum_over_samples", stores["r"], "-o", out]
    code, _, err = run(capsys, *argv, "--arg", "sample-names=atom")
    assert code == 2
    assert "written with underscores: --arg sample_names=atom" in err
    code, _, err = run(capsys, *argv, "--arg", "sample_names=atom,system")
    assert code == 1
    assert "`sample_names: atom,system` is one string: YAML writes a list [atom, system]" in err
    assert not os.path.exists(out)

"""The token naming an append's commit: a digest of what the commit changes, equal for
equal documents however their dicts were built, different when any of them differs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from metatensor_dask.io.zarr_append import Commit


def _plan(nodes: dict, changed: list[str], starts: dict[str, int]) -> SimpleNamespace:
    return SimpleNamespace(
        nodes=nodes,
        changed=changed,
        starts=lambda: starts,
        store_id="0123",
        stored=None,
        crcs={},
    )


def _documents() -> tuple[dict, dict, dict]:
    values = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [12, 3, 4],
        "attributes": {"crc32c": [1, 2]},
    }
    samples = {"zarr_format": 3, "node_type": "array", "shape": [12, 2]}
    nodes = {"blocks/0/values": values, "blocks/0/samples": samples, "keys": {"shape": [1]}}
    root = {"attributes": {"metatensor_dask": {"format": 4, "complete": True}}}
    return nodes, root, {"blocks/0/values": 10}


def _token(nodes: dict, root: dict, starts: dict) -> str:
    changed = ["blocks/0/values", "blocks/0/samples"]
    return Commit(_plan(nodes, changed, starts), root).token


def test_equal_documents_built_in_another_order_give_the_same_token():
    nodes, root, starts = _documents()
    reordered = {path: dict(reversed(list(document.items()))) for path, document in nodes.items()}
    assert list(reordered["blocks/0/values"]) != list(nodes["blocks/0/values"])
    assert _token(reordered, copy.deepcopy(root), dict(starts)) == _token(nodes, root, starts)


def test_any_change_to_what_the_commit_changes_gives_another_token():
    nodes, root, starts = _documents()
    reference = _token(nodes, root, starts)

    grown = copy.deepcopy(nodes)
    grown["blocks/0/values"]["shape"][0] = 13
    other_crc = copy.deepcopy(nodes)
    other_crc["blocks/0/values"]["attributes"]["crc32c"][1] = 3
    other_root = copy.deepcopy(root)
    other_root["attributes"]["metatensor_dask"]["complete"] = False
    tokens = {
        _token(grown, root, starts),
        _token(other_crc, root, starts),
        _token(nodes, other_root, starts),
        _token(nodes, root, {"blocks/0/values": 11}),
    }
    assert reference not in tokens
    assert len(tokens) == 4


def test_a_node_the_commit_does_not_change_is_not_part_of_its_token():
    nodes, root, starts = _documents()
    other_keys = copy.deepcopy(nodes)
    other_keys["keys"]["shape"] = [2]
    assert _token(other_keys, root, starts) == _token(nodes, root, starts)

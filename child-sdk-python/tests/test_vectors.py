"""The shared protocol vectors (tests/protocol/) through the Rust codec the SDK reads with."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import vectors

from pm_child import _pm_child

TO_CHILD = vectors("to_child.jsonl")


def line_of(case: dict[str, Any]) -> bytes:
    if "line" in case:
        return str(case["line"]).encode()
    if "line_hex" in case:
        return bytes.fromhex(case["line_hex"])
    gen = case["line_gen"]
    fill = (gen["total"] - len(gen["prefix"]) - len(gen["suffix"])) // len(gen["repeat"])
    line = (gen["prefix"] + gen["repeat"] * fill + gen["suffix"]).encode()
    assert len(line) == gen["total"]
    return line


def decode(data: bytes) -> list[dict[str, Any]]:
    verdicts = json.loads(_pm_child._decode_to_child(data))
    assert isinstance(verdicts, list)
    return verdicts


def check(case: dict[str, Any], got: dict[str, Any]) -> None:
    expect = case["expect"]
    if "data_len" in expect:
        assert len(got["data"].encode()) == expect["data_len"], case["name"]
    else:
        assert got == expect, case["name"]
        if "data" in expect:
            # Keys in the order they were written.
            assert json.dumps(got["data"]) == json.dumps(expect["data"]), case["name"]


def test_the_vectors_are_there() -> None:
    assert len(TO_CHILD) >= 10


@pytest.mark.parametrize("case", TO_CHILD, ids=[c["name"] for c in TO_CHILD])
def test_to_child_line(case: dict[str, Any]) -> None:
    got = decode(line_of(case) + b"\n")
    assert len(got) == 1, "one line in, one verdict out"
    check(case, got[0])


def test_to_child_stream() -> None:
    """Every case in one stream, cut nowhere in particular: each line keeps its verdict, a bad
    line never spoils the next one."""
    stream = b"".join(line_of(case) + b"\n" for case in TO_CHILD)
    got = decode(stream)
    assert len(got) == len(TO_CHILD)
    for case, verdict in zip(TO_CHILD, got):
        check(case, verdict)


def test_an_unfinished_line_is_not_a_message() -> None:
    assert decode(b'{"cmd":"NODE_PM","type":"stop","reason":"stop","timeout_ms":1}') == []

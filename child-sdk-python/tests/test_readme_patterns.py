"""The per-framework patterns in the READMEs are the tests' own code: each fenced block that
follows a ``<!-- pattern: FILE NAME -->`` comment is the block between ``README: NAME`` and
``README: end`` in FILE (a test service or child), dedented."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

READMES = [REPO / "README.md", REPO / "child-sdk-rust" / "README.md",
           REPO / "child-sdk-python" / "README.md"]
MARK = re.compile(r"<!-- pattern: (\S+) (\S+) -->\n```[a-z]*\n(.*?)```", re.S)


def source_block(path: Path, name: str) -> str:
    lines = path.read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().endswith(f"README: {name}"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().endswith("README: end"))
    return textwrap.dedent("\n".join(lines[start + 1:end])) + "\n"


def patterns() -> list[tuple[str, str, str, str]]:
    found = []
    for readme in READMES:
        for file, name, block in MARK.findall(readme.read_text()):
            found.append((readme.relative_to(REPO).as_posix(), file, name, block))
    return found


def test_every_readme_has_its_patterns() -> None:
    names = {(r, n) for r, _, n, _ in patterns()}
    for readme in ("child-sdk-rust/README.md", "README.md"):
        assert {(readme, n) for n in ("axum", "worker", "binary")} <= names
    for readme in ("child-sdk-python/README.md", "README.md"):
        assert {(readme, n) for n in ("uvicorn", "gunicorn", "script", "asyncio")} <= names


@pytest.mark.parametrize(("readme", "file", "name", "block"), patterns(),
                         ids=[f"{r}:{n}" for r, _, n, _ in patterns()])
def test_a_readme_pattern_is_the_tests_code(readme: str, file: str, name: str,
                                            block: str) -> None:
    assert block == source_block(REPO / file, name), f"{readme}: pattern {name} differs from {file}"

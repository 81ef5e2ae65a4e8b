"""What make dist built, read from the files a user downloads: glibc floor, manylinux tags,
one binary everywhere, license texts, READMEs that work off GitHub, registry metadata."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import (
    DIST,
    GLIBC_FLOOR,
    LICENSES,
    ROOT,
    VERSION,
    crate,
    highest_glibc,
    members,
    one,
    sections,
    tarball,
    wheel,
)

PLATFORM_TGZ = "pm-child-linux-x64-gnu"


def test_binary_needs_glibc_2_17_at_most_and_is_the_same_everywhere(tmp_path: Path) -> None:
    binary = (DIST / "bin" / "pm-supervisor").read_bytes()
    assert highest_glibc(binary, tmp_path) <= GLIBC_FLOOR
    # Stripped: no symbol table, no debug info.
    found = sections(binary, tmp_path)
    assert ".symtab" not in found and ".debug_" not in found, found
    # The pm-supervisor wheel and the npm platform package carry these very bytes.
    assert one(members(wheel("pm_supervisor")), ".data/scripts/pm-supervisor") == binary
    assert members(tarball(PLATFORM_TGZ))["package/bin/pm-supervisor"] == binary
    out = subprocess.run([DIST / "bin" / "pm-supervisor", "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == f"pm-supervisor {VERSION}"


def test_python_extension_needs_glibc_2_17_at_most_and_is_the_same_everywhere(tmp_path: Path) -> None:
    ext = one(members(wheel("pm_child")), "pm_child/_pm_child.abi3.so")
    assert highest_glibc(ext, tmp_path) <= GLIBC_FLOOR
    npm = members(tarball(PLATFORM_TGZ))
    assert npm["package/python/pm_child/_pm_child.abi3.so"] == ext
    # The whole package, not only the extension: the Python half and the typing files.
    in_wheel = {n: b for n, b in members(wheel("pm_child")).items() if n.startswith("pm_child/")}
    in_npm = {n[len("package/python/"):]: b for n, b in npm.items() if n.startswith("package/python/")}
    assert in_npm == in_wheel
    assert {"pm_child/__init__.py", "pm_child/_pm_child.pyi", "pm_child/py.typed"} <= set(in_npm)


@pytest.mark.parametrize("name,tag", [
    ("pm_child", "cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64"),
    ("pm_supervisor", "py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64"),
])
def test_wheels_are_manylinux2014(name: str, tag: str) -> None:
    path = wheel(name)
    assert path.name == f"{name}-{VERSION}-{tag}.whl"
    tools = ROOT / "target" / "dist-tools" / "venv" / "bin"
    out = subprocess.run([tools / "auditwheel", "show", path], check=True, capture_output=True, text=True).stdout
    # auditwheel names manylinux2014 by its PEP 600 name.
    assert re.search(r'is consistent with the following platform tag:\s+"manylinux_2_17_x86_64"', out), out
    wheel_tags = members(path)[f"{name}-{VERSION}.dist-info/WHEEL"].decode()
    assert f"Tag: {tag.split('-')[0]}-{tag.split('-')[1]}-manylinux_2_17_x86_64" in wheel_tags, wheel_tags


def every_artefact() -> list[tuple[Path, str]]:
    """(archive, the prefix of its license files and README)."""
    return [
        (wheel("pm_child"), f"pm_child-{VERSION}.dist-info/licenses/"),
        (wheel("pm_supervisor"), f"pm_supervisor-{VERSION}.dist-info/licenses/"),
        (tarball("pm-child"), "package/"),
        (tarball(PLATFORM_TGZ), "package/"),
        (crate("pm-child"), f"pm-child-{VERSION}/"),
        (crate("pm-supervisor"), f"pm-supervisor-{VERSION}/"),
    ]


def test_every_artefact_carries_both_license_texts() -> None:
    for archive, prefix in every_artefact():
        found = members(archive)
        for name, text in LICENSES.items():
            assert found.get(prefix + name) == text, f"{archive.name}: {prefix}{name}"


def readme_of(archive: Path) -> str:
    found = members(archive)
    if archive.suffix == ".whl":
        metadata = one(found, ".dist-info/METADATA").decode()
        return metadata.split("\n\n", 1)[1]
    [top] = {n.split("/")[0] for n in found}
    return found[f"{top}/README.md"].decode()


def test_readmes_make_sense_on_the_registries() -> None:
    for archive, _ in every_artefact():
        text = readme_of(archive)
        assert len(text) > 300, f"{archive.name}: no README"
        relative = re.findall(r"\]\((?!https://|#)([^)]*)\)", text)
        assert relative == [], f"{archive.name}: links that only work inside the repository: {relative}"
    # What a user of the registry types comes first.
    assert "```sh\npip install pm-child\n```" in readme_of(wheel("pm_child"))


def test_registry_metadata() -> None:
    for name in ("pm-child", "pm-supervisor"):
        manifest = tomllib.loads(members(crate(name))[f"{name}-{VERSION}/Cargo.toml"].decode())
        package = manifest["package"]
        for field in ("description", "repository", "license", "keywords", "categories", "readme"):
            assert package.get(field), f"{name}: {field}"
        assert package["license"] == "MIT OR Apache-2.0"
        assert package["readme"] == "README.md"
    sdk = tomllib.loads(members(crate("pm-child"))[f"pm-child-{VERSION}/Cargo.toml"].decode())
    assert sdk["package"]["metadata"]["docs"]["rs"]["all-features"] is True

    main = json.loads(members(tarball("pm-child"))["package/package.json"])
    assert main["license"] == "MIT OR Apache-2.0"
    assert main["repository"]["url"].startswith("git+https://")
    planned = {"@pm-child/linux-x64-gnu", "@pm-child/linux-arm64-gnu", "@pm-child/darwin-x64", "@pm-child/darwin-arm64"}
    assert main["optionalDependencies"] == {p: VERSION for p in planned}
    platform = json.loads(members(tarball(PLATFORM_TGZ))["package/package.json"])
    assert (platform["name"], platform["os"], platform["cpu"], platform["libc"]) == \
        ("@pm-child/linux-x64-gnu", ["linux"], ["x64"], ["glibc"])
    assert platform["version"] == VERSION

    for name in ("pm_child", "pm_supervisor"):
        metadata = one(members(wheel(name)), ".dist-info/METADATA").decode()
        assert "License-Expression: MIT OR Apache-2.0" in metadata, name
        assert "Project-URL: Repository, https://github.com/pm-supervisor/pm" in metadata, name


def test_crates_carry_what_their_tests_read() -> None:
    found = members(crate("pm-child"))
    for vector in (ROOT / "tests" / "protocol").iterdir():
        assert found.get(f"pm-child-{VERSION}/tests/protocol/{vector.name}") == vector.read_bytes(), vector.name
    supervisor = members(crate("pm-supervisor"))
    # The integration suites need the repository; they are left out, and said so (Cargo.toml).
    assert not [n for n in supervisor if "/tests/integration/" in n or "/tests/timing/" in n]
    # Its unit tests read the control protocol vectors, which it carries.
    assert f"pm-supervisor-{VERSION}/tests/protocol/control.jsonl" in supervisor

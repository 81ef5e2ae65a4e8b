"""Shared by the Python tests of make test-dist: where the artefacts of make dist are, and how
to read them."""

from __future__ import annotations

import glob
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DIST = ROOT / "dist"
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "Cargo.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
LICENSES = {name: (ROOT / name).read_bytes() for name in ("LICENSE-MIT", "LICENSE-APACHE")}
# The glibc every Linux artefact may need at most: manylinux2014's, older than any Linux that
# Electron supports (Ubuntu 20.04 has 2.31, Debian 11 2.31, RHEL 8 2.28).
GLIBC_FLOOR = (2, 17)


def artefact(pattern: str) -> Path:
    """The one file of dist/ matching `pattern` (a glob relative to dist/)."""
    found = sorted(glob.glob(str(DIST / pattern)))
    if len(found) != 1:
        pytest.fail(f"expected one dist/{pattern}, found {found}: run make dist")
    return Path(found[0])


def wheel(name: str) -> Path:
    return artefact(f"wheels/{name}-{VERSION}-*.whl")


def tarball(name: str) -> Path:
    return artefact(f"npm/{name}-{VERSION}.tgz")


def crate(name: str) -> Path:
    return artefact(f"crates/{name}-{VERSION}.crate")


def members(archive: Path) -> dict[str, bytes]:
    """Every file of a wheel (zip), npm tarball or crate (tar.gz): name -> bytes."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    out = {}
    with tarfile.open(archive, "r:gz") as t:
        for m in t.getmembers():
            if m.isfile():
                f = t.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def highest_glibc(binary: bytes, tmp: Path) -> tuple[int, ...]:
    """The highest GLIBC_x.y symbol version an ELF file needs (objdump -T)."""
    path = tmp / "elf"
    path.write_bytes(binary)
    out = subprocess.run(["objdump", "-T", str(path)], check=True, capture_output=True, text=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", out)}
    assert versions, f"no GLIBC_ symbol versions in {out[:500]}"
    return max(versions)


def sections(binary: bytes, tmp: Path) -> str:
    path = tmp / "elf"
    path.write_bytes(binary)
    return subprocess.run(["readelf", "-S", "-W", str(path)], check=True, capture_output=True, text=True).stdout


def one(found: dict[str, bytes], suffix: str) -> bytes:
    names = [n for n in found if n.endswith(suffix)]
    assert len(names) == 1, f"expected one member ending in {suffix}, found {names}"
    return found[names[0]]


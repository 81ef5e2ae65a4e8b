"""The .crate files build and pass their tests alone: unpacked into an empty folder, outside the
repository, as crates.io and docs.rs see them. pm-supervisor depends on pm-child, which is not
published yet: a [patch] points it at the unpacked pm-child crate, as the registry would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from conftest import ROOT, VERSION, crate


def test_crates_build_and_pass_their_tests_from_the_packages_alone(tmp_path: Path) -> None:
    for name in ("pm-child", "pm-supervisor"):
        with tarfile.open(crate(name), "r:gz") as t:
            t.extractall(tmp_path, filter="data")
    # Fresh modification times: the shared target folder below must rebuild these crates, whose
    # tests carry this run's folder (env!("CARGO_MANIFEST_DIR")); a build left by an earlier run
    # (other folder, same archive times) would read that folder's files.
    for path in tmp_path.rglob("*"):
        os.utime(path)
    (tmp_path / "Cargo.toml").write_text(f"""[workspace]
resolver = "3"
members = ["pm-child-{VERSION}", "pm-supervisor-{VERSION}"]

[patch.crates-io]
pm-child = {{ path = "pm-child-{VERSION}" }}
""")
    # The repository's lock file: the same dependency versions, and no index update needed.
    shutil.copy(ROOT / "Cargo.lock", tmp_path / "Cargo.lock")
    proc = subprocess.run(
        ["cargo", "test", "--workspace", "--all-features"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # Its own target folder: these builds have other paths than the workspace's.
        env={**os.environ, "CARGO_TARGET_DIR": str(ROOT / "target" / "dist-crates")},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # The suites that read files ran: the shared protocol vectors, from the crate's own copy.
    assert "Running tests/vectors.rs" in out, out[-3000:]
    assert "test result: FAILED" not in out
    ran = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", out))
    assert ran > 50, f"only {ran} tests ran:\n{out[-3000:]}"

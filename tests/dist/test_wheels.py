"""The wheels install into fresh virtualenvs on the oldest supported Python (3.9) and the newest
one on the machine (3.13), and the Python SDK's own test suite passes there against them: the
pm_child wheel imported from site-packages, the supervisor from the pm-supervisor wheel on PATH.

The interpreters come from pyenv (/root/.pyenv/versions/3.9.*, 3.13.*), or from
PM_DIST_PYTHON_3_9 / PM_DIST_PYTHON_3_13. A missing one fails the test, saying how to get it."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, VERSION, wheel

SDK = ROOT / "child-sdk-python"


def interpreter(version: str) -> str:
    override = os.environ.get(f"PM_DIST_PYTHON_{version.replace('.', '_')}")
    if override:
        return override
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    if found:
        return found[-1]
    pytest.fail(f"no Python {version}: install it (pyenv install {version}) or set "
                f"PM_DIST_PYTHON_{version.replace('.', '_')} to an interpreter")


def run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_wheels_pass_the_sdk_tests_in_a_fresh_virtualenv(version: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([interpreter(version), "-m", "venv", venv])
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         wheel("pm_child"), wheel("pm_supervisor"), "pytest>=8,<10",
         # The real programs the SDK's tests run services with (uvicorn, gunicorn, ...).
         "-r", SDK / "tests" / "requirements.txt"])

    # What pip installed: the extension in site-packages, the binary on the venv's PATH.
    probe = run([py, "-c", "import sys, pm_child; print(sys.version_info[:2]); print(pm_child.__file__)"],
                cwd=tmp_path)
    got_version, location = probe.stdout.split("\n")[:2]
    assert got_version == str(tuple(int(p) for p in version.split(".")))
    assert location.startswith(str(venv / "lib")) and "site-packages" in location, location
    supervisor = venv / "bin" / "pm-supervisor"
    assert run([supervisor, "--version"]).stdout.strip() == f"pm-supervisor {VERSION}"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PM_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["PM_SUPERVISOR_BIN"] = str(supervisor)
    # From child-sdk-python/, which holds no pm_child package itself (its source is in python/):
    # the tests and the children they start import the installed wheel.
    out = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", SDK / "tests"], cwd=SDK, env=env)
    assert " passed" in out.stdout and " failed" not in out.stdout, out.stdout[-2000:]

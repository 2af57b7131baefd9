"""The package as pip builds it: maturin (pinned) through tools/maturin_backend.py, a wheel that
holds the whole package and crates/cli's three binaries as its scripts, tagged manylinux, with
a RECORD whose hashes match. The wheel itself is the one `cargo xtask ci` built from the debug
binaries (`$AGENT_TEAM_WHEEL`); a `pip wheel ./python` makes the same with the release ones."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PYTHON_DIR, WORKSPACE

PYPROJECT = (PYTHON_DIR / "pyproject.toml").read_text(encoding="utf-8")
BINARIES = ["agent-team", "agent-team-worker", "agent-team-bridge"]
#: Read now: every test runs without the caller's `AGENT_TEAM_*` settings (conftest).
WHEEL = os.environ.get("AGENT_TEAM_WHEEL")
PACKAGE_FILES = sorted(
    p.relative_to(PYTHON_DIR).as_posix()
    for p in (PYTHON_DIR / "agent_team").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
)


def test_maturin_builds_the_binaries_of_crates_cli() -> None:
    assert re.search(r'^requires = \["maturin==\d+\.\d+\.\d+"\]$', PYPROJECT, re.M), "maturin is pinned"
    assert 'build-backend = "maturin_backend"\nbackend-path = ["tools"]\n' in PYPROJECT
    assert 'bindings = "bin"\n' in PYPROJECT
    m = re.search(r'^manifest-path = "(.*)"$', PYPROJECT, re.M)
    assert m, PYPROJECT
    cargo = (PYTHON_DIR / m.group(1)).resolve()
    assert cargo == WORKSPACE / "crates" / "cli" / "Cargo.toml"
    bins = re.findall(r'^\[\[bin\]\]\nname = "([^"]+)"', cargo.read_text(encoding="utf-8"), re.M)
    assert sorted(bins) == sorted(BINARIES)
    assert not (PYTHON_DIR / "tools" / "build_backend.py").exists()


def test_a_wheel_asks_for_maturins_own_platform_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """maturin's hook would ask for `--compatibility off` (a `linux` tag); ours asks for the
    lowest manylinux tag the binaries meet, unless the caller names one."""
    pytest.importorskip("maturin")
    sys.path.insert(0, str(PYTHON_DIR / "tools"))
    try:
        import maturin_backend
    finally:
        sys.path.remove(str(PYTHON_DIR / "tools"))
    monkeypatch.delenv("MATURIN_PEP517_ARGS", raising=False)
    assert maturin_backend.with_platform_default(None) == {"maturin.build-args": ["--compatibility"]}
    monkeypatch.setenv("MATURIN_PEP517_ARGS", "--profile dev --strip false")
    got = maturin_backend.with_platform_default({})
    assert got == {"maturin.build-args": ["--profile", "dev", "--strip", "false", "--compatibility"]}
    monkeypatch.setenv("MATURIN_PEP517_ARGS", "--compatibility off")
    assert maturin_backend.with_platform_default({})["maturin.build-args"] == ["--compatibility", "off"]
    # Arguments given as config settings win over the environment, as in maturin.
    got = maturin_backend.with_platform_default({"build-args": "--manylinux=2_28", "other": "1"})
    assert got == {"maturin.build-args": ["--manylinux=2_28"], "other": "1"}


@pytest.fixture
def wheel() -> Path:
    if not WHEEL:
        pytest.skip("no wheel: $AGENT_TEAM_WHEEL is unset (`cargo xtask ci` builds one and sets it)")
    return Path(WHEEL)


def test_the_wheel_holds_the_package_the_three_binaries_and_a_true_record(wheel: Path) -> None:
    m = re.fullmatch(r"agent_team-0\.1\.0-py3-none-(manylinux_\d+_\d+)_x86_64\.whl", wheel.name)
    assert m, f"{wheel.name} is not a manylinux wheel"
    data = "agent_team-0.1.0.data/scripts/"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert sorted(n for n in names if n.startswith("agent_team/")) == PACKAGE_FILES
        assert sorted(n for n in names if n.startswith(data)) == sorted(data + b for b in BINARIES)
        for b in BINARIES:
            info = z.getinfo(data + b)
            assert (info.external_attr >> 16) & 0o111, f"{b} is not executable"
            with z.open(info) as f:
                assert f.read(4) == b"\x7fELF", b
        meta = z.read("agent_team-0.1.0.dist-info/METADATA").decode()
        assert "Name: agent-team\n" in meta and "Version: 0.1.0\n" in meta
        assert "Requires-Python: >=3.9" in meta
        wheel_info = z.read("agent_team-0.1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_info
        assert f"Tag: py3-none-{m.group(1)}_x86_64" in wheel_info, wheel_info
        rows = list(csv.reader(io.StringIO(z.read("agent_team-0.1.0.dist-info/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            h = hashlib.sha256()
            n = 0
            with z.open(path) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                    n += len(chunk)
            want = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={want}", n), path

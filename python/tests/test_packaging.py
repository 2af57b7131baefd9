"""The package's own build backend (tools/build_backend.py): the wheel and sdist that
`pip install ./python` and a PyPI upload use hold the whole package, valid metadata and a
RECORD whose hashes match."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

from conftest import PYTHON_DIR

sys.path.insert(0, str(PYTHON_DIR / "tools"))
import build_backend  # noqa: E402

PACKAGE_FILES = sorted(
    p.relative_to(PYTHON_DIR).as_posix()
    for p in (PYTHON_DIR / "agent_team").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
)


def test_the_wheel_holds_the_package_metadata_and_a_true_record(tmp_path: Path) -> None:
    name = build_backend.build_wheel(str(tmp_path))
    assert name == "agent_team-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / name) as z:
        names = z.namelist()
        assert sorted(n for n in names if n.startswith("agent_team/")) == PACKAGE_FILES
        assert "agent_team/py.typed" in names and "agent_team/_schema.py" in names
        meta = z.read("agent_team-0.1.0.dist-info/METADATA").decode()
        assert "Name: agent-team\nVersion: 0.1.0\n" in meta
        assert "Requires-Python: >=3.9" in meta and "Description-Content-Type: text/markdown" in meta
        assert meta.endswith((PYTHON_DIR / "README.md").read_text(encoding="utf-8"))
        assert "Root-Is-Purelib: true" in z.read("agent_team-0.1.0.dist-info/WHEEL").decode()
        rows = list(csv.reader(io.StringIO(z.read("agent_team-0.1.0.dist-info/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={want}", len(data)), path


def test_the_sdist_can_build_the_wheel_again(tmp_path: Path) -> None:
    name = build_backend.build_sdist(str(tmp_path))
    assert name == "agent_team-0.1.0.tar.gz"
    with tarfile.open(tmp_path / name) as tar:
        members = sorted(m.name for m in tar.getmembers())
    base = "agent_team-0.1.0/"
    for rel in ["pyproject.toml", "README.md", "PKG-INFO", "tools/build_backend.py", "tools/gen_types.py"]:
        assert base + rel in members
    assert sorted(m[len(base) :] for m in members if m.startswith(base + "agent_team/")) == PACKAGE_FILES

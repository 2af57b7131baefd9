"""The generated types cannot drift from the binary: `_schema.py` is regenerated from the real
binary's OpenAPI document (`GET /v1/openapi.json` of `agent-team serve`) and must be the
committed file, byte for byte; and the versions agree."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from conftest import PYTHON_DIR, WORKSPACE

import agent_team
from agent_team import schema as s

sys.path.insert(0, str(PYTHON_DIR / "tools"))
import gen_types  # noqa: E402


@pytest.fixture(scope="module")
def document(binary: str) -> Dict[str, Any]:
    return gen_types.fetch_openapi(binary)


def test_the_committed_types_are_what_the_binarys_document_generates(document: Dict[str, Any]) -> None:
    committed = (PYTHON_DIR / "agent_team" / "_schema.py").read_text(encoding="utf-8")
    fresh = gen_types.generate(document)
    assert fresh == committed, (
        "python/agent_team/_schema.py differs from what the binary's OpenAPI document generates: "
        "run `python3 python/tools/gen_types.py --binary target/debug/agent-team` and commit it"
    )


def test_the_installed_types_are_the_committed_ones() -> None:
    # The package under test (installed in the venv, or the source tree) holds the same file.
    installed = Path(s.__file__).read_text(encoding="utf-8")
    assert installed == (PYTHON_DIR / "agent_team" / "_schema.py").read_text(encoding="utf-8")


def test_every_schema_and_event_of_the_document_has_its_type(document: Dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in schemas:
        assert hasattr(s, name), name
    tags = [v["properties"]["type"]["const"] for v in schemas["Event"]["oneOf"]]
    assert len(tags) >= 20
    for tag in tags:
        ev = s.parse_event({"type": tag, **_minimal(schemas, tag)})
        assert type(ev).__name__ != "UnknownEvent" and ev.type == tag
    # A newer binary's event is kept, not lost.
    unknown = s.parse_event({"type": "SOMETHING_NEW", "x": 1})
    assert isinstance(unknown, s.UnknownEvent) and unknown.data == {"type": "SOMETHING_NEW", "x": 1}


def _minimal(schemas: Dict[str, Any], tag: str) -> Dict[str, Any]:
    """Placeholder values for an event's required fields (enough to build the dataclass)."""
    [variant] = [v for v in schemas["Event"]["oneOf"] if v["properties"]["type"]["const"] == tag]
    out: Dict[str, Any] = {}
    for key in variant.get("required", []):
        if key == "type":
            continue
        prop = variant["properties"][key]
        ty = prop.get("type")
        out[key] = {"string": "", "integer": 0, "boolean": False, "array": [], "number": 0.0}.get(
            ty if isinstance(ty, str) else "", None
        )
        if "$ref" in prop:
            out[key] = None  # nested objects: None passes through the converters
    return out


def test_versions_agree_with_the_workspace(document: Dict[str, Any]) -> None:
    cargo = (WORKSPACE / "Cargo.toml").read_text(encoding="utf-8")
    workspace_version = re.search(r'\[workspace\.package\][^\[]*?\nversion = "([^"]+)"', cargo).group(1)
    pyproject = (PYTHON_DIR / "pyproject.toml").read_text(encoding="utf-8")
    project_version = re.search(r'(?m)^version = "([^"]+)"', pyproject).group(1)
    assert project_version == workspace_version
    assert agent_team.__version__ == workspace_version
    assert s.SCHEMA_VERSION == document["info"]["version"] == workspace_version


def test_the_generator_runs_as_a_script_in_check_mode(binary: str, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_types_cli", PYTHON_DIR / "tools" / "gen_types.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "_schema.py"
    assert mod.main(["--binary", binary, "-o", str(out)]) == 0
    assert mod.main(["--binary", binary, "-o", str(out), "--check"]) == 0
    out.write_text(out.read_text() + "# edited\n")
    assert mod.main(["--binary", binary, "-o", str(out), "--check"]) == 1

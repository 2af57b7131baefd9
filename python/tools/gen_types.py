#!/usr/bin/env python3
"""Writes python/agent_team/_schema.py from agent-team's OpenAPI document.

The document is the one `agent-team serve` answers at `GET /v1/openapi.json`, built from the
same Rust types the server reads and writes (crates/http/src/openapi.rs), so the Python types
follow the wire types. `python/tests/test_schema.py` regenerates the module from the real
binary's document and fails when the committed file differs.

    python3 python/tools/gen_types.py --binary target/debug/agent-team   # ask the binary
    python3 python/tools/gen_types.py --openapi openapi.json             # or a saved document
    ... --check                                                          # compare, write nothing

What comes out, for each schema of `components.schemas`:

- an object: a dataclass with `from_dict(dict)` and `to_dict()`; required fields first (in the
  order the Rust struct has them), then the optional ones with the schema's default (else None);
- a set of string constants: a `Literal[...]` alias;
- a `oneOf` of objects tagged by a `type` constant (`Event`, `StreamItem`): one dataclass per
  variant, named after its tag (`RUN_STARTED` of `Event` is `RunStartedEvent`), a `Union` alias,
  an `Unknown…` class for tags this version does not know, and `parse_<name>(dict)`;
- anything else: an alias of the nearest Python type.

Only the standard library; Python >= 3.9.
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import queue
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "agent_team" / "_schema.py"
REF = "#/components/schemas/"


def camel(s: str) -> str:
    """`RUN_STARTED` / `team_event` -> `RunStarted` / `TeamEvent`."""
    return "".join(p[:1].upper() + p[1:].lower() for p in re.split(r"[^A-Za-z0-9]+", s) if p)


def snake(s: str) -> str:
    """`Event` / `StreamItem` -> `event` / `stream_item`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", s).lower()


def py_name(s: str) -> str:
    """A field's Python name: keywords get a trailing underscore (`from` -> `from_`)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", s)
    if keyword.iskeyword(name) or not name or name[0].isdigit():
        name += "_"
    return name


def doc_lines(text: Optional[str], indent: str) -> List[str]:
    if not text:
        return []
    return [f"{indent}#: {line}".rstrip() for line in text.strip().splitlines()]


def docstring(text: Optional[str], indent: str) -> List[str]:
    if not text:
        return []
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}'] + [f"{indent}{line}".rstrip() for line in lines[1:]] + [f'{indent}"""']


class Gen:
    """Turns the document's schemas into Python source."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        self.doc = doc
        self.schemas: Dict[str, Any] = doc["components"]["schemas"]
        # name -> "class" | "alias" | "union"
        self.kinds: Dict[str, str] = {}
        self.unions: Dict[str, Tuple[str, List[Tuple[str, str]]]] = {}
        for name, schema in self.schemas.items():
            self.kinds[name] = self.kind(schema)

    # What a schema becomes ------------------------------------------------------------------

    @staticmethod
    def string_consts(schema: Dict[str, Any]) -> Optional[List[str]]:
        if isinstance(schema.get("enum"), list) and all(isinstance(v, str) for v in schema["enum"]):
            return list(schema["enum"])
        alts = schema.get("oneOf")
        if isinstance(alts, list) and alts and all(isinstance(a.get("const"), str) for a in alts):
            return [a["const"] for a in alts]
        return None

    @staticmethod
    def tag_of(variant: Dict[str, Any]) -> Optional[str]:
        t = variant.get("properties", {}).get("type", {})
        return t.get("const") if isinstance(t.get("const"), str) else None

    def kind(self, schema: Dict[str, Any]) -> str:
        if self.string_consts(schema) is not None:
            return "alias"
        alts = schema.get("oneOf")
        if isinstance(alts, list) and alts and all(self.tag_of(a) for a in alts):
            return "union"
        if schema.get("type") == "object" and "properties" in schema:
            return "class"
        return "alias"

    # Types and converters -------------------------------------------------------------------

    def ref_name(self, ref: str) -> str:
        if not ref.startswith(REF):
            raise ValueError(f"unsupported $ref {ref}")
        return ref[len(REF) :]

    def type_of(self, schema: Any) -> Tuple[str, Any]:
        """(annotation, converter spec) of a property schema. Specs: None (as is),
        ("class", N), ("union", N), ("list", S), ("dict", S), ("tuple", [S...]), ("opt", S)."""
        if not isinstance(schema, dict) or not schema:
            return "Any", None
        if "$ref" in schema:
            name = self.ref_name(schema["$ref"])
            kind = self.kinds.get(name)
            if kind == "class":
                return name, ("class", name)
            if kind == "union":
                return name, ("union", name)
            return name, None
        if "anyOf" in schema or "oneOf" in schema:
            alts: List[Any] = schema.get("anyOf") or schema.get("oneOf") or []
            non_null = [a for a in alts if a.get("type") != "null"]
            nullable = len(non_null) < len(alts)
            if len(non_null) == 1:
                one_ann, one_spec = self.type_of(non_null[0])
                if nullable:
                    return f"Optional[{one_ann}]", ("opt", one_spec) if one_spec else None
                return one_ann, one_spec
            consts = self.string_consts(schema)
            if consts is not None:
                return "Literal[" + ", ".join(json.dumps(c) for c in consts) + "]", None
            return "Any", None
        if "const" in schema:
            return "str" if isinstance(schema["const"], str) else "Any", None
        ty = schema.get("type")
        nullable = False
        spec: Any = None
        if isinstance(ty, list):
            nullable = "null" in ty
            rest = [t for t in ty if t != "null"]
            ty = rest[0] if len(rest) == 1 else None
        if ty == "array":
            if "prefixItems" in schema:
                parts = [self.type_of(p) for p in schema["prefixItems"]]
                ann = "Tuple[" + ", ".join(a for a, _ in parts) + "]"
                spec = ("tuple", [s for _, s in parts])
            else:
                item_ann, item_spec = self.type_of(schema.get("items", {}))
                ann = f"List[{item_ann}]"
                spec = ("list", item_spec) if item_spec else None
        elif ty == "object":
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                val_ann, val_spec = self.type_of(extra)
                ann = f"Dict[str, {val_ann}]"
                spec = ("dict", val_spec) if val_spec else None
            else:
                ann, spec = "Dict[str, Any]", None
        else:
            ann = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(ty or "", "Any")
            spec = None
        if nullable:
            return f"Optional[{ann}]", ("opt", spec) if spec else None
        return ann, spec

    # Source ---------------------------------------------------------------------------------

    def dataclass(
        self,
        name: str,
        schema: Dict[str, Any],
        description: Optional[str],
        tag: Optional[str] = None,
    ) -> List[str]:
        props: Dict[str, Any] = dict(schema.get("properties", {}))
        required: List[str] = [r for r in schema.get("required", []) if r in props]
        if tag is not None:
            props.pop("type", None)
            required = [r for r in required if r != "type"]
        order = required + [p for p in props if p not in required]
        out = ["", "", "@dataclass"]
        out.append(f"class {name}:")
        out += docstring(description, "    ") or ['    """(no description)"""']
        fields: List[Tuple[str, str, Any, bool, Any]] = []
        for json_name in order:
            prop = props[json_name]
            ann, spec = self.type_of(prop)
            is_required = json_name in required
            default: Any = prop.get("default", None)
            if not is_required and default is None and not ann.startswith("Optional[") and ann != "Any":
                ann = f"Optional[{ann}]"
            fields.append((py_name(json_name), json_name, spec, is_required, default))
            out.append("")
            out += doc_lines(prop.get("description"), "    ")
            if is_required:
                out.append(f"    {py_name(json_name)}: {ann}")
            elif isinstance(default, (list, dict)):
                factory = type(default).__name__ if not default else f"lambda: {default!r}"
                out.append(f"    {py_name(json_name)}: {ann} = field(default_factory={factory})")
            else:
                out.append(f"    {py_name(json_name)}: {ann} = {default!r}")
        if tag is not None:
            out.append("")
            out.append("    #: The variant's tag.")
            out.append(f"    type: str = {tag!r}")
        out.append("")
        spec_rows = ", ".join(f"({p!r}, {j!r}, {s!r}, {r!r}, {d!r})" for p, j, s, r, d in fields)
        out.append(f"    _FIELDS: ClassVar[Tuple[Any, ...]] = ({spec_rows}{',' if len(fields) == 1 else ''})")
        if tag is not None:
            out.append(f"    TYPE: ClassVar[str] = {tag!r}")
        out.append("")
        out.append("    @classmethod")
        out.append("    def from_dict(cls: Type[_T], data: Dict[str, Any]) -> _T:")
        out.append(f'        """A `{name}` from its JSON object (unknown keys are ignored)."""')
        out.append("        return _from_dict(cls, data)")
        out.append("")
        out.append("    def to_dict(self) -> Dict[str, Any]:")
        out.append('        """The JSON object (optional fields that are None are left out)."""')
        out.append("        return _to_dict(self)")
        return out

    def source(self) -> str:
        info = self.doc.get("info", {})
        version = info.get("version", "")
        head = [
            f'"""Types of agent-team {version}\'s HTTP API and event stream.',
            "",
            "Generated by python/tools/gen_types.py from the OpenAPI document that",
            "`agent-team serve` answers at `GET /v1/openapi.json` (crates/http/src/openapi.rs): do not",
            "edit by hand; python/tests/test_schema.py fails when this file and the binary's document",
            "differ.",
            '"""',
            "",
            "# ruff: noqa",
            "# fmt: off",
            "from __future__ import annotations",
            "",
            "from dataclasses import dataclass, field",
            "from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar, Union",
            "",
            "try:",
            "    from typing import Literal",
            "except ImportError:  # pragma: no cover",
            "    from typing_extensions import Literal  # type: ignore",
            "",
            f"SCHEMA_VERSION = {version!r}",
            '"""The agent-team version whose document this module was generated from."""',
            "",
            '_T = TypeVar("_T")',
        ]
        aliases: List[str] = []
        classes: List[str] = []
        unions: List[str] = []
        exported: List[str] = []
        for name in sorted(self.schemas):
            schema = self.schemas[name]
            kind = self.kinds[name]
            exported.append(name)
            if kind == "class":
                classes += self.dataclass(name, schema, schema.get("description"))
            elif kind == "alias":
                consts = self.string_consts(schema)
                if consts is not None:
                    ann = "Literal[" + ", ".join(json.dumps(c) for c in consts) + "]"
                else:
                    ann, _ = self.type_of({k: v for k, v in schema.items() if k != "description"})
                aliases.append("")
                aliases += doc_lines(schema.get("description"), "")
                aliases.append(f"{name} = {ann}")
            else:
                variants: List[Tuple[str, str]] = []
                for alt in schema["oneOf"]:
                    tag = self.tag_of(alt)
                    assert tag is not None
                    cls = camel(tag) + name
                    merged = alt
                    if "$ref" in alt:
                        base = self.schemas[self.ref_name(alt["$ref"])]
                        merged = {
                            "properties": {**base.get("properties", {}), **alt.get("properties", {})},
                            "required": list(base.get("required", []))
                            + [r for r in alt.get("required", []) if r not in base.get("required", [])],
                        }
                    desc = alt.get("description") or schema.get("description")
                    classes += self.dataclass(cls, merged, desc, tag=tag)
                    variants.append((tag, cls))
                    exported.append(cls)
                unknown = f"Unknown{name}"
                exported += [unknown, f"parse_{snake(name)}"]
                classes += [
                    "",
                    "",
                    "@dataclass",
                    f"class {unknown}:",
                    f'    """A `{name}` whose `type` this version of the package does not know (a newer',
                    '    binary): its tag and the whole JSON object."""',
                    "",
                    "    type: str",
                    "    data: Dict[str, Any]",
                    "",
                    "    @classmethod",
                    f"    def from_dict(cls, data: Dict[str, Any]) -> {unknown!r}:",
                    '        return cls(type=str(data.get("type", "")), data=dict(data))',
                    "",
                    "    def to_dict(self) -> Dict[str, Any]:",
                    "        return dict(self.data)",
                ]
                unions.append("")
                unions += doc_lines(schema.get("description"), "")
                members = ", ".join(c for _, c in variants) + f", {unknown}"
                unions.append(f"{name} = Union[{members}]")
                table = ", ".join(f"{t!r}: {c}" for t, c in variants)
                unions.append(f"_{name.upper()}_TYPES: Dict[str, Any] = {{{table}}}")
                unions.append(f'_UNIONS["{name}"] = (_{name.upper()}_TYPES, {unknown})')
                unions += [
                    "",
                    "",
                    f"def parse_{snake(name)}(data: Dict[str, Any]) -> {name}:",
                    f'    """The `{name}` variant named by `data["type"]` (`{unknown}` for an unknown one)."""',
                    f'    return _decode_union("{name}", data)',
                    "",
                ]
        runtime = [
            "",
            "",
            "# How values are converted (the `_FIELDS` specs) -------------------------------------",
            "",
            "_UNIONS: Dict[str, Any] = {}",
            "",
            "",
            "def _decode(spec: Any, value: Any) -> Any:",
            "    if spec is None or value is None:",
            "        return value",
            "    kind = spec[0]",
            '    if kind == "class":',
            "        return globals()[spec[1]].from_dict(value)",
            '    if kind == "union":',
            "        return _decode_union(spec[1], value)",
            '    if kind == "opt":',
            "        return _decode(spec[1], value)",
            '    if kind == "list":',
            "        return [_decode(spec[1], v) for v in value]",
            '    if kind == "dict":',
            "        return {k: _decode(spec[1], v) for k, v in value.items()}",
            '    if kind == "tuple":',
            "        return tuple(_decode(s, v) for s, v in zip(spec[1], value))",
            '    raise ValueError(f"unknown spec {spec!r}")',
            "",
            "",
            "def _decode_union(name: str, value: Any) -> Any:",
            "    types, unknown = _UNIONS[name]",
            '    cls = types.get(value.get("type")) if isinstance(value, dict) else None',
            "    return (cls or unknown).from_dict(value)",
            "",
            "",
            "def _from_dict(cls: Any, data: Any) -> Any:",
            "    if not isinstance(data, dict):",
            '        raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")',
            "    kwargs: Dict[str, Any] = {}",
            "    for py, key, spec, required, default in cls._FIELDS:",
            "        if key in data:",
            "            kwargs[py] = _decode(spec, data[key])",
            "        elif required:",
            '            raise ValueError(f"{cls.__name__}: the field {key!r} is missing in {data!r}")',
            "        elif isinstance(default, (list, dict)):",
            "            kwargs[py] = type(default)(default)",
            "        else:",
            "            kwargs[py] = default",
            "    return cls(**kwargs)",
            "",
            "",
            "def _encode(value: Any) -> Any:",
            '    if hasattr(value, "to_dict"):',
            "        return value.to_dict()",
            "    if isinstance(value, (list, tuple)):",
            "        return [_encode(v) for v in value]",
            "    if isinstance(value, dict):",
            "        return {k: _encode(v) for k, v in value.items()}",
            "    return value",
            "",
            "",
            "def _to_dict(obj: Any) -> Dict[str, Any]:",
            "    out: Dict[str, Any] = {}",
            "    for py, key, _spec, required, _default in obj._FIELDS:",
            "        value = getattr(obj, py)",
            "        if value is None and not required:",
            "            continue",
            "        out[key] = _encode(value)",
            '    tag = getattr(obj, "TYPE", None)',
            "    if tag is not None:",
            '        out["type"] = tag',
            "    return out",
        ]
        all_names = ["SCHEMA_VERSION"] + exported
        tail = ["", "", "__all__ = ["] + [f"    {n!r}," for n in all_names] + ["]"]
        text = "\n".join(head + aliases + runtime + classes + unions + tail) + "\n"
        return re.sub(r"\n{4,}", "\n\n\n", text)


def generate(doc: Dict[str, Any]) -> str:
    """The source of `_schema.py` for this OpenAPI document."""
    return Gen(doc).source()


def fetch_openapi(binary: str, timeout: float = 30.0) -> Dict[str, Any]:
    """Starts `binary serve` on a free loopback port with a private home, runtime dir and token,
    reads `/v1/openapi.json` and stops it."""
    if os.sep in binary:
        binary = os.path.abspath(binary)
    with tempfile.TemporaryDirectory(prefix="at-openapi-") as tmp:
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TEAM_")}
        env.update(
            AGENT_TEAM_HOME=os.path.join(tmp, "home"),
            AGENT_TEAM_RUNTIME_DIR=os.path.join(tmp, "run"),
            AGENT_TEAM_API_TOKEN=token,
        )
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0"],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: "queue.Queue[str]" = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put("")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + timeout
            url = None
            said: List[str] = []
            while url is None:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if not line:
                    break
                said.append(line)
                m = re.search(r"serving (http://\S+)", line)
                if m:
                    url = m.group(1)
            if url is None:
                raise RuntimeError(f"agent-team serve did not say where it listens: {''.join(said)}")
            req = urllib.request.Request(url + "/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            if proc.stdout and not reader.is_alive():
                proc.stdout.close()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--binary", help="the agent-team binary to ask for its document")
    src.add_argument("--openapi", help="a saved /v1/openapi.json")
    ap.add_argument("-o", "--out", default=str(OUT), help=f"where to write (default {OUT})")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs; write nothing")
    args = ap.parse_args(argv)
    if args.binary:
        doc = fetch_openapi(args.binary)
    else:
        with open(args.openapi, encoding="utf-8") as f:
            doc = json.load(f)
    text = generate(doc)
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run python3 python/tools/gen_types.py --binary ...", file=sys.stderr)
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The package's PEP 517 backend: maturin's own, with one default changed.

maturin builds everything (the crates/cli binaries as the wheel's scripts, the agent_team
package beside them). Through PEP 517 (`pip install ./python`, `pip wheel ./python`) maturin's
hook asks for `--compatibility off` unless told otherwise, and that beats
`[tool.maturin] compatibility` (PyO3/maturin#2538): the wheel would be tagged `linux_x86_64`,
which no index takes and no other machine installs. Here a wheel asks for maturin's own default
instead: the lowest manylinux tag the binaries meet (its auditwheel reads their glibc symbol
versions), plain `linux` only when none fits. Build arguments that name a platform tag
(`MATURIN_PEP517_ARGS` or `-C maturin.build-args=...`) are left alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import maturin
from maturin import (  # noqa: F401  (re-exported: the other PEP 517 hooks are maturin's)
    build_editable,
    build_sdist,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)


def _names_a_tag(args: List[str]) -> bool:
    return any(a.split("=", 1)[0] in ("--compatibility", "--manylinux") for a in args)


def with_platform_default(config_settings: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """`config_settings` whose build arguments end in an empty `--compatibility` (maturin's
    automatic tag) unless they already name a tag."""
    args = list(maturin.get_maturin_pep517_args(config_settings))
    settings = {k: v for k, v in (config_settings or {}).items() if k not in ("build-args", "maturin.build-args")}
    if not _names_a_tag(args):
        args.append("--compatibility")
    settings["maturin.build-args"] = args
    return settings


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """maturin's wheel, tagged manylinux where the binaries allow it."""
    return maturin.build_wheel(wheel_directory, with_platform_default(config_settings), metadata_directory)

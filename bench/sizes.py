"""Unzipped sizes of the built functions (``make build`` writes .aws-sam/build), through
scripts/lambda_sizes.py, the same measure the template tests apply."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / ".aws-sam" / "build"


class NoBuild(Exception):
    """No usable build to measure; the message says why."""


def measure_build(build_dir: Path = BUILD_DIR) -> tuple[dict[str, Any], int]:
    """(function logical id -> its sizes (``total``, ``code_bytes``, ``layers``), the limit in bytes)."""
    if not (build_dir / "template.yaml").exists():
        raise NoBuild(f"no {build_dir.relative_to(ROOT)}: run make build first")
    spec = importlib.util.spec_from_file_location("sluice_lambda_sizes", ROOT / "scripts" / "lambda_sizes.py")
    assert spec is not None and spec.loader is not None
    sizes = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = sizes  # dataclasses look their module up there
    try:
        spec.loader.exec_module(sizes)
        functions = {fs.name: fs for fs in sizes.measure(build_dir)}
    except Exception as exc:  # a half-written build: report it, keep the other figures
        raise NoBuild(f"cannot measure {build_dir}: {exc!r}") from exc
    return functions, sizes.LIMIT_BYTES

"""One helper to read the sample events in events/, used by the tests and matching `sam local invoke -e`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
DATA = ROOT.parent / "shared" / "data"


def event_files(function: str) -> list[Path]:
    return sorted((EVENTS / function).glob("*.json"))


def load_event(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_absolute():
        path = EVENTS / path
    return json.loads(path.read_text())

"""Percentiles, ratios and machine facts for the benchmark results."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from importlib import metadata
from typing import Any

LIBRARIES = (
    "onnxruntime",
    "scikit-learn",
    "numpy",
    "pandas",
    "fastapi",
    "starlette",
    "mangum",
    "pydantic",
    "aws-lambda-powertools",
    "uvicorn",
    "httpx",
    "moto",
)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """p50/p90/p95/p99/mean/min/max of ``values`` (same unit in and out) and the sample size."""
    return {
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p95": round(percentile(values, 95), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(statistics.fmean(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of per-round ratios (numerator[i] / denominator[i]): both measured in the same round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True) if b > 0)


def ratio(a: float, b: float, digits: int = 2) -> float | None:
    return round(a / b, digits) if b else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "note": "2 vCPU, shared and noisy: compare the ratios, not the absolute times",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }

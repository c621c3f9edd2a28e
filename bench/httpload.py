"""A bounded HTTP load generator: a fixed number of POSTs, a fixed concurrency, a time cap.

Only 127.0.0.1 is accepted. One asyncio event loop, ``concurrency`` workers sharing one
``httpx.AsyncClient`` with as many keep-alive connections; each request's latency is the time from
sending it to having read the whole response. The client is Python too (on a 2-vCPU machine it
shares the CPU with the server), so requests/s is a lower bound of what the server could do.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx


async def _run(
    url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int, time_cap_s: float
) -> dict[str, Any]:
    latencies_ms: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0, headers=headers) as client:
        start = time.perf_counter()
        deadline = start + time_cap_s

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter_ns()
                try:
                    response = await client.post(url, content=body)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "latencies_ms": latencies_ms,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "issued": issued,
        "wall_s": wall,
        "capped": issued < requests,
    }


def load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    requests: int,
    concurrency: int,
    time_cap_s: float,
) -> dict[str, Any]:
    """POST ``body`` to ``url`` ``requests`` times, ``concurrency`` at a time, for at most ``time_cap_s``."""
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"the load generator only targets 127.0.0.1, not {url}")
    return asyncio.run(_run(url, body, headers, requests, concurrency, time_cap_s))

"""The serving benchmark: one run, every figure measured side by side (see bench/README.md).

1. in-process latency of one household row: the api Lambda handler on an API Gateway event,
   onnxruntime's ``InferenceSession.run`` on the row's feed and ``ServedModel.predict`` (feed + run +
   response dicts) interleaved in rounds, the native scikit-learn pipeline's ``predict_proba`` in
   bursts between blocks of rounds;
2. cold init in fresh interpreters: the api handler path, bare onnxruntime and the pickled
   scikit-learn pipeline (plus bare interpreter start), alternating;
3. the unzipped size of the api function and its layers in ``.aws-sam/build`` (``make build``);
4. HTTP: the app under uvicorn on 127.0.0.1 and a bounded load generator.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.child import MODEL, ROOT, UNSET, LambdaContext, base_env
from bench.sizes import NoBuild, measure_build
from bench.stats import load_average, machine, paired_ratio, ratio, summary

CHILD = "import bench.child as c; c.main()"
BUILD_DIR = ROOT / ".aws-sam" / "build"
API_FUNCTION = "ApiFunction"
MB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    calls: int = 2000  # in-process calls of each sub-millisecond path
    block: int = 50  # rounds between two bursts of scikit-learn calls
    sklearn_per_block: int = 5
    in_process_cap_s: float = 90.0
    cold_repeats: int = 5
    requests: int = 2000
    concurrency: int = 8
    http_cap_s: float = 30.0


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """File descriptor 1 to /dev/null: the API logs a JSON line and an EMF document per prediction
    (as on Lambda, where they go to CloudWatch); writing them stays in the timings, showing them not."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def apply_env() -> None:
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(base_env())


# -- 1. in-process ----------------------------------------------------------------------------------


def in_process(fx: Any, options: Options) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    api, event, context = fx.api, fx.event, LambdaContext()
    schema = fx.served.schema
    session, outputs, feed = fx.served.session, [schema.label_output, schema.probabilities_output], fx.feed
    pipeline, frame, records = fx.pipeline, fx.frame, [fx.record]
    cases: dict[str, Callable[[], Any]] = {
        "handler": lambda: api.handler(event, context),
        "onnxruntime": lambda: session.run(outputs, feed),
        "served_predict": lambda: fx.served.predict(records),
        "sklearn": lambda: pipeline.predict_proba(frame),
    }
    handler_label = json.loads(cases["handler"]()["body"])["predictions"][0]["label"]
    ort_label = str(cases["onnxruntime"]()[0][0])
    sklearn_label = str(pipeline.classes_[int(cases["sklearn"]()[0].argmax())])

    # The three sub-millisecond paths are interleaved call by call (each round in a rotated order),
    # so machine noise hits them alike; scikit-learn runs in its own short burst between blocks of
    # rounds. Measured right after its 4 ms of pandas and numpy work, which evicts the CPU caches,
    # bare onnxruntime takes 2.5x and the handler 5x their steady-state time: that would measure the
    # cache, not the paths. Each block gives one paired ratio between scikit-learn and the others.
    fast = [name for name in cases if name != "sklearn"]
    times: dict[str, list[float]] = {name: [] for name in cases}
    block_medians: dict[str, list[float]] = {name: [] for name in cases}
    bad_status = 0

    def timed(name: str) -> Any:
        t0 = time.perf_counter_ns()
        out = cases[name]()
        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        return out

    # BLAS single-threaded, as in training and like onnxruntime's single intra-op thread.
    with threadpool_limits(limits=1, user_api="blas"):
        for name, fn in cases.items():  # warm-up
            for _ in range(20 if name == "sklearn" else 200):
                fn()
        gc.collect()
        deadline = time.perf_counter() + options.in_process_cap_s
        rounds = 0
        while rounds < options.calls and time.perf_counter() < deadline:
            start = {name: len(values) for name, values in times.items()}
            for _ in range(min(options.block, options.calls - rounds)):
                k = rounds % len(fast)
                for name in fast[k:] + fast[:k]:  # rotate the order every round
                    out = timed(name)
                    if name == "handler" and out["statusCode"] != 200:
                        bad_status += 1
                rounds += 1
            for _ in range(options.sklearn_per_block):
                timed("sklearn")
            for name, values in times.items():
                block_medians[name].append(statistics.median(values[start[name] :]))
    if bad_status:
        raise RuntimeError(f"{bad_status} handler calls did not answer 200")
    return {
        "latency_ms": {name: summary(values) for name, values in times.items()},
        "paired": {
            "sklearn_to_onnxruntime": round(
                paired_ratio(block_medians["sklearn"], block_medians["onnxruntime"]), 2
            ),
            "handler_to_onnxruntime": round(paired_ratio(times["handler"], times["onnxruntime"]), 2),
            "sklearn_to_handler": round(paired_ratio(block_medians["sklearn"], block_medians["handler"]), 2),
        },
        "rounds": len(times["handler"]),
        "sklearn_calls": len(times["sklearn"]),
        "capped": len(times["handler"]) < options.calls,
        "labels": {"handler": handler_label, "onnxruntime": ort_label, "sklearn": sklearn_label},
    }


# -- 2. cold init -----------------------------------------------------------------------------------


def child(kind: str, snapshot: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """subprocess arguments of a bench.child run (its output is in ``out`` and on stderr)."""
    command = [sys.executable, "-c", CHILD, kind, str(snapshot), str(out)]
    return {"args": command, "cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL}


def cold_once(kind: str, snapshot: Path, env: dict[str, str]) -> dict[str, Any]:
    out = snapshot / f"cold-{kind}.json"
    out.unlink(missing_ok=True)
    if kind == "handler":  # a new execution environment: nothing in its /tmp (sluice.serving.cache)
        env = {**env, "SLUICE_MODEL_CACHE_DIR": tempfile.mkdtemp(prefix="model-cache-", dir=snapshot)}
    stderr = snapshot / f"cold-{kind}.stderr"
    with stderr.open("wb") as err:
        launched = time.time()
        proc = subprocess.run(**child(kind, snapshot, out, env), stderr=err, timeout=120, check=False)
    if proc.returncode != 0 or not out.exists():
        tail = stderr.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"cold start {kind!r} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(out.read_text())
    result["cold_s"] = result["done_wall"] - launched - result["excluded_s"]
    return result


@contextmanager
def server_child(
    kind: str, snapshot: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A bench.child server (``serve`` or ``registry``) started with ``env``: yields the process and
    the port it listens on once it wrote it; stopped on the way out."""
    port_file = snapshot / f"{kind}-port"
    port_file.unlink(missing_ok=True)
    with (snapshot / f"{kind}.stderr").open("wb") as err:
        proc = subprocess.Popen(**child(kind, snapshot, port_file, env), stderr=err)
    try:
        _wait_for(port_file.exists, 60, proc, f"the {kind} server")
        yield proc, int(port_file.read_text())
    finally:
        _stop(proc)


def cold_starts(snapshot: Path, repeats: int) -> dict[str, Any]:
    kinds = ["handler", "sklearn", "onnxruntime", "python"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    # The cold handlers' registry: a moto server process (bench.child ``registry``).
    with server_child("registry", snapshot, dict(os.environ)) as (_, port):
        # The function's environment: its AWS at the endpoint, the model loaded during init.
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "SLUICE_PRELOAD_MODELS": MODEL}
        for r in range(repeats):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                runs[kind].append(cold_once(kind, snapshot, env))
    labels = {k: {run.get("label") for run in v} for k, v in runs.items() if k != "python"}
    if any(run.get("status", 200) != 200 for run in runs["handler"]):
        raise RuntimeError("a cold handler did not answer 200")
    out: dict[str, Any] = {"repeats": repeats, "labels": {k: sorted(v) for k, v in labels.items()}}
    for kind, values in runs.items():
        cold = [run["cold_s"] for run in values]
        out[kind] = {
            "cold_s": summary(cold, 3),
            "import_s_median": round(statistics.median(run["import_s"] for run in values), 3),
            "first_call_s_median": round(statistics.median(run["first_call_s"] for run in values), 3),
            "excluded_setup_s_median": round(statistics.median(run["excluded_s"] for run in values), 3),
            "runs_s": [round(x, 3) for x in cold],
        }
    out["paired_sklearn_to_handler"] = round(
        paired_ratio([r["cold_s"] for r in runs["sklearn"]], [r["cold_s"] for r in runs["handler"]]), 2
    )
    return out


# -- 3. bundle size ---------------------------------------------------------------------------------


def bundle_size(build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    try:
        functions, limit = measure_build(build_dir)
    except NoBuild as exc:
        return {"bundle_mb": None, "bundle_note": str(exc)}
    api = functions.get(API_FUNCTION)
    if api is None:
        return {"bundle_mb": None, "bundle_note": f"{API_FUNCTION} not in {build_dir}/template.yaml"}
    built = datetime.fromtimestamp((build_dir / "template.yaml").stat().st_mtime, UTC)
    layers = {name: b for fs in functions.values() for name, b in fs.layers.items()}
    sklearn_layers = [name for name in ("SluiceLayer", "MLDepsLayer") if name in layers]
    return {
        "bundle_mb": round(api.total / MB, 1),
        "bundle_code_mb": round(api.code_bytes / MB, 3),
        "bundle_layers_mb": {name: round(b / MB, 1) for name, b in api.layers.items()},
        "bundle_limit_mb": round(limit / MB, 1),
        "bundle_build_dir": str(build_dir.relative_to(ROOT)),
        "bundle_built_at": built.isoformat(timespec="seconds"),
        "bundle_all_functions_mb": {name: round(fs.total / MB, 1) for name, fs in functions.items()},
        # What a "pickle in a Lambda" would need: the sluice and ML deps layers (an upper bound: the
        # ML layer also holds skl2onnx and onnx, which only training needs).
        "sklearn_bundle_mb": (
            round(sum(layers[n] for n in sklearn_layers) / MB, 1) if len(sklearn_layers) == 2 else None
        ),
    }


# -- 4. HTTP ----------------------------------------------------------------------------------------


def _wait_for(
    predicate: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes], what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early (status {proc.returncode})")
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready within {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def http(snapshot: Path, body: bytes, options: Options) -> dict[str, Any]:
    import httpx

    from bench.httpload import load

    key = secrets.token_urlsafe(24)
    env = {**os.environ, "SLUICE_LOCAL_API_KEYS": key, "SLUICE_ROOT_PATH": ""}
    with server_child("serve", snapshot, env) as (proc, port):
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, 30, proc, "the uvicorn server")
        url = f"{base}/v1/models/{MODEL}/predict"
        headers = {"x-api-key": key, "content-type": "application/json"}
        first = load(url, body, headers, requests=1, concurrency=1, time_cap_s=30)  # loads the model
        load(url, body, headers, requests=200, concurrency=options.concurrency, time_cap_s=10)  # warm-up
        single = load(url, body, headers, requests=300, concurrency=1, time_cap_s=10)  # unloaded latency
        gc.collect()
        run = load(
            url,
            body,
            headers,
            requests=options.requests,
            concurrency=options.concurrency,
            time_cap_s=options.http_cap_s,
        )
    ok = run["statuses"].get(200, 0)
    if not run["latencies_ms"] or ok != len(run["latencies_ms"]):
        raise RuntimeError(f"HTTP run: statuses {run['statuses']}, errors {run['errors']}")
    return {
        "rps": round(ok / run["wall_s"], 1),
        "latency_ms": summary(run["latencies_ms"], 3),
        "requests": run["issued"],
        "ok": ok,
        "errors": run["errors"],
        "wall_s": round(run["wall_s"], 2),
        "capped": run["capped"],
        "first_request_ms": round(first["latencies_ms"][0], 1) if first["latencies_ms"] else None,
        "sequential": {
            "rps": round(single["statuses"].get(200, 0) / single["wall_s"], 1),
            "latency_ms": summary(single["latencies_ms"], 3),
        },
        "first_status": first["statuses"],
    }


# -- the run ----------------------------------------------------------------------------------------


def run(options: Options) -> dict[str, Any]:
    from moto import mock_aws

    from bench.fixture import build, snapshot

    started = time.perf_counter()
    apply_env()
    loads = {"start": load_average()}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, quiet_stdout(), mock_aws():
        snap = Path(tmp)
        os.environ["SLUICE_MODEL_CACHE_DIR"] = str(snap / "model-cache")  # not the machine's /tmp
        progress("training the model on the household file: ingest -> run_training -> verify -> register")
        fx = build()
        files = snapshot(fx, snap)
        progress(f"in-process latency: {options.calls} rounds of handler / served_predict / onnxruntime")
        inproc = in_process(fx, options)
        loads["after_in_process"] = load_average()
        progress(f"cold init: {options.cold_repeats} fresh interpreters per path, alternating")
        cold = cold_starts(snap, options.cold_repeats)
        loads["after_cold"] = load_average()
        progress(f"HTTP: {options.requests} requests, concurrency {options.concurrency}, uvicorn, 127.0.0.1")
        web = http(snap, fx.event["body"].encode(), options)
        loads["after_http"] = load_average()
        facts = {**fx.facts, **files, "version": fx.version, "row": fx.event["body"]}
    bundle = bundle_size()

    lat = inproc["latency_ms"]
    serving: dict[str, Any] = {
        "handler_p50_ms": lat["handler"]["p50"],
        "handler_p99_ms": lat["handler"]["p99"],
        "onnxruntime_p50_ms": lat["onnxruntime"]["p50"],
        "onnxruntime_p99_ms": lat["onnxruntime"]["p99"],
        "served_predict_p50_ms": lat["served_predict"]["p50"],
        "served_predict_p99_ms": lat["served_predict"]["p99"],
        "sklearn_p50_ms": lat["sklearn"]["p50"],
        "sklearn_p99_ms": lat["sklearn"]["p99"],
        "ratio_sklearn_to_onnxruntime_p50": ratio(lat["sklearn"]["p50"], lat["onnxruntime"]["p50"], 1),
        "ratio_handler_to_onnxruntime_p50": ratio(lat["handler"]["p50"], lat["onnxruntime"]["p50"], 1),
        "ratio_sklearn_to_handler_p50": ratio(lat["sklearn"]["p50"], lat["handler"]["p50"], 1),
        # what the event -> Powertools -> Mangum -> FastAPI -> validation -> JSON layers add
        "handler_overhead_p50_ms": round(lat["handler"]["p50"] - lat["served_predict"]["p50"], 4),
        "paired_ratios": inproc["paired"],
        "in_process_rounds": inproc["rounds"],
        "in_process_sklearn_calls": inproc["sklearn_calls"],
        "in_process_capped": inproc["capped"],
        "in_process_latency_ms": lat,
        "labels_agree": len(set(inproc["labels"].values())) == 1,
        "labels": inproc["labels"],
        "cold_init_s": cold["handler"]["cold_s"]["p50"],
        "onnxruntime_cold_init_s": cold["onnxruntime"]["cold_s"]["p50"],
        "sklearn_cold_init_s": cold["sklearn"]["cold_s"]["p50"],
        "python_startup_s": cold["python"]["cold_s"]["p50"],
        "ratio_sklearn_to_handler_cold": ratio(
            cold["sklearn"]["cold_s"]["p50"], cold["handler"]["cold_s"]["p50"], 2
        ),
        "cold": cold,
        **bundle,
        "http_rps": web["rps"],
        "http_p50_ms": web["latency_ms"]["p50"],
        "http_p95_ms": web["latency_ms"]["p95"],
        "http_p99_ms": web["latency_ms"]["p99"],
        "http_sequential_p50_ms": web["sequential"]["latency_ms"]["p50"],
        "http": {**web, "concurrency": options.concurrency, "server": "uvicorn (asyncio, h11), 1 worker"},
        "model": facts,
        "load_average": loads,
        "options": options.__dict__,
        "duration_s": round(time.perf_counter() - started, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    return serving


def table(s: dict[str, Any]) -> str:
    lat = s["in_process_latency_ms"]
    cold = s["cold"]
    paired = s["paired_ratios"]
    ort = lat["onnxruntime"]["p50"]
    lines = [
        f"Sluice serving benchmark, {s['measured_at']} ({s['machine']['cpus']} vCPU shared; "
        "compare ratios, not absolute times)",
        f"model: {MODEL} v{s['model']['version']}, trained on {s['model']['rows_train']} household rows; "
        f"row {s['model']['row']}",
        "",
        f"1. one prediction in-process: {s['in_process_rounds']} interleaved rounds of the fast paths, "
        f"{s.get('in_process_sklearn_calls', '?')} scikit-learn calls in bursts between blocks of them",
        f"   {'path':<48} {'p50 ms':>9} {'p99 ms':>9} {'x ORT p50':>10}",
    ]
    rows = [
        ("handler", "api handler (APIGW event -> JSON response)"),
        ("served_predict", "ServedModel.predict (feed + ORT + dicts)"),
        ("onnxruntime", "onnxruntime InferenceSession.run"),
        ("sklearn", "scikit-learn pipeline predict_proba"),
    ]
    for key, label in rows:
        v = lat[key]
        lines.append(f"   {label:<48} {v['p50']:9.3f} {v['p99']:9.3f} {v['p50'] / ort:10.1f}")
    lines.append(
        f"   paired ratios (median of per-round, or per-block for scikit-learn): sklearn/ORT "
        f"{paired['sklearn_to_onnxruntime']}, handler/ORT {paired['handler_to_onnxruntime']}, "
        f"sklearn/handler {paired['sklearn_to_handler']}"
    )
    lines += [
        "",
        f"2. cold init, fresh interpreter -> first prediction answered "
        f"({cold['repeats']} runs each, alternating)",
        f"   {'path':<48} {'median s':>9} {'min s':>9} {'max s':>9} {'x handler':>10}",
    ]
    h = cold["handler"]["cold_s"]["p50"]
    for key, label in [
        ("handler", "api handler (import + registry + ORT + 1 event)"),
        ("onnxruntime", "bare onnxruntime (import + session + run)"),
        ("sklearn", "scikit-learn (joblib.load + predict_proba)"),
        ("python", "bare interpreter start (reference)"),
    ]:
        v = cold[key]["cold_s"]
        lines.append(f"   {label:<48} {v['p50']:9.3f} {v['min']:9.3f} {v['max']:9.3f} {v['p50'] / h:10.2f}")
    lines.append(f"   paired per-run ratio sklearn/handler (median): {cold['paired_sklearn_to_handler']}")
    lines.append("")
    if s["bundle_mb"] is None:
        lines.append(f"3. bundle: n/a ({s['bundle_note']})")
    else:
        layers = ", ".join(f"{k} {v}" for k, v in s["bundle_layers_mb"].items())
        lines.append(
            f"3. bundle: {API_FUNCTION} + layers {s['bundle_mb']} MB unzipped "
            f"(code {s['bundle_code_mb']}; {layers}) of {s['bundle_limit_mb']:.0f} MB"
        )
        if s.get("sklearn_bundle_mb") is not None:
            lines.append(f"   scikit-learn alternative (sluice + ML layers): {s['sklearn_bundle_mb']} MB")
    w = s["http"]
    lines += [
        "",
        f"4. HTTP, uvicorn on 127.0.0.1, {w['ok']} requests, concurrency {w['concurrency']}",
        f"   {s['http_rps']} req/s; latency p50 {s['http_p50_ms']} ms, p95 {s['http_p95_ms']} ms, "
        f"p99 {s['http_p99_ms']} ms (one at a time: p50 {s['http_sequential_p50_ms']} ms)",
        "",
        f"labels agree across paths: {s['labels_agree']}; total {s['duration_s']} s",
    ]
    return "\n".join(lines)

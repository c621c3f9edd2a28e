"""template.yaml: lint, validate, build and the structural rules the deployment relies on.

The SAM CLI lives in its own tool venv (`make sam` -> .tools/sam); its tests are skipped, with the
reason, when it is not installed. The `sam build` tests (about a minute on 2 cores with a cold pip
cache) run when a Python 3.12 is found; set SLUICE_SAM_BUILD_TEST=0 to skip them. They check the
built sizes against Lambda's limit and import the slimmed layers with that Python 3.12, isolated
from this venv (-I -S), the way the Lambda runtime sees them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from tests.events import DATA

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LOCK = ROOT / "requirements" / "lock.txt"
SAM = Path(os.environ.get("SLUICE_SAM") or ROOT / ".tools" / "sam" / "bin" / "sam")
FIND_PYTHON = ROOT / "scripts" / "find-python.sh"

# Functions known to exceed Lambda's 250 MB unzipped limit with today's layers; the size test is an
# expected failure for them (strict: once one fits, the test says so and its name must leave this set).
KNOWN_OVER_LIMIT: dict[str, str] = {}

# Every function with its layers stays this far under the limit: room for the code and the pins to
# grow, so that a build that creeps towards 250 MiB fails here before a deployment does.
HEADROOM_MIB = 10

# The api function (and verify, on the same layers) with the sluice and serving layers: a size budget
# of its own, far below the limit, because the serving layer is slimmed to it (layers/serving/Makefile).
SERVING_BUDGET_MIB = 100

# The layers of each function. The ML and serving layers are never combined: together they cannot
# fit in 250 MB, which is why ONNX parity runs in Verify (serving layer) and not in Train.
FUNCTION_LAYERS = {
    "IngestFunction": ["SluiceLayer", "MLDepsLayer"],
    "TrainFunction": ["SluiceLayer", "MLDepsLayer", "TrainingLayer"],
    "VerifyFunction": ["SluiceLayer", "ServingDepsLayer"],
    "RegisterFunction": ["SluiceLayer"],
    "ApiFunction": ["SluiceLayer", "ServingDepsLayer"],
    "TriggerFunction": ["SluiceLayer"],
    "PreTrafficHookFunction": ["SluiceLayer"],
    "MonitorFunction": ["SluiceLayer", "MLDepsLayer"],
}

# What the python3.12 Lambda runtime provides, so the sluice layer does not ship it (layers/sluice/Makefile).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


def _load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert template is not None, f"cannot parse {path}: {matches}"
    return template


T = _load(TEMPLATE)
RESOURCES: dict[str, dict[str, Any]] = T["Resources"]


def resources_of_template(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return resources_of_template(T, kind)


FUNCTIONS = resources_of("AWS::Serverless::Function")
LAYERS = resources_of("AWS::Serverless::LayerVersion")
STATE_MACHINES = resources_of("AWS::Serverless::StateMachine")


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0"}


def python312_bindir() -> str | None:
    """A directory holding a working python3.12, as `make build` finds it; None if there is none."""
    proc = subprocess.run(["bash", str(FIND_PYTHON), "--bindir"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def needs_sam() -> None:
    if not (SAM.is_file() and os.access(SAM, os.X_OK)):
        pytest.skip(f"SAM CLI not installed at {SAM} (run `make sam`, or `make test` which does)")


# ----------------------------------------------------------------------------------- lint / validate
def test_cfn_lint_is_clean() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE)
    assert not matches, "cfn-lint findings:\n" + "\n".join(str(m) for m in matches)


def test_sam_validate_lint() -> None:
    needs_sam()
    proc = subprocess.run(
        [str(SAM), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=sam_env(),
        timeout=300,
    )
    assert proc.returncode == 0, f"sam validate --lint failed:\n{proc.stdout}\n{proc.stderr}"


# ------------------------------------------------------------------------------------ functions
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_logs_to_its_own_log_group_with_retention(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    group = ref(props.get("LoggingConfig", {}).get("LogGroup"))
    assert group, f"{name}: LoggingConfig.LogGroup must be a !Ref to a log group of this template"
    res = RESOURCES.get(group)
    assert res and res["Type"] == "AWS::Logs::LogGroup", f"{name}: {group} is not an AWS::Logs::LogGroup"
    assert res["Properties"].get("RetentionInDays"), f"{group} has no RetentionInDays"


def test_functions_use_the_expected_layers() -> None:
    globals_layers = T.get("Globals", {}).get("Function", {}).get("Layers") or []
    actual = {
        name: [ref(layer) for layer in [*globals_layers, *(f["Properties"].get("Layers") or [])]]
        for name, f in FUNCTIONS.items()
    }
    assert actual == FUNCTION_LAYERS
    for name, layers in actual.items():
        assert not {"MLDepsLayer", "ServingDepsLayer"} <= set(layers), f"{name}: ml + serving cannot fit"


def test_each_function_has_its_own_log_group() -> None:
    groups = [ref(f["Properties"]["LoggingConfig"]["LogGroup"]) for f in FUNCTIONS.values()]
    assert len(groups) == len(set(groups)), f"functions share a log group: {groups}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_code_and_handler_exist(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    code = ROOT / props["CodeUri"]
    assert code.is_dir(), f"{name}: CodeUri {props['CodeUri']} does not exist"
    handler = props.get("Handler") or T.get("Globals", {}).get("Function", {}).get("Handler", "")
    module, _, func = handler.rpartition(".")
    assert module and func, f"{name}: Handler must be module.function"
    assert (code / (module.replace(".", "/") + ".py")).is_file(), f"{name}: no {module}.py in {code}"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_sources_exist(name: str) -> None:
    res = LAYERS[name]
    content = ROOT / res["Properties"]["ContentUri"]
    assert content.is_dir(), f"{name}: ContentUri {content} does not exist"
    method = res.get("Metadata", {}).get("BuildMethod")
    if method == "makefile":
        makefile = content / "Makefile"
        assert makefile.is_file(), f"{name}: BuildMethod makefile needs {makefile.relative_to(ROOT)}"
        assert re.search(rf"^build-{name}:", makefile.read_text(), re.M), (
            f"no target build-{name} in {makefile}"
        )
    else:
        assert method == "python3.12", f"{name}: BuildMethod {method!r} (the runtime is python3.12)"


# ------------------------------------------------------------------------------ layer requirements
def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{path.relative_to(ROOT)}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


LAYER_REQUIREMENTS = sorted(
    p for p in (ROOT / "layers").glob("*/requirements.txt") if p.parent.name in {"sluice", "serving", "ml"}
)


@pytest.mark.parametrize("path", LAYER_REQUIREMENTS, ids=lambda p: p.parent.name)
def test_layer_requirements_are_pinned_to_the_lock(path: Path) -> None:
    lock = _pins(LOCK)
    pins = _pins(path)
    assert pins, f"{path} pins nothing"
    drift = {n: (v, lock.get(n)) for n, v in pins.items() if lock.get(n) != v}
    assert not drift, (
        f"{path.relative_to(ROOT)} differs from {LOCK.relative_to(ROOT)} (run `make lock`): {drift}"
    )
    for dev_only in ("moto", "pytest", "ruff", "cfn-lint", "aws-sam-translator", "uvicorn"):
        assert dev_only not in pins, f"{path.relative_to(ROOT)} ships the dev-only {dev_only}"


def test_layer_requirements_contents() -> None:
    layers = {p.parent.name: _pins(p) for p in LAYER_REQUIREMENTS}
    assert set(layers) == {"sluice", "serving", "ml"}
    assert "boto3" not in layers["serving"], "the serving layer must not ship boto3 (runtime + sluice layer)"
    assert "packaging" in layers["ml"], "skl2onnx imports packaging without declaring it"
    assert "onnxruntime" not in layers["ml"], "onnxruntime belongs to the serving layer (Verify runs parity)"
    assert not {"xgboost", "nvidia-nccl-cu12"} & set(layers["ml"]), "full xgboost cannot fit: use xgboost-cpu"
    assert {"xgboost-cpu", "onnxmltools"} <= set(layers["ml"]), "Train fits XGBoost and converts it to ONNX"


def make_variable(layer: str, name: str) -> list[str]:
    """The value of NAME in layers/LAYER/Makefile, as make expands it (make is what sam build runs)."""
    make = shutil.which("make")
    if not make:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        [make, "-s", "-f", "Makefile", "--eval", f"print-value: ; @echo $({name})", "print-value"],
        cwd=ROOT / "layers" / layer,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _normalized(names: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", name.lower()) for name in names}


def test_serving_layer_leaves_to_the_sluice_layer_exactly_what_both_pin() -> None:
    """Both layers unzip into /opt/python: what both pin ships once, from the sluice layer, and only
    if the versions are the same (the serving layer's import check runs against those versions)."""
    serving = _pins(ROOT / "layers" / "serving" / "requirements.txt")
    sluice = _pins(ROOT / "layers" / "sluice" / "requirements.txt")
    provided = _normalized(make_variable("serving", "SLUICE_LAYER_PROVIDED"))
    assert provided == set(serving) & set(sluice), "update SLUICE_LAYER_PROVIDED in layers/serving/Makefile"
    assert {name: serving[name] for name in provided} == {name: sluice[name] for name in provided}
    tools_only = _normalized(make_variable("serving", "ORT_TOOLS_ONLY"))
    assert tools_only <= set(serving) and not tools_only & set(sluice), tools_only


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_deployed_code_imports_no_powertools_part_the_sluice_layer_removes() -> None:
    """layers/sluice/Makefile leaves out the Powertools utilities nothing imports: importing one in
    code that runs on Lambda would fail there only, so it fails here first."""
    parts = make_variable("sluice", "POWERTOOLS_UNUSED")
    removed = ["aws_lambda_powertools." + part.replace("/", ".") for part in parts]
    assert removed
    sources = [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers" / "sluice" / "sluice").rglob("*.py")]
    sources += (ROOT / "training").glob("*.py")
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in _imported_modules(path)
        if any(name == part or name.startswith(part + ".") for part in removed)
    }
    assert not found, f"imports of Powertools parts layers/sluice/Makefile removes: {sorted(found)}"


def serving_smoke() -> Any:
    """layers/serving/smoke.py as a module (it imports numpy and onnxruntime: this venv has them)."""
    spec = importlib.util.spec_from_file_location("serving_smoke", ROOT / "layers" / "serving" / "smoke.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serving_smoke_model_is_the_graph_it_describes() -> None:
    """layers/serving/smoke.py (the build's InferenceSession check) carries its ONNX graph as bytes;
    rebuilt here with onnx.helper, so that what its docstring says is what it runs."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    smoke = serving_smoke()
    nodes = [
        helper.make_node(
            "Scaler", ["x"], ["scaled"], domain="ai.onnx.ml", offset=[1.0, 1.0], scale=[0.5, 0.5]
        ),
        helper.make_node(
            "LinearClassifier",
            ["scaled"],
            ["label", "probabilities"],
            domain="ai.onnx.ml",
            classlabels_strings=["low", "high"],
            coefficients=[-1.0, -1.0, 1.0, 1.0],
            intercepts=[0.0, 0.0],
            post_transform="SOFTMAX",
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "smoke",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="sluice")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    assert onnx.load_from_string(smoke.MODEL) == model
    session = ort.InferenceSession(smoke.MODEL, providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, {"x": np.array([[0.0, 0.0], [4.0, 4.0]], np.float32)})
    assert labels.tolist() == ["low", "high"]


# ----------------------------------------------------------------------------------- state machines
def _asl_files() -> list[Path]:
    return sorted((ROOT / "statemachines").glob("*.asl.json"))


def _walk_states(states: dict[str, Any], path: str = ""):
    """Yield (path, name, state, sibling names) for every state, nested Map/Parallel ones included."""
    for name, state in states.items():
        yield f"{path}{name}", name, state, set(states)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _walk_states(processor["States"], f"{path}{name}/")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from _walk_states(branch["States"], f"{path}{name}[{i}]/")


TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}


@pytest.mark.parametrize("asl", _asl_files(), ids=lambda p: p.name)
def test_every_task_retries_and_lambda_tasks_catch(asl: Path) -> None:
    """The rule the ASL follows: every Task retries; every Task that invokes a Lambda also catches
    States.ALL into a handling state. SNS notify tasks only retry: they are the failure handlers
    themselves (a notification that still fails after its retries fails the execution, visibly)."""
    definition = json.loads(asl.read_text())
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath", "the local engine has no JSONata"
    tasks = [(p, n, s, sib) for p, n, s, sib in _walk_states(definition["States"]) if s["Type"] == "Task"]
    assert tasks, f"{asl.name} has no Task states"
    for path, _name, state, siblings in tasks:
        resource = state["Resource"]
        assert state.get("Retry"), f"{asl.name}:{path} has no Retry"
        for catcher in state.get("Catch", []):
            assert catcher["Next"] in siblings, (
                f"{asl.name}:{path} catches into unknown state {catcher['Next']}"
            )
        if resource.startswith("arn:aws:states:::sns:publish"):
            continue
        catches = {e for c in state.get("Catch", []) for e in c["ErrorEquals"]}
        assert "States.ALL" in catches, f"{asl.name}:{path} ({resource}) has no Catch of States.ALL"
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            missing = TRANSIENT_LAMBDA_ERRORS - retried - {"States.ALL"}
            assert not missing, f"{asl.name}:{path} does not retry transient Lambda errors {missing}"


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_state_machine_substitutions_are_all_defined(name: str) -> None:
    props = STATE_MACHINES[name]["Properties"]
    asl = ROOT / props["DefinitionUri"]
    used = set(re.findall(r"\$\{(\w+)\}", asl.read_text()))
    defined = set(props.get("DefinitionSubstitutions", {}))
    assert used <= defined, f"{asl.name} uses undefined substitutions {used - defined}"
    assert defined <= used, f"{name} defines unused substitutions {defined - used}"


def test_state_machine_logs_errors_to_its_own_log_group() -> None:
    machines = resources_of("AWS::Serverless::StateMachine")
    assert machines
    groups = resources_of("AWS::Logs::LogGroup")
    for name, res in machines.items():
        logging = res["Properties"].get("Logging", {})
        assert logging.get("Level") in {"ERROR", "ALL"}, f"{name}: execution errors must be logged"
        assert logging.get("IncludeExecutionData") is False, f"{name}: payloads stay out of the logs"
        (dest,) = logging["Destinations"]
        group = dest["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        assert group in groups and "RetentionInDays" in groups[group]["Properties"]


def test_upload_rule_retries_then_parks_events_in_an_encrypted_queue() -> None:
    rule = resources_of("AWS::Serverless::Function")["TriggerFunction"]["Properties"]["Events"]["CsvUploaded"]
    props = rule["Properties"]
    assert props["RetryPolicy"]["MaximumRetryAttempts"] > 0
    queue = props["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queues = resources_of("AWS::SQS::Queue")
    assert queues[queue]["Properties"].get("SqsManagedSseEnabled") is True
    policies = resources_of("AWS::SQS::QueuePolicy").values()
    assert any({"Ref": queue} in p["Properties"]["Queues"] for p in policies), "no EventBridge access"


def test_api_deploys_through_a_canary_with_rollback_alarms_and_a_pre_traffic_hook() -> None:
    api = FUNCTIONS["ApiFunction"]["Properties"]
    pref = api["DeploymentPreference"]
    assert api["AutoPublishAlias"] == "live" and pref["Enabled"] is True
    assert pref["Type"] == {"Fn::If": ["IsProd", "Canary10Percent5Minutes", "AllAtOnce"]}
    alarms = resources_of("AWS::CloudWatch::Alarm")
    assert pref["Alarms"] and all(ref(a) in alarms for a in pref["Alarms"])
    hook = ref(pref["Hooks"]["PreTraffic"])
    hook_props = FUNCTIONS[hook]["Properties"]
    assert hook_props["FunctionName"]["Fn::Sub"].startswith("CodeDeployHook_")  # the CodeDeploy role's scope
    assert hook_props["Environment"]["Variables"]["SLUICE_TARGET_FUNCTION"] == {"Ref": "ApiFunction.Version"}
    samples = ROOT / hook_props["CodeUri"] / "samples"
    assert samples.resolve() == (ROOT / "events" / "api").resolve()  # the replayed samples are events/api


# ------------------------------------------------------------------------------------------ bucket
def test_data_bucket_is_versioned_encrypted_private_and_sends_events() -> None:
    buckets = resources_of("AWS::S3::Bucket")
    assert buckets, "no S3 bucket"
    for name, res in buckets.items():
        props = res["Properties"]
        assert props.get("VersioningConfiguration", {}).get("Status") == "Enabled", f"{name}: versioning"
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules), (
            f"{name}: SSE"
        )
        block = props.get("PublicAccessBlockConfiguration", {})
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            assert block.get(key) is True, f"{name}: PublicAccessBlockConfiguration.{key} must be true"
        events = props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {})
        assert events.get("EventBridgeEnabled") is True, f"{name}: EventBridge notifications must be on"


# --------------------------------------------------------------------------------------------- API
PUBLIC_PATHS = {"/health", "/docs", "/openapi.json"}


def test_api_requires_keys_with_a_usage_plan() -> None:
    apis = resources_of("AWS::Serverless::Api")
    assert apis, "no AWS::Serverless::Api"
    for name, res in apis.items():
        auth = res["Properties"].get("Auth", {})
        assert auth.get("ApiKeyRequired") is True, f"{name}: Auth.ApiKeyRequired must be true"
        plan = auth.get("UsagePlan", {})
        assert plan.get("CreateUsagePlan") in {"PER_API", "SHARED"}, f"{name}: no usage plan is created"
        assert plan.get("Throttle") and plan.get("Quota"), f"{name}: the usage plan needs Throttle and Quota"


def test_only_health_and_docs_are_public() -> None:
    for fname, res in FUNCTIONS.items():
        for ename, event in (res["Properties"].get("Events") or {}).items():
            if event["Type"] != "Api":
                continue
            props = event["Properties"]
            if props.get("Auth", {}).get("ApiKeyRequired") is False:
                assert props["Path"] in PUBLIC_PATHS, f"{fname}.{ename}: {props['Path']} is public"


# ------------------------------------------------------------------------------------------ build
def _sizes_module():
    spec = importlib.util.spec_from_file_location("lambda_sizes", ROOT / "scripts" / "lambda_sizes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lambda_sizes", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if os.environ.get("SLUICE_SAM_BUILD_TEST", "1") == "0":
        pytest.skip("SLUICE_SAM_BUILD_TEST=0")
    needs_sam()
    bindir = python312_bindir()
    if not bindir:
        pytest.skip("no Python 3.12 found (sam build for python3.12 needs one; see scripts/find-python.sh)")
    work = tmp_path_factory.mktemp("sam")
    build_dir, cache_dir = work / "build", work / "cache"
    env = {**sam_env(), "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(SAM), "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)]
    cmd += ["--cache-dir", str(cache_dir), "--no-cached", "--parallel", "--no-use-container"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    log = (proc.stdout + proc.stderr)[-6000:]
    if proc.returncode != 0:
        pytest.fail(f"`sam build` failed (exit {proc.returncode}):\n{log}", pytrace=False)
    sizes = _sizes_module()
    result = {fs.name: fs for fs in sizes.measure(build_dir)}
    print("\n" + sizes.report(list(result.values())))
    built_layers = resources_of_template(_load(build_dir / "template.yaml"), "AWS::Serverless::LayerVersion")
    sites = {
        name: build_dir / res["Properties"]["ContentUri"] / "python" for name, res in built_layers.items()
    }
    built_functions = resources_of_template(_load(build_dir / "template.yaml"), "AWS::Serverless::Function")
    code = {name: build_dir / res["Properties"]["CodeUri"] for name, res in built_functions.items()}
    yield {
        "dir": build_dir,
        "sizes": result,
        "limit": sizes.LIMIT_BYTES,
        "report": sizes.report,
        "python": str(Path(bindir) / "python3.12"),
        "sites": sites,
        "code": code,
    }
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_OVER_LIMIT[n]))
        if n in KNOWN_OVER_LIMIT
        else n
        for n in sorted(FUNCTIONS)
    ],
)
def test_built_function_with_layers_fits_lambda_limit(built: dict[str, Any], name: str) -> None:
    fs = built["sizes"][name]
    assert fs.total <= built["limit"] - HEADROOM_MIB * 2**20, (
        f"{name} is {fs.total / 2**20:.1f} MiB unzipped with its layers, less than {HEADROOM_MIB} MiB "
        f"under Lambda's 250 MiB:\n" + built["report"]([fs])
    )


@pytest.mark.parametrize("name", sorted(n for n, ls in FUNCTION_LAYERS.items() if "ServingDepsLayer" in ls))
def test_built_serving_bundle_fits_its_budget(built: dict[str, Any], name: str) -> None:
    fs = built["sizes"][name]
    assert fs.total <= SERVING_BUDGET_MIB * 2**20, (
        f"{name} is {fs.total / 2**20:.1f} MiB unzipped with its layers, over its {SERVING_BUDGET_MIB} MiB "
        "budget (layers/serving/Makefile slims the serving layer):\n" + built["report"]([fs])
    )


# The layers as the runtime sees them: a python3.12 with only the standard library and the given
# directories on sys.path (-I: no PYTHONPATH, no user site, no cwd; -S: no site-packages; -B: the
# check writes no .pyc into the build).
ISOLATED_PRELUDE = "import sys\nsys.path[:0] = sys.argv[1:]\n"


def run_isolated(built: dict[str, Any], code: str, *paths: Path) -> None:
    proc = subprocess.run(
        [built["python"], "-I", "-S", "-B", "-c", ISOLATED_PRELUDE + code, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"import check failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def runtime_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in for what the Lambda runtime provides: this venv's boto3 & co, symlinked, alone."""
    shim = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, f"{name} is not installed in this venv"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (shim / source.name).symlink_to(source)
    return shim


def test_built_sluice_layer_imports_and_leaves_boto3_to_the_runtime(
    built: dict[str, Any], runtime_packages: Path
) -> None:
    site = built["sites"]["SluiceLayer"]
    shipped = sorted(p.name for p in site.iterdir() if p.name.removesuffix(".py") in RUNTIME_PROVIDED)
    assert not shipped, f"the sluice layer ships {shipped}: the python3.12 runtime has them"
    run_isolated(
        built,
        """
import os
import aws_lambda_powertools, pydantic, yaml, boto3
import sluice, sluice.registry, sluice.ingest, sluice.specs
from aws_lambda_powertools import Logger, Metrics, Tracer
site, shim = sys.argv[1], sys.argv[2]
assert sluice.__file__.startswith(site) and pydantic.__file__.startswith(site), sys.path
assert boto3.__file__.startswith(shim), boto3.__file__
names = sluice.specs.dataset_names()
assert names, "no built-in dataset spec in the layer (specs/**/*.yaml)"
for name in names:
    sluice.specs.model_specs_for(sluice.specs.load_dataset_spec(name).name)
""",
        site,
        runtime_packages,
    )


def test_built_ml_layer_imports_after_slimming(built: dict[str, Any]) -> None:
    """The slimmed ML layer (tests/, headers, stubs removed; .so stripped) still imports and converts."""
    sluice_site, ml_site = built["sites"]["SluiceLayer"], built["sites"]["MLDepsLayer"]
    assert not list(ml_site.glob("*/tests")), "the ML layer still ships test suites"
    run_isolated(
        built,
        """
import importlib.util
import sklearn, scipy, pandas, skl2onnx, onnx, sklearn.linear_model, sklearn.ensemble, skl2onnx.common
import numpy as np
import scipy.sparse, scipy.stats
import xgboost, onnxmltools
from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
from sklearn.linear_model import LogisticRegression
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
ml = sys.argv[2]
for module in (sklearn, scipy, pandas, skl2onnx, onnx, np, xgboost, onnxmltools):
    assert module.__file__.startswith(ml), (module.__name__, module.__file__)
assert importlib.util.find_spec("onnxruntime") is None, "onnxruntime belongs to the serving layer"
# precompiled, hash-based .pyc (valid whatever mtimes the zip keeps) for what the ingest function
# loads; the training stack compiles at the train function's cold start (layers/ml/Makefile)
for module in (pandas, np):
    with open(module.__cached__, "rb") as fh:
        flags = int.from_bytes(fh.read(8)[4:], "little")
    assert flags & 1, f"{module.__cached__} is not a hash-based .pyc"
x = np.random.default_rng(0).random((40, 3)).astype(np.float32)
model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
onx = convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 3]))])
onnx.checker.check_model(onx)
pandas.DataFrame({"a": [1.0, None]}).describe()
""",
        sluice_site,
        ml_site,
    )


# The environment a function module may read at import (Powertools, sluice.settings); no AWS call is made.
FUNCTION_ENV = """
import importlib.util, os
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "layers-test", "POWERTOOLS_METRICS_NAMESPACE": "Sluice-test",
    "POWERTOOLS_TRACE_DISABLED": "true", "SLUICE_DATA_BUCKET": "bucket", "SLUICE_REGISTRY_TABLE": "table",
    "SLUICE_ROOT_PATH": "/dev",
})
def load_function(path):
    spec = importlib.util.spec_from_file_location("function_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
"""


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_built_function_imports_from_its_layers_alone(
    built: dict[str, Any], runtime_packages: Path, name: str
) -> None:
    """Each built function's handler module imports with only its own layers (in the template's
    order) and the runtime's boto3 on sys.path: the slimmed layers still hold what it imports."""
    sites = [built["sites"][layer] for layer in FUNCTION_LAYERS[name]]
    code = FUNCTION_ENV + f"assert callable(load_function({str(built['code'][name] / 'app.py')!r}).handler)\n"
    run_isolated(built, code, *sites, runtime_packages)


# The api handler answers /health and an ONNX model predicts, with the serving layer (sys.argv[1]) and
# the sluice layer; then every module loaded from the serving layer must have a hash-based .pyc.
SERVING_FROM_LAYERS = """
import contextlib, io, json
import numpy as np
from sluice.parity import onnx_session
api = load_function(API)
load_function(VERIFY)
class Context:
    function_name = "api"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
with contextlib.redirect_stdout(io.StringIO()):
    response = api.handler(json.loads(open(HEALTH).read()), Context())
assert response["statusCode"] == 200, response
session = onnx_session(open(MODEL, "rb").read())
labels, _ = session.run(None, {"x": np.array([[0.0, 0.0], [4.0, 4.0]], np.float32)})
assert labels.tolist() == ["low", "high"], labels
serving = sys.argv[1]
loaded = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
loaded = [f for f in loaded if f.startswith(serving)]
assert any("onnxruntime" in f for f in loaded) and any("fastapi" in f for f in loaded), loaded
missing = []
for source in (f for f in loaded if f.endswith(".py")):
    try:
        with open(importlib.util.cache_from_source(source), "rb") as fh:
            hashed = int.from_bytes(fh.read(8)[4:], "little") & 1
    except FileNotFoundError:
        hashed = False
    if not hashed:
        missing.append(source[len(serving) + 1 :])
assert not missing, f"no hash-based .pyc (add them to IMPORTS in layers/serving/Makefile): {missing}"
"""


def test_built_serving_layer_is_slimmed_and_serves_from_precompiled_modules(
    built: dict[str, Any], runtime_packages: Path, tmp_path: Path
) -> None:
    """The serving layer ships no second copy of what the sluice layer ships, nor onnxruntime's C API
    library and tooling; with the sluice layer, the api handler answers and an ONNX model predicts,
    and every module that loads from the serving layer has its hash-based .pyc (/opt is read-only)."""
    serving, sluice_site = built["sites"]["ServingDepsLayer"], built["sites"]["SluiceLayer"]
    both = {p.name for p in serving.iterdir()} & {p.name for p in sluice_site.iterdir()} - {"__pycache__"}
    assert not both, f"shipped by both the serving and the sluice layer: {sorted(both)}"
    gone = ["onnxruntime/capi/libonnxruntime.so.*", "onnxruntime/transformers", "onnxruntime/tools", "google"]
    assert not [g for g in gone if list(serving.glob(g))], [g for g in gone if list(serving.glob(g))]
    model = tmp_path / "smoke.onnx"
    model.write_bytes(serving_smoke().MODEL)
    constants = {
        "API": str(built["code"]["ApiFunction"] / "app.py"),
        "VERIFY": str(built["code"]["VerifyFunction"] / "app.py"),
        "HEALTH": str(ROOT / "events" / "api" / "health.json"),
        "MODEL": str(model),
    }
    code = FUNCTION_ENV + "".join(f"{k} = {v!r}\n" for k, v in constants.items()) + SERVING_FROM_LAYERS
    run_isolated(built, code, serving, sluice_site, runtime_packages)


# ------------------------------------------------------------------------------ alarms, dashboard
def test_alarms_are_named_for_the_stack_described_and_reach_the_alarm_topic() -> None:
    alarms = resources_of("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 8
    for name, res in alarms.items():
        props = res["Properties"]
        assert props["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name
        assert len(props.get("AlarmDescription", "")) > 20, f"{name}: say what it means"
        assert props["TreatMissingData"] == "notBreaching", name
    rule = RESOURCES["AlarmNotificationRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["alarmName"] == [{"prefix": {"Fn::Sub": "${AWS::StackName}-"}}]
    (target,) = rule["Targets"]
    assert (
        ref(target["Arn"]) == "AlarmTopic"
        and "<alarm> is <state>: <reason>" in target["InputTransformer"]["InputTemplate"]
    )
    watched = {m["Properties"]["MetricName"] for m in alarms.values()}
    assert {
        "5XXError",
        "Latency",
        "Throttles",
        "DriftAlerts",
        "LiveMetricBelowGate",
        "ExecutionsFailed",
    } <= watched


def test_dashboard_is_valid_json_and_shows_every_alarm() -> None:
    body, variables = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", body))
    known = set(RESOURCES) | set(T["Parameters"]) | set(variables) | {"AWS::Region"}
    assert {n.split(".")[0] for n in names} <= known, names
    document = json.loads(re.sub(r"\$\{[A-Za-z0-9:.]+\}", "x", body))
    (alarm_widget,) = [w for w in document["widgets"] if w["type"] == "alarm"]
    alarms = set(resources_of("AWS::CloudWatch::Alarm")) - {"ApiAliasErrorsAlarm", "ApiAliasLatencyAlarm"}
    shown = {a.removeprefix("${").removesuffix(".Arn}") for a in re.findall(r"\$\{\w+\.Arn\}", body)}
    assert alarms <= shown and len(alarm_widget["properties"]["alarms"]) == len(shown)


# Fits XGBoost inside scikit-learn pipelines on the wine data and exports them with skl2onnx, the
# XGBoost converters registered from onnxmltools (skl2onnx has none of its own). skl2onnx accepts
# the "ai.onnx.ml" opset 3 TreeEnsemble* operators, not the opset 5 TreeEnsemble onnxmltools
# writes by default. The imputer passes the values through unchanged: a StandardScaler would not
# (its ONNX Scaler rounds a third of the values 1 ulp away from scikit-learn's, and XGBoost's split
# thresholds are data values, so some rows take the other branch).
XGBOOST_FIT_AND_EXPORT = """
import numpy as np, pandas as pd, xgboost, onnxmltools
from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.shape_calculator import (
    calculate_linear_classifier_output_shapes,
    calculate_linear_regressor_output_shapes,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from xgboost import XGBClassifier, XGBRegressor
assert xgboost.__file__.startswith(sys.argv[1]), xgboost.__file__
update_registered_converter(
    XGBClassifier,
    "XGBoostXGBClassifier",
    calculate_linear_classifier_output_shapes,
    convert_xgboost,
    options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
)
update_registered_converter(
    XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
)
wine = pd.read_csv(WINE, sep=";")
x = wine.drop(columns="quality").to_numpy(np.float32)
quality = wine["quality"].to_numpy()
tree = {"n_estimators": 40, "max_depth": 4, "n_jobs": 1}
for name, estimator, y in (
    ("classifier", XGBClassifier(**tree), np.unique(quality, return_inverse=True)[1]),
    ("regressor", XGBRegressor(**tree), quality.astype(np.float32)),
):
    model = make_pipeline(SimpleImputer(strategy="median"), estimator).fit(x, y)
    options = {id(estimator): {"zipmap": False}} if name == "classifier" else None
    onx = convert_sklearn(
        model,
        initial_types=[("x", FloatTensorType([None, x.shape[1]]))],
        target_opset={"ai.onnx.ml": 3},
        options=options,
    )
    with open(f"{OUT}/{name}.onnx", "wb") as fh:
        fh.write(onx.SerializeToString())
    np.save(f"{OUT}/{name}.npy", model.predict_proba(x) if name == "classifier" else model.predict(x))
np.save(f"{OUT}/x.npy", x)
"""

# Scores the exported models with the serving layer's onnxruntime, as the Verify function does.
ONNX_MATCHES_NATIVE = """
import numpy as np, onnxruntime as ort
assert ort.__file__.startswith(sys.argv[1]), ort.__file__
x = np.load(f"{OUT}/x.npy")
for name, output in (("classifier", 1), ("regressor", 0)):
    native = np.load(f"{OUT}/{name}.npy")
    session = ort.InferenceSession(f"{OUT}/{name}.onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[output].reshape(native.shape)
    np.testing.assert_allclose(got, native, rtol=1e-5, atol=1e-5, err_msg=name)
    if name == "classifier":
        assert (got.argmax(axis=1) == native.argmax(axis=1)).all(), "ONNX and native labels differ"
"""


def test_built_layers_train_xgboost_and_serve_its_onnx(built: dict[str, Any], tmp_path: Path) -> None:
    """XGBoost trains and converts in the ML layer alone (libxgboost.so stripped); the serving layer's
    onnxruntime then predicts what the native pipelines predicted, on real data."""
    constants = f"OUT, WINE = {str(tmp_path)!r}, {str(DATA / 'tabular' / 'winequality-red.csv')!r}\n"
    run_isolated(built, constants + XGBOOST_FIT_AND_EXPORT, built["sites"]["MLDepsLayer"])
    run_isolated(built, constants + ONNX_MATCHES_NATIVE, built["sites"]["ServingDepsLayer"])

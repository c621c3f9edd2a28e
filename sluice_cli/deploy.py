"""Deploy template.yaml onto the embedded AWS: the same file `sam deploy` sends to AWS.

template.yaml -> local paths packaged to an artifacts bucket (what `sam package` does) ->
aws-sam-translator (what the SAM transform does) -> the resource types moto's CloudFormation
cannot create are left out, and whatever references them -> CloudFormation ``create_stack`` on
the embedded AWS -> bucket settings moto's CloudFormation skips are applied through the S3 API.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
ARTIFACT_BUCKET = "sluice-sandbox-artifacts"

# Served differently in the sandbox: the API runs under uvicorn on 127.0.0.1 with the same app,
# and the app itself enforces API keys (settings.local_api_keys).
SERVED_LOCALLY = ("AWS::ApiGateway::",)


@dataclass
class Stack:
    name: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    functions: dict[str, dict[str, Any]]  # logical id -> {name, code_dir, handler, environment}
    left_out: list[str] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)  # effective: defaults + given

    @property
    def bucket(self) -> str:
        return self.outputs["DataBucketName"]

    @property
    def table(self) -> str:
        return self.outputs["RegistryTableName"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["TrainingStateMachineArn"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["PipelineTopicArn"]


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


def _zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, file.relative_to(path).as_posix())
    return buf.getvalue()


def package(template: dict[str, Any], s3: Any, root: Path = ROOT) -> tuple[dict[str, Any], dict[str, Path]]:
    """Upload local CodeUri/ContentUri folders, inline DefinitionUri files (like `sam package`)."""
    template = copy.deepcopy(template)
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    code_dirs: dict[str, Path] = {}
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        for prop in ("CodeUri", "ContentUri"):
            uri = props.get(prop)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                local = (root / uri).resolve()
                key = f"{logical_id}.zip"
                s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=_zip_dir(local))
                props[prop] = f"s3://{ARTIFACT_BUCKET}/{key}"
                code_dirs[logical_id] = local
        uri = props.get("DefinitionUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            props["Definition"] = json.loads((root / uri).read_text())
            del props["DefinitionUri"]
    return template, code_dirs


class _NoManagedPolicies:
    """The template uses SAM policy templates only, so no AWS managed policy needs resolving."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    # Without a feature-toggle config (only AWS's own SAM transform has one), samtranslator warns
    # that each toggle it looks up is "not available": true, expected, and only noise here.
    logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)
    return transform(template, parameters, _NoManagedPolicies())


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if "Ref" in node and isinstance(node["Ref"], str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
            found.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text)))
        for value in node.values():
            found |= _references(value)
        if "DependsOn" in node:
            deps = node["DependsOn"]
            found.update([deps] if isinstance(deps, str) else deps)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def leave_out_unsupported(cfn: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop resources moto cannot create (or that are served locally), then their dependants."""
    from moto.cloudformation.parsing import resource_class_from_type

    cfn = copy.deepcopy(cfn)
    resources = cfn["Resources"]
    dropped = {
        lid
        for lid, res in resources.items()
        if res["Type"].startswith(SERVED_LOCALLY) or resource_class_from_type(res["Type"]) is None
    }
    changed = True
    while changed:
        changed = False
        for lid, res in resources.items():
            if lid not in dropped and _references(res) & dropped:
                dropped.add(lid)
                changed = True
    left_out = sorted(f"{lid} ({resources[lid]['Type']})" for lid in dropped)
    for lid in dropped:
        del resources[lid]
    outputs = cfn.get("Outputs", {})
    for name in [n for n, o in outputs.items() if _references(o) & dropped]:
        del outputs[name]
    return cfn, left_out


def _apply_bucket_settings(s3: Any, bucket: str, props: dict[str, Any]) -> None:
    """Bucket properties moto's CloudFormation does not apply, through the S3 API."""
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    notification = props.get("NotificationConfiguration", {})
    if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


def deploy(
    stack_name: str = "sluice-dev",
    parameters: dict[str, str] | None = None,
    template_path: Path = TEMPLATE,
    region: str = "us-east-1",
) -> Stack:
    """Create the stack on whatever AWS endpoint boto3 is pointed at (the sandbox's)."""
    parameters = {"Stage": "dev", **(parameters or {})}
    session = boto3.session.Session(region_name=region)
    s3, cfn_client = session.client("s3"), session.client("cloudformation")
    template = load_template(template_path)
    effective = {
        name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p
    } | parameters
    sam, code_dirs = package(template, s3, template_path.parent)
    cfn, left_out = leave_out_unsupported(translate(sam, parameters))
    cfn_client.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cfn_client.describe_stacks(StackName=stack_name)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(
            f"stack {stack_name}: {described['StackStatus']} {described.get('StackStatusReason')}"
        )
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn_client.describe_stack_resources(StackName=stack_name)["StackResources"]
    }
    functions: dict[str, dict[str, Any]] = {}
    lam = session.client("lambda")
    for lid, res in cfn["Resources"].items():
        if res["Type"] == "AWS::S3::Bucket":
            _apply_bucket_settings(s3, physical[lid], res.get("Properties", {}))
        if res["Type"] == "AWS::Lambda::Function" and lid in code_dirs:
            config = lam.get_function_configuration(FunctionName=physical[lid])
            functions[lid] = {
                "name": physical[lid],
                "code_dir": code_dirs[lid],
                "handler": res["Properties"]["Handler"],
                "environment": config.get("Environment", {}).get("Variables", {}),
            }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return Stack(stack_name, outputs, physical, functions, left_out, effective)

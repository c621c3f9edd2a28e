"""Unzipped size of every Lambda function plus its layers in a `sam build` output directory.

    python scripts/lambda_sizes.py [BUILD_DIR]      (default .aws-sam/build; exit 1 if over the limit)

Lambda's limit is 250 MB (262,144,000 bytes) unzipped for a function's code plus all its layers.
Sizes are the sum of the files' byte sizes, as Lambda counts them (not disk blocks).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

LIMIT_BYTES = 262_144_000  # 250 MiB, the documented unzipped limit
MB = 1024 * 1024


def tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


@dataclass
class FunctionSize:
    name: str
    code_bytes: int
    layers: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.code_bytes + sum(self.layers.values())


def _load_template(path: Path) -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None:
        raise ValueError(f"cannot parse {path}: {matches}")
    return template


def _ref_name(value: object) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return None


def measure(build_dir: Path) -> list[FunctionSize]:
    """Size of each AWS::Serverless::Function of the built template, with its layers."""
    template = _load_template(build_dir / "template.yaml")
    resources = template.get("Resources", {})
    globals_layers = template.get("Globals", {}).get("Function", {}).get("Layers", []) or []
    layer_bytes: dict[str, int] = {}
    for name, res in resources.items():
        if res.get("Type") == "AWS::Serverless::LayerVersion":
            layer_bytes[name] = tree_bytes(build_dir / str(res["Properties"]["ContentUri"]))
    out = []
    for name, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties", {})
        fs = FunctionSize(name, tree_bytes(build_dir / str(props.get("CodeUri", name))))
        for ref in [*globals_layers, *(props.get("Layers") or [])]:
            layer = _ref_name(ref)
            if layer is None:
                raise ValueError(f"{name}: layer {ref!r} is not a !Ref to a layer of this template")
            fs.layers[layer] = layer_bytes[layer]
        out.append(fs)
    return out


def report(sizes: list[FunctionSize]) -> str:
    lines = [f"{'function':<20} {'code MB':>8}  {'layers (MB)':<60} {'total MB':>9}  limit 250 MB"]
    for fs in sizes:
        layers = ", ".join(f"{k} {v / MB:.1f}" for k, v in fs.layers.items())
        verdict = "OK" if fs.total <= LIMIT_BYTES else f"OVER by {(fs.total - LIMIT_BYTES) / MB:.1f} MB"
        lines.append(f"{fs.name:<20} {fs.code_bytes / MB:8.1f}  {layers:<60} {fs.total / MB:9.1f}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    build_dir = Path(argv[1] if len(argv) > 1 else ".aws-sam/build")
    sizes = measure(build_dir)
    print(report(sizes))
    return 0 if all(fs.total <= LIMIT_BYTES for fs in sizes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""`sluice ingest` and `sluice infer-spec`: try a file on the laptop before uploading it.

`sluice ingest` runs the very code the ingest Lambda runs (``sluice.ingest.ingest_file``) and writes
the same outputs the Lambda writes to ``curated/<dataset>/<run_id>/``, into a local folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sluice.errors import SluiceError
from sluice.specs import DatasetSpec, load_dataset_spec, load_spec_file


def _spec(dataset: str | None, spec_file: Path | None) -> DatasetSpec:
    if spec_file is not None:
        spec = load_spec_file(spec_file)
        if not isinstance(spec, DatasetSpec):
            raise SluiceError(f"{spec_file} is a model spec; --spec takes a dataset spec (with columns)")
        return spec
    return load_dataset_spec(dataset or "")


def ingest_command(path: Path, dataset: str | None, spec_file: Path | None, out: Path) -> int:
    """Exit 0 when the file is accepted; else 1 with a one-line reason on stderr."""
    from sluice.ingest import ingest_file

    try:
        spec = _spec(dataset, spec_file)
        out.mkdir(parents=True, exist_ok=True)
        outcome = ingest_file(path, spec, out)
    except SluiceError as exc:
        print(f"rejected: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    q = outcome.quality
    fmt = q.get("format", {})
    print(
        f"accepted {path.name} as {spec.name}: {q['rows_read']} rows read, {q['rows_clean']} clean, "
        f"{q['rows_quarantined']} quarantined ({fmt.get('encoding')}, delimiter {fmt.get('delimiter')!r}, "
        f"header {fmt.get('header')}); outputs in {out}"
    )
    return 0


def infer_spec_command(path: Path, name: str | None) -> int:
    from sluice.ingest.infer import infer_spec

    try:
        spec = infer_spec(path, name=name or _default_name(path))
    except SluiceError as exc:
        print(f"cannot infer a spec: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    sys.stdout.write(spec.to_yaml())
    return 0


def _default_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    return "".join(c if c.isalnum() else "-" for c in stem.lower()).strip("-") or "dataset"

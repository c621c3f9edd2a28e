"""A drift report (``sluice.monitoring.drift.compare``) as one self-contained HTML page.

No external resource (no script, stylesheet, font or image link): inline CSS and inline SVG bars.
Every value taken from the report - column names, category values, context - is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

LABEL_CHARS = 32
BAR_WIDTH = 300
ROW_HEIGHT = 18

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.none { background: #e6f4ea; }
.warn { background: #fff4ce; }
.alert { background: #fbd5d5; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
svg text { font-size: 12px; }
"""
_REFERENCE_FILL = "#9aa5b1"
_CURRENT_FILL = "#d9480f"


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _num(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.1%}"


def _p(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """``rows`` hold HTML already escaped; ``classes``: one CSS class per row (optional)."""
    head = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="num">{_e(text)}</td>' if numeric else f"<td>{_e(text)}</td>"


def _summary(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    rows = [
        ("Captured rows", str(s["rows"])),
        ("Reference rows", str(s.get("reference_rows", "-"))),
        ("Drift detected", "yes" if s["drift_detected"] else "no"),
        ("Severity", s["severity"]),
        ("Drifted features", ", ".join(s["drifted_features"]) or "none"),
        ("Prediction drift", "yes" if s.get("prediction_drifted") else "no"),
        ("Largest PSI", _num(s["max_psi"])),
    ]
    if s["insufficient_data"]:
        rows.append(("Insufficient data", s.get("note", "yes")))
    rows += [(f"Context: {k}", str(v)) for k, v in report.get("context", {}).items()]
    classes = [s["severity"] if k == "Severity" else "" for k, _ in rows]
    return _table([], [[_td(k), _td(v)] for k, v in rows], classes)


def _new_categories(f: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{c['value']} ({c['count']})" for c in f.get("new_categories") or [])
    # the reference listed only its top values: these may be rare training values
    return f"not in the training top: {shown}" if shown and f.get("new_categories_exact") is False else shown


def _feature_row(f: Mapping[str, Any]) -> list[str]:
    missing = f["missing_rate"]
    return [
        _td(f["name"]),
        _td(f["kind"]),
        _td(f["severity"]),
        _td(_num(f["psi"]), True),
        _td(f["test"] or "-"),
        _td(_num(f["statistic"]), True),
        _td(_p(f["p_value"]), True),
        _td(f"{_pct(missing['reference'])} -> {_pct(missing['current'])}"),
        _td(_pct(f["out_of_range_rate"]), True),
        _td(_new_categories(f)),
        "<td>" + "<br>".join(_e(r) for r in f["reasons"]) + "</td>",
    ]


_FEATURE_HEADERS = (
    "Feature",
    "Kind",
    "Severity",
    "PSI",
    "Test",
    "Statistic",
    "p-value",
    "Missing (training -> now)",
    "Out of range",
    "New categories (rows)",
    "Reasons",
)


def _bars(bins: Mapping[str, Any], title: str) -> str:
    """Horizontal bars, reference above current, one pair per bucket, as inline SVG."""
    labels: list[str] = bins["labels"]
    ref, cur = bins["reference"], bins["current"]
    top = max([*ref, *cur, 1e-12])
    label_w = 8 * LABEL_CHARS
    height = ROW_HEIGHT * len(labels) + 4
    parts = [
        f'<svg role="img" width="{label_w + BAR_WIDTH + 60}" height="{height}"><title>{_e(title)}</title>'
    ]
    for i, (label, r, c) in enumerate(zip(labels, ref, cur, strict=True)):
        y = i * ROW_HEIGHT + 2
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "\u2026"
        wr, wc = BAR_WIDTH * r / top, BAR_WIDTH * c / top
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 12}" text-anchor="end">{_e(short)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{wr:.1f}" height="7" fill="{_REFERENCE_FILL}"/>'
            f'<rect x="{label_w}" y="{y + 8}" width="{wc:.1f}" height="7" fill="{_CURRENT_FILL}"/>'
            f'<text x="{label_w + max(wr, wc) + 4:.1f}" y="{y + 12}">{_e(f"{r:.1%} / {c:.1%}")}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _charts(records: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for f in records:
        if not f["drifted"] or not f.get("bins"):
            continue
        title = f"{f['name']}: share per bucket, training vs captured"
        out.append(f"<h3>{_e(f['name'])}</h3>{_bars(f['bins'], title)}")
    if not out:
        return ""
    legend = (
        f'<p class="legend"><span style="background:{_REFERENCE_FILL}"></span>training data'
        f'<span style="background:{_CURRENT_FILL}"></span>captured requests</p>'
    )
    return "<h2>Distributions of the drifted columns</h2>" + legend + "".join(out)


def render_drift_report(report: Mapping[str, Any], title: str = "Drift report") -> str:
    """The report as an HTML page (a str): summary, one row per feature coloured by severity, the
    prediction section when present, and reference-vs-current bars for whatever drifted."""
    features = report["features"]
    prediction = report.get("prediction")
    sections = [
        "<h2>Summary</h2>",
        _summary(report),
        "<h2>Features</h2>",
        _table(_FEATURE_HEADERS, [_feature_row(f) for f in features], [f["severity"] for f in features]),
    ]
    if prediction:
        sections += [
            "<h2>Predictions</h2>",
            _table(_FEATURE_HEADERS, [_feature_row(prediction)], [prediction["severity"]]),
        ]
    sections.append(_charts([*features, *([prediction] if prediction else [])]))
    thresholds = report.get("thresholds", {})
    sections += [
        "<h2>Thresholds</h2>",
        _table(["Threshold", "Value"], [[_td(k), _td(str(v))] for k, v in thresholds.items()]),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n"
    )

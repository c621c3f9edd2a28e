"""A model version's report (``models/<model>/v<N>/report.html``): one self-contained HTML page.

``render_report(metadata)`` draws the metadata document of a version (the same numbers as
``metadata.json``; ``diagnostics`` from ``training.diagnostics``): summary and status, the selection
metric against the baseline and the champion, gates, candidates, all metrics, the task's charts,
feature importance, the data profile and the lineage. Every section but the summary and the metrics
is optional and left out when its data is absent.

The page works offline and loads or runs nothing: no script, no external style, font or image (a
Content-Security-Policy forbids them too); charts are inline SVG drawn here, with the standard library
only. Every text that comes from data (model names, labels, feature names, details) is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

BLUE, ORANGE, GREY, GREEN, RED = "#2563eb", "#ea580c", "#6b7280", "#16a34a", "#dc2626"
# badge colour of the status words (model status, candidate status, gate result)
STATUS_CLASS = {
    "champion": "good",
    "selected": "good",
    "passed": "good",
    "rejected": "bad",
    "dropped": "bad",
    "failed": "bad",
}
# nothing may load or run: no script, no external resource; inline styles only
CSP = "default-src 'none'; style-src 'unsafe-inline'"
MAX_BARS = 30  # feature importance bars drawn
MAX_PROFILE_COLUMNS = 200
MAX_PARAMS_CHARS = 20_000

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:0;
background:#f9fafb}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
section{margin-bottom:8px}.muted{color:#6b7280}.meta span{margin-right:14px}
table{border-collapse:collapse;margin:4px 0 8px;background:#fff}
th,td{border:1px solid #e5e7eb;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600;
background:#e5e7eb;color:#374151}.badge.good{background:#dcfce7;color:#166534}
.badge.bad{background:#fee2e2;color:#991b1b}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}.kpi{background:#fff;border:1px solid #e5e7eb;
border-radius:6px;padding:6px 14px;min-width:110px}.kpi b{display:block;font-size:20px}
.charts{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#6b7280;text-align:center}
svg.chart{background:#fff;border:1px solid #e5e7eb;max-width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#374151}
table.cm td{text-align:right;min-width:34px}table.cm td.diag{font-weight:700}
code,pre{font:12px ui-monospace,Menlo,Consolas,monospace}pre{background:#fff;border:1px solid #e5e7eb;
padding:8px;overflow:auto;max-height:320px}
"""


def e(value: Any) -> str:
    """Text for HTML (content or attribute value): every ``<``, ``>``, ``&``, ``"``, ``'`` escaped."""
    return escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A number for display: floats with 4 significant digits, integers in full; ``-`` when absent."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return e(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table; ``headers`` are plain text, row cells are HTML already escaped; ``numeric``: the
    indices of right-aligned columns."""
    head = "".join(f"<th{_num(i, numeric)}>{e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{_num(i, numeric)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _num(index: int, numeric: Sequence[int]) -> str:
    return ' class="num"' if index in numeric else ""


def _badge(text: Any) -> str:
    """A status word as a badge, green or red for the words of ``STATUS_CLASS``, grey otherwise."""
    colour = STATUS_CLASS.get(str(text))
    return (
        f'<span class="badge {colour}">{e(text)}</span>'
        if colour
        else f'<span class="badge">{e(text)}</span>'
    )


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{e(title)}</h2>{body}</section>'


# ------------------------------------------------------------------------------------------- charts


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _span(values: Iterable[float], pad: float = 0.04) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str = "", width: float = 1) -> str:
    """An SVG line segment in pixel coordinates (``dash``: a stroke-dasharray, "" for solid)."""
    extra = (f' stroke-dasharray="{dash}"' if dash else "") + (
        f' stroke-width="{width}"' if width != 1 else ""
    )
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'


@dataclass
class _Plot:
    """Data coordinates [x0, x1] x [y0, y1] mapped into an SVG of ``width`` x ``height`` pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 520
    height: int = 300
    left: int = 62
    right: int = 16
    top: int = 14
    bottom: int = 46

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        inner = self.height - self.top - self.bottom
        return self.height - self.bottom - (value - self.y0) / (self.y1 - self.y0) * inner

    def points(self, xs: Sequence[float], ys: Sequence[float]) -> str:
        return " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in zip(xs, ys, strict=True))

    def axes(
        self,
        x_label: str,
        y_label: str,
        x_ticks: Sequence[tuple[float, str]] | None = None,
        y_ticks: bool = True,
    ) -> str:
        """Grid, tick labels and axis titles (``x_ticks``: positions and labels; default: round
        numbers; ``y_ticks`` False: no horizontal grid nor y labels)."""
        base, right = self.height - self.bottom, self.width - self.right
        out = [
            f'<rect x="{self.left}" y="{self.top}" width="{right - self.left}" '
            f'height="{base - self.top}" fill="none" stroke="#d1d5db"/>'
        ]
        for v in _ticks(self.y0, self.y1) if y_ticks else []:
            y = self.y(v)
            out.append(_line(self.left, y, right, y, "#f3f4f6"))
            out.append(f'<text x="{self.left - 4}" y="{y + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
        ticks = x_ticks if x_ticks is not None else [(v, fmt(v)) for v in _ticks(self.x0, self.x1)]
        for v, label in ticks:
            x = self.x(v)
            out.append(_line(x, base, x, base + 4, "#9ca3af"))
            out.append(f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{label}</text>')
        mid_x, mid_y = (self.left + right) / 2, (self.top + base) / 2
        out.append(f'<text x="{mid_x:.1f}" y="{self.height - 6}" text-anchor="middle">{e(x_label)}</text>')
        out.append(
            f'<text x="14" y="{mid_y:.1f}" text-anchor="middle" transform="rotate(-90 14 {mid_y:.1f})">'
            f"{e(y_label)}</text>"
        )
        return "".join(out)

    def diagonal(self, lo: float, hi: float) -> str:
        """The dashed y = x line from (lo, lo) to (hi, hi)."""
        return _line(self.x(lo), self.y(lo), self.x(hi), self.y(hi), GREY, "4 3")

    def svg(self, title: str, body: str) -> str:
        """The chart as a figure: the SVG and ``title`` as its caption."""
        return (
            f'<figure><svg class="chart" viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" role="img" aria-label="{e(title)}"><title>{e(title)}</title>{body}</svg>'
            f"<figcaption>{e(title)}</figcaption></figure>"
        )


def _legend(plot: _Plot, items: Sequence[tuple[str, str, str]]) -> str:
    """Legend entries (label, colour, dash pattern or "") in the top-left corner."""
    out = []
    for i, (label, colour, dash) in enumerate(items):
        x, y = plot.left + 10, plot.top + 14 + 15 * i
        out.append(_line(x, y - 4, x + 18, y - 4, colour, dash, 2))
        out.append(f'<text x="{x + 24}" y="{y}">{e(label)}</text>')
    return "".join(out)


def _histogram_svg(
    title: str,
    edges: Sequence[float],
    counts: Sequence[int],
    x_label: str,
    colour: str = BLUE,
    marker: tuple[float, str] | None = None,
) -> str:
    """Bars of a histogram (each with its range and count as a tooltip), optionally a vertical marker."""
    lo, hi = edges[0], edges[-1]
    if marker is not None:
        lo, hi = min(lo, marker[0]), max(hi, marker[0])
    plot = _Plot(lo, hi if hi > lo else lo + 1, 0, max([*counts, 1]) * 1.05, height=240)
    bars = []
    for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True):
        if n:
            x, w = plot.x(a), max(plot.x(b) - plot.x(a) - 1, 0.8)
            y = plot.y(n)
            bars.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{plot.y(0) - y:.1f}" '
                f'fill="{colour}" opacity="0.8"><title>{fmt(a)} to {fmt(b)}: {fmt(n)}</title></rect>'
            )
    if marker is not None:
        x = plot.x(marker[0])
        bars.append(_line(x, plot.top, x, plot.y(0), RED, "5 3", 2))
        bars.append(f'<text x="{x + 4:.1f}" y="{plot.top + 12}" fill="{RED}">{e(marker[1])}</text>')
    return plot.svg(title, plot.axes(x_label, "count") + "".join(bars))


def _date_positions(dates: Sequence[str]) -> list[float]:
    """Days since the epoch of ISO dates (naive ones read as UTC)."""
    days = []
    for text in dates:
        stamp = datetime.fromisoformat(str(text))
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        days.append(stamp.timestamp() / 86400)
    return days


def _sparkline(counts: Sequence[int], width: int = 120, height: int = 24) -> str:
    """A tiny bar chart of a histogram's counts (data profile table)."""
    if not counts or max(counts) <= 0:
        return ""
    step, top = width / len(counts), max(counts)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - c / top * height:.1f}" width="{max(step - 1, 0.5):.1f}" '
        f'height="{c / top * height:.1f}" fill="{BLUE}"/>'
        for i, c in enumerate(counts)
        if c
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="histogram">{bars}</svg>'
    )


# ----------------------------------------------------------------------------------------- sections


def _title(metadata: Mapping[str, Any]) -> str:
    version = metadata.get("version")
    return f"{metadata['model']} v{version}" if version is not None else f"{metadata['model']} (unregistered)"


def _summary(metadata: Mapping[str, Any]) -> str:
    """Model, version, task, status and reasons, and the selection metric on the holdout against the
    baseline and the champion."""
    parts = [f"<h1>{e(_title(metadata))}</h1>", '<p class="meta">']
    parts.append(f"<span>task <b>{e(metadata['task'])}</b></span>")
    if metadata.get("status"):
        parts.append(f"<span>status {_badge(metadata['status'])}</span>")
    if metadata.get("created_at"):
        parts.append(f'<span class="muted">created {e(metadata["created_at"])}</span>')
    parts.append("</p>")
    reasons = metadata.get("reasons") or []
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in reasons) + "</ul>")
    metric, metrics = metadata.get("metric"), metadata.get("metrics") or {}
    if metric:
        kpis = [
            f'<div class="kpi"><span class="muted">{e(kind)}</span><b>{fmt(metrics[kind][metric])}</b></div>'
            for kind in ("holdout", "baseline", "champion", "cv")
            if metric in (metrics.get(kind) or {})
        ]
        parts.append(f"<h3>selection metric <code>{e(metric)}</code></h3>")
        parts.append(f'<div class="kpis">{"".join(kpis)}</div>' if kpis else '<p class="muted">no value</p>')
    return "<header>" + "".join(parts) + "</header>"


def _metrics_section(metadata: Mapping[str, Any]) -> str:
    """Every metric name (selection metric first) by split: cv, holdout, baseline, champion."""
    metrics = metadata.get("metrics") or {}
    kinds = [k for k in ("cv", "holdout", "baseline", "champion") if metrics.get(k)]
    kinds += [k for k in metrics if k not in kinds and isinstance(metrics[k], Mapping) and metrics[k]]
    names: list[str] = [metadata["metric"]] if metadata.get("metric") else []
    for kind in kinds:
        names += [n for n in metrics[kind] if n not in names]
    if not kinds:
        return _section("Metrics", '<p class="muted">no metrics</p>', "metrics")
    rows = [[f"<code>{e(n)}</code>", *(fmt(metrics[k].get(n)) for k in kinds)] for n in names]
    return _section("Metrics", _table(["metric", *kinds], rows, range(1, len(kinds) + 1)), "metrics")


def _gates_section(gates: Sequence[Mapping[str, Any]]) -> str:
    passed = sum(bool(g.get("passed")) for g in gates)
    rows = [
        [e(g.get("gate", "")), _badge("passed" if g.get("passed") else "failed"), e(g.get("detail") or "")]
        for g in gates
    ]
    body = f"<p>{passed} of {len(gates)} passed</p>" + _table(["gate", "result", "detail"], rows)
    return _section("Gates", body, "gates")


def _candidates_section(candidates: Sequence[Mapping[str, Any]], metric: str | None) -> str:
    names: list[str] = [metric] if metric else []
    for c in candidates:
        names += [n for n in (c.get("cv") or {}) if n not in names]
    rows = [
        [
            e(c.get("name", "")),
            _badge(c.get("status", "")),
            *(fmt((c.get("cv") or {}).get(n)) for n in names),
            fmt(c.get("fit_s")),
            e(c.get("reason") or ""),
        ]
        for c in candidates
    ]
    headers = ["candidate", "status", *(f"cv {n}" for n in names), "fit s", "reason"]
    return _section("Candidates", _table(headers, rows, range(2, len(names) + 3)), "candidates")


def _confusion_html(cm: Mapping[str, Any]) -> str:
    """A heatmap table (rows: actual, columns: predicted), shaded by the share of the row."""
    labels, matrix = cm["labels"], cm["matrix"]
    head = "".join(f"<th>{e(label)}</th>" for label in labels)
    rows = []
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(row) or 1
        cells = []
        for j, n in enumerate(row):
            share = n / total
            colour = "#fff" if share > 0.6 else "#111827"
            css = ' class="diag"' if i == j else ""
            cells.append(
                f'<td{css} style="background:rgba(37,99,235,{share:.3f});color:{colour}" '
                f'title="{fmt(share * 100)}% of actual">{fmt(n)}</td>'
            )
        rows.append(f'<tr><th>{e(label)}</th>{"".join(cells)}<td class="num">{fmt(sum(row))}</td></tr>')
    return (
        '<table class="cm"><thead><tr><th>actual \\ predicted</th>'
        f"{head}<th>total</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _calibration_svg(calibration: Mapping[str, Any]) -> str:
    """Reliability diagram: observed frequency against mean predicted probability, with the diagonal."""
    bins = calibration.get("bins") or []
    plot = _Plot(0.0, 1.0, 0.0, 1.0, width=340, height=320)
    top = max([b["count"] for b in bins] + [1])
    body = [plot.diagonal(0.0, 1.0)]
    xs, ys = [b["mean_predicted"] for b in bins], [b["observed"] for b in bins]
    if bins:
        body.append(
            f'<polyline points="{plot.points(xs, ys)}" fill="none" stroke="{BLUE}" stroke-width="2"/>'
        )
    for b in bins:
        r = 2.5 + 4 * math.sqrt(b["count"] / top)
        body.append(
            f'<circle cx="{plot.x(b["mean_predicted"]):.1f}" cy="{plot.y(b["observed"]):.1f}" '
            f'r="{r:.1f}" fill="{BLUE}"><title>{fmt(b["lower"])} to {fmt(b["upper"])}: '
            f"n={fmt(b['count'])}, predicted {fmt(b['mean_predicted'])}, observed "
            f"{fmt(b['observed'])}</title></circle>"
        )
    kind = calibration.get("kind")
    x_label = "mean predicted probability" if kind == "positive_class" else "mean top-class confidence"
    y_label = "observed frequency" if kind == "positive_class" else "accuracy"
    return plot.svg(f"calibration ({kind})", plot.axes(x_label, y_label) + "".join(body))


def _classification_html(diagnostics: Mapping[str, Any]) -> str:
    """Confusion matrix, per-class table and calibration chart, those present."""
    parts = []
    if diagnostics.get("confusion_matrix"):
        parts.append("<h3>Confusion matrix</h3>" + _confusion_html(diagnostics["confusion_matrix"]))
    if diagnostics.get("per_class"):
        rows = [
            [e(c["label"]), fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), fmt(c["support"])]
            for c in diagnostics["per_class"]
        ]
        parts.append(
            "<h3>Per class</h3>"
            + _table(["label", "precision", "recall", "f1", "support"], rows, (1, 2, 3, 4))
        )
    calibration = diagnostics.get("calibration")
    if calibration:
        rows = [
            [
                f"{fmt(b['lower'])} to {fmt(b['upper'])}",
                fmt(b["mean_predicted"]),
                fmt(b["observed"]),
                fmt(b["count"]),
            ]
            for b in calibration.get("bins") or []
        ]
        table = _table(["bin", "mean predicted", "observed", "count"], rows, (1, 2, 3))
        parts.append(f'<h3>Calibration</h3><div class="charts">{_calibration_svg(calibration)}{table}</div>')
    return "".join(parts)


def _residuals_html(residuals: Mapping[str, Any]) -> str:
    """Actual against predicted (with y = x) and the histogram of residuals."""
    actual, predicted = residuals.get("actual") or [], residuals.get("predicted") or []
    parts = []
    if actual:
        lo, hi = _span([*actual, *predicted])
        plot = _Plot(lo, hi, lo, hi, width=400, height=380)
        body = [plot.diagonal(lo, hi)]
        body += [
            f'<circle cx="{plot.x(a):.1f}" cy="{plot.y(p):.1f}" r="2.2" fill="{BLUE}" fill-opacity="0.45"/>'
            for a, p in zip(actual, predicted, strict=True)
        ]
        shown = f"{fmt(len(actual))} of {fmt(residuals['n'])} points" if "n" in residuals else "points"
        parts.append(
            plot.svg(f"actual vs predicted ({shown})", plot.axes("actual", "predicted") + "".join(body))
        )
    histogram = residuals.get("histogram")
    if histogram:
        parts.append(
            _histogram_svg(
                "residuals (actual - predicted)",
                histogram["edges"],
                histogram["counts"],
                "actual - predicted",
                marker=(0.0, "0"),
            )
        )
    return f'<div class="charts">{"".join(parts)}</div>'


def _scores_html(scores: Mapping[str, Any]) -> str:
    """Score histograms (one per true label when known) with the threshold, and the flag rate."""
    histogram, threshold = scores["histogram"], scores["threshold"]
    marker = (threshold, f"threshold {fmt(threshold)}")
    series = [
        ("normal rows", "counts_normal", BLUE),
        ("anomalies", "counts_anomaly", ORANGE),
        ("all rows", "counts", BLUE),
    ]
    charts = [
        _histogram_svg(
            f"anomaly score: {label}", histogram["edges"], histogram[key], "anomaly score", colour, marker
        )
        for label, key, colour in series
        if key in histogram
    ]
    rate = f"<p>flagged (score &gt; threshold): <b>{fmt(scores.get('flag_rate', 0) * 100)}%</b> of rows</p>"
    return rate + f'<div class="charts">{"".join(charts)}</div>'


def _forecast_svg(forecast: Mapping[str, Any]) -> str:
    """History, holdout actuals, forecasts and the prediction interval as a band."""
    history, holdout = forecast.get("history") or {}, forecast.get("holdout") or {}
    h_dates, dates = history.get("dates") or [], holdout.get("dates") or []
    try:
        h_x, x = _date_positions(h_dates), _date_positions(dates)
    except ValueError:  # not ISO dates: plot by position
        h_x, x = list(range(len(h_dates))), list(range(len(h_dates), len(h_dates) + len(dates)))
    series = [
        history.get("values") or [],
        *(holdout.get(k) or [] for k in ("actual", "predicted", "lower", "upper")),
    ]
    y0, y1 = _span([v for s in series for v in s])
    x0, x1 = _span([*h_x, *x], pad=0.01)
    plot = _Plot(x0, x1, y0, y1, width=900, height=320, right=40)
    all_x, all_dates = [*h_x, *x], [*h_dates, *dates]
    picks = sorted({round(i * (len(all_x) - 1) / 5) for i in range(6)}) if all_x else []
    ticks = [(all_x[i], e(all_dates[i])) for i in picks]
    body, legend = [], []
    if holdout.get("lower") and holdout.get("upper"):
        band = plot.points([*x, *reversed(x)], [*holdout["lower"], *reversed(holdout["upper"])])
        body.append(f'<polygon points="{band}" fill="{ORANGE}" fill-opacity="0.18" stroke="none"/>')
        legend.append(("prediction interval", "#fcd9c0", ""))
    lines = [
        ("history", h_x, history.get("values"), GREY, ""),
        ("actual", x, holdout.get("actual"), "#111827", ""),
        ("forecast", x, holdout.get("predicted"), ORANGE, "5 3"),
    ]
    for label, xs, ys, colour, dash in lines:
        if xs and ys:
            stroke = f' stroke-dasharray="{dash}"' if dash else ""
            body.append(
                f'<polyline points="{plot.points(xs, ys)}" fill="none" stroke="{colour}" '
                f'stroke-width="1.6"{stroke}/>'
            )
            legend.append((label, colour, dash))
    return plot.svg("forecast", plot.axes("date", "value", ticks) + "".join(body) + _legend(plot, legend))


def _importance_svg(items: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars of permutation importance with +- one standard deviation whiskers."""
    shown = list(items)[:MAX_BARS]
    ends = [i["importance"] + s * i.get("std", 0.0) for i in shown for s in (-1, 1)]
    lo, hi = _span([0.0, *ends], pad=0.02)
    plot = _Plot(lo, hi, 0, len(shown), width=640, height=40 + 22 * len(shown), left=190, bottom=34, top=6)
    body = [_line(plot.x(0), plot.top, plot.x(0), plot.y(0), GREY)]
    for row, item in enumerate(shown):
        name, value, std = str(item["feature"]), item["importance"], item.get("std", 0.0)
        y = plot.y(len(shown) - row - 0.5)
        a, b = sorted((plot.x(0), plot.x(value)))
        label = name if len(name) <= 28 else name[:27] + "\u2026"
        body.append(
            f'<text x="{plot.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{e(label)}<title>{e(name)}</title></text>"
        )
        body.append(
            f'<rect x="{a:.1f}" y="{y - 8:.1f}" width="{max(b - a, 0.5):.1f}" height="16" fill="{BLUE}">'
            f"<title>{e(name)}: {fmt(value)} \u00b1 {fmt(std)}</title></rect>"
        )
        if std:
            body.append(_line(plot.x(value - std), y, plot.x(value + std), y, "#111827"))
    axes = plot.axes("mean drop in score when permuted", "", y_ticks=False)
    return plot.svg("permutation importance", axes + "".join(body))


def _diagnostics_sections(diagnostics: Mapping[str, Any]) -> list[str]:
    out = []
    classification = _classification_html(diagnostics)
    if classification:
        out.append(_section("Classification diagnostics", classification, "classification"))
    if diagnostics.get("residuals"):
        out.append(_section("Residuals", _residuals_html(diagnostics["residuals"]), "residuals"))
    if diagnostics.get("scores"):
        out.append(_section("Anomaly scores", _scores_html(diagnostics["scores"]), "scores"))
    if diagnostics.get("forecast"):
        out.append(_section("Forecast", _forecast_svg(diagnostics["forecast"]), "forecast"))
    importance = diagnostics.get("feature_importance")
    if importance:
        note = (
            f'<p class="muted">top {MAX_BARS} of {len(importance)}</p>' if len(importance) > MAX_BARS else ""
        )
        out.append(_section("Feature importance", note + _importance_svg(importance), "importance"))
    return out


def _profile_rows(profile: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, statistics) of each column: ``columns`` as a mapping (profile.json) or a list of dicts
    with a ``name``."""
    columns = profile.get("columns") or {}
    if isinstance(columns, Mapping):
        return [(str(name), stats) for name, stats in columns.items() if isinstance(stats, Mapping)]
    return [(str(c.get("name", "")), c) for c in columns if isinstance(c, Mapping)]


def _null_rate(stats: Mapping[str, Any]) -> float | None:
    if "null_rate" in stats:
        return stats["null_rate"]
    count, nulls = stats.get("count"), stats.get("nulls")
    if count is None or nulls is None or count + nulls == 0:
        return None
    return nulls / (count + nulls)


def _distribution(stats: Mapping[str, Any]) -> str:
    """A sparkline of the histogram, the top values or the month count, whichever the column has."""
    histogram = stats.get("histogram") or (stats.get("length") or {}).get("histogram") or {}
    if histogram.get("counts"):
        return _sparkline(histogram["counts"])
    if stats.get("top"):
        return ", ".join(f"{e(t.get('value'))} ({fmt(t.get('count'))})" for t in stats["top"][:3])
    if stats.get("months"):
        return f"{fmt(len(stats['months']))} months"
    return ""


def _profile_section(profile: Mapping[str, Any]) -> str:
    """Per column: type, null rate, distinct count, min/max/mean where present, distribution."""
    columns = _profile_rows(profile)
    rows = []
    for name, stats in columns[:MAX_PROFILE_COLUMNS]:
        distinct = stats.get("distinct")
        approx = "\u2248" if stats.get("distinct_exact") is False else ""
        rate = _null_rate(stats)
        rows.append(
            [
                e(name),
                e(stats.get("type") or stats.get("kind") or ""),
                fmt(rate * 100) + "%" if rate is not None else fmt(None),
                approx + fmt(distinct) if distinct is not None else "",
                *(fmt(stats.get(k)) if k in stats else "" for k in ("min", "max", "mean")),
                _distribution(stats),
            ]
        )
    intro = f"<p>{fmt(profile['rows'])} rows</p>" if isinstance(profile.get("rows"), int) else ""
    if len(columns) > MAX_PROFILE_COLUMNS:
        intro += f'<p class="muted">first {MAX_PROFILE_COLUMNS} of {len(columns)} columns</p>'
    headers = ["column", "type", "null rate", "distinct", "min", "max", "mean", "distribution"]
    return _section("Data profile", intro + _table(headers, rows, (2, 3, 4, 5, 6)), "profile")


def _pairs(items: Mapping[str, Any]) -> str:
    """A two-column table of names and values (numbers formatted, other values as code)."""
    rows = [
        [e(k), fmt(v) if isinstance(v, int | float) else f"<code>{e(v)}</code>"] for k, v in items.items()
    ]
    return _table([], rows)


def _lineage_section(metadata: Mapping[str, Any]) -> str:
    """Rows, source object, artifact hash, library versions and parameters: what reproduces the version."""
    parts = []
    facts = {k: metadata[k] for k in ("created_at", "onnx_sha256") if metadata.get(k)}
    for split, n in (metadata.get("rows") or {}).items():
        facts[f"rows {split}"] = n
    if facts:
        parts.append(_pairs(facts))
    if metadata.get("source"):
        parts.append("<h3>Source</h3>" + _pairs(metadata["source"]))
    if metadata.get("library_versions"):
        parts.append("<h3>Libraries</h3>" + _pairs(metadata["library_versions"]))
    if metadata.get("params"):
        text = json.dumps(metadata["params"], indent=1, sort_keys=True, default=str)
        if len(text) > MAX_PARAMS_CHARS:
            text = text[:MAX_PARAMS_CHARS] + "\n..."
        parts.append(f"<h3>Parameters</h3><pre>{e(text)}</pre>")
    return _section("Lineage", "".join(parts), "lineage") if parts else ""


def render_report(metadata: Mapping[str, Any]) -> str:
    """The complete HTML5 page of a model version from its metadata document (see the module doc).

    Requires ``model``, ``task`` and ``metrics``; every other section is drawn only when present.
    """
    missing = [k for k in ("model", "task", "metrics") if k not in metadata]
    if missing:
        raise ValueError(f"metadata: missing {', '.join(missing)}")
    body = [_summary(metadata)]
    if metadata.get("gates"):
        body.append(_gates_section(metadata["gates"]))
    body.append(_metrics_section(metadata))
    if metadata.get("candidates"):
        body.append(_candidates_section(metadata["candidates"], metadata.get("metric")))
    body += _diagnostics_sections(metadata.get("diagnostics") or {})
    if metadata.get("data_profile"):
        body.append(_profile_section(metadata["data_profile"]))
    body.append(_lineage_section(metadata))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(_title(metadata))}: model report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )

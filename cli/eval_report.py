"""How `semsql eval` shows its results: a table, JSON, and an HTML page with a bar chart (an
SVG written here: no plotting library)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from semsql.eval_queries import QueryReport
from semsql.evaluation import METRICS

# One colour per signal, readable on white and by most colour-blind readers (Okabe-Ito).
COLOURS = {
    "image": "#E69F00",
    "text": "#56B4E9",
    "keyword": "#009E73",
    "fused": "#0072B2",
    "custom": "#CC79A7",
}


def signal_title(signal: str, custom_weights: Mapping[str, float] | None) -> str:
    if signal == "custom" and custom_weights:
        return "fused " + ",".join(f"{k}={v:g}" for k, v in custom_weights.items())
    return signal


def summary_table(
    summary: Mapping[str, Mapping[str, float]], count: int, k: int | None,
    custom_weights: Mapping[str, float] | None,
) -> str:  # fmt: skip
    titles = {s: signal_title(s, custom_weights) for s in summary}
    width = max([6, *(len(t) for t in titles.values())])
    recall = f"recall@{k}" if k else "recall@k"
    names = [recall if m == "recall@k" else m for m in METRICS]
    lines = [f"{count} queries", f"{'signal':<{width}}  " + "  ".join(f"{n:>9}" for n in names)]
    for signal, means in summary.items():
        values = "  ".join(f"{means[m]:>9.3f}" for m in METRICS)
        lines.append(f"{titles[signal]:<{width}}  {values}")
    return "\n".join(lines)


def per_query_table(reports: Sequence[QueryReport], signals: Sequence[str]) -> str:
    head = "  ".join(f"{s[:7] + ' P@10':>12}  {'MRR':>5}" for s in signals)
    lines = [f"{'#':>4}  {head}  query"]
    for number, report in enumerate(reports, start=1):
        cells = "  ".join(
            f"{report.signals[s].metrics['P@10']:>12.2f}  {report.signals[s].metrics['MRR']:>5.2f}"
            for s in signals
        )
        label = report.query.label
        lines.append(f"{number:>4}  {cells}  {label[:60] + ('…' if len(label) > 60 else '')}")
    return "\n".join(lines)


def as_json(
    reports: Sequence[QueryReport], summary: Mapping[str, Mapping[str, float]],
    unavailable: Mapping[str, str], custom_weights: Mapping[str, float] | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "queries": len(reports),
        "signals": list(summary),
        "weights": dict(custom_weights) if custom_weights else None,
        "unavailable": dict(unavailable),
        "summary": {s: dict(m) for s, m in summary.items()},
        "per_query": [
            {
                "query": r.query.query,
                "article": r.query.article,
                "line": r.query.line,
                "relevant": sorted(r.query.relevant),
                "k": r.query.k,
                "signals": {
                    s: {"metrics": res.metrics, "ranking": res.ranking}
                    for s, res in r.signals.items()
                },
            }
            for r in reports
        ],
    }


def bar_chart_svg(
    summary: Mapping[str, Mapping[str, float]], custom_weights: Mapping[str, float] | None
) -> str:
    """Grouped bars: one group per metric, one bar per signal, values 0 to 1 with their
    numbers on top, a legend."""
    signals = list(summary)
    group, bar, left, top, height = 40 + 26 * len(signals), 22, 50, 40, 260
    width = left + group * len(METRICS) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 70}" '
        'role="img" aria-label="retrieval metrics per signal" font-family="sans-serif" '
        'font-size="12">'
    ]
    for tick in range(0, 11, 2):
        y = top + height - tick / 10 * height
        parts.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick / 10:.1f}</text>'
        )
    for g, metric in enumerate(METRICS):
        x0 = left + g * group + 20
        for b, signal in enumerate(signals):
            value = summary[signal][metric]
            h = value * height
            x = x0 + b * (bar + 4)
            parts.append(
                f'<rect x="{x}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" '
                f'fill="{COLOURS[signal]}"><title>{html.escape(signal)} {metric}: {value:.3f}'
                f"</title></rect>"
                f'<text x="{x + bar / 2}" y="{top + height - h - 4:.1f}" text-anchor="middle" '
                f'font-size="10">{value:.2f}</text>'
            )
        parts.append(
            f'<text x="{x0 + len(signals) * (bar + 4) / 2}" y="{top + height + 18}" '
            f'text-anchor="middle" font-weight="bold">{metric}</text>'
        )
    for b, signal in enumerate(signals):
        x = left + b * 200
        title = html.escape(signal_title(signal, custom_weights))
        parts.append(
            f'<rect x="{x}" y="{top + height + 36}" width="14" height="14" '
            f'fill="{COLOURS[signal]}"/>'
            f'<text x="{x + 20}" y="{top + height + 48}">{title}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_page(
    title: str, reports: Sequence[QueryReport], summary: Mapping[str, Mapping[str, float]],
    unavailable: Mapping[str, str], custom_weights: Mapping[str, float] | None,
) -> str:  # fmt: skip
    signals = list(summary)
    notes = "".join(
        f"<li>{html.escape(s)} left out: {html.escape(why)}</li>" for s, why in unavailable.items()
    )
    head = "".join(f"<th>{html.escape(signal_title(s, custom_weights))}<br>P@10 · MRR</th>"
                   for s in signals)  # fmt: skip
    rows = []
    for number, report in enumerate(reports, start=1):
        cells = "".join(
            f"<td>{report.signals[s].metrics['P@10']:.2f} · "
            f"{report.signals[s].metrics['MRR']:.2f}</td>"
            for s in signals
        )
        rows.append(f"<tr><td>{number}</td>{cells}<td>{html.escape(report.query.label)}</td></tr>")
    summary_rows = "".join(
        f"<tr><th>{html.escape(signal_title(s, custom_weights))}</th>"
        + "".join(f"<td>{summary[s][m]:.3f}</td>" for m in METRICS)
        + "</tr>"
        for s in signals
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:last-child{{text-align:left}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{len(reports)} queries; each signal alone (the other weights 0) and fused.</p>
<ul>{notes}</ul>
{bar_chart_svg(summary, custom_weights)}
<h2>Means</h2>
<table><tr><th>signal</th>{"".join(f"<th>{m}</th>" for m in METRICS)}</tr>{summary_rows}</table>
<h2>Per query</h2>
<table><tr><th>#</th>{head}<th>query</th></tr>{"".join(rows)}</table>
</body></html>
"""

"""Write reports/audit.json, audit.md (plots as files beside it) and audit.html (one file, plots
embedded as base64 PNG) into the dataset root, each atomically."""

from __future__ import annotations

import base64
import html
import json

from vipo_build.audit.model import AuditReport
from vipo_build.audit.plots import Plot
from vipo_build.audit.tables import TextTable, comparison_table, run_tables
from vipo_build.layout import PLOTS_DIR, REPORTS_DIR
from vipo_build.runtime.storage import Storage



def verdict(report: AuditReport) -> str:
    if report.passed:
        return f"PASS: every category and every shard's mix within ±{report.tolerance_pct:g} pp of the plan"
    return f"FAIL: {len(report.offenders)} offender(s) beyond ±{report.tolerance_pct:g} pp or inconsistent"


def tables(report: AuditReport) -> list[TextTable]:
    found = run_tables(report.run, report)
    if report.compare is not None:
        found = [comparison_table(report), *found, *run_tables(report.compare, report)]
    return found


# Markdown ----------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(table: TextTable) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(map(_md_cell, table.header)) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for i, row in enumerate(table.rows):
        flag = i < len(table.flagged) and table.flagged[i]
        cells = [f"**{_md_cell(c)}**" if flag else _md_cell(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(report: AuditReport, plots: list[Plot]) -> str:
    parts = [
        f"# Audit of {report.run.name}", "",
        f"- root: `{report.run.root}`",
        *([f"- compared with: `{report.compare.root}`"] if report.compare else []),
        f"- tolerance: ±{report.tolerance_pct:g} percentage points of share",
        f"- vipo-build {report.version}", "",
        f"**{verdict(report)}**", "",
        "## Offenders", "",
        *([f"- {o.message} ({o.root})" for o in report.offenders] or ["None."]), "",
        "## Tables", "",
        *(markdown_table(t) for t in tables(report)),
        "## Plots", "",
        *(f"### {p.title}\n\n![{p.title}](plots/{p.name}.png)\n" for p in plots),
    ]
    return "\n".join(parts)


# HTML --------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.off td { background: #fde0dc; font-weight: bold; }
.pass { color: #1a7f37; } .fail { color: #b42318; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def html_table(table: TextTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        flag = i < len(table.flagged) and table.flagged[i]
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        rows.append(f'<tr class="off">{cells}</tr>' if flag else f"<tr>{cells}</tr>")
    return f"<h3>{html.escape(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_plot(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode()
    title = html.escape(plot.title)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{title}"><figcaption>{title}</figcaption></figure>'


def html_page(report: AuditReport, plots: list[Plot]) -> str:
    e = html.escape
    offenders = "".join(f"<li>{e(o.message)} <small>({e(o.root)})</small></li>" for o in report.offenders)
    compared = f"<p>compared with <code>{e(report.compare.root)}</code></p>" if report.compare else ""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Audit of {e(report.run.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Audit of {e(report.run.name)}</h1>",
        f"<p>root <code>{e(report.run.root)}</code>; tolerance ±{report.tolerance_pct:g} percentage points of share; "
        f"vipo-build {e(report.version)}</p>{compared}",
        f'<p class="{"pass" if report.passed else "fail"}"><strong>{e(verdict(report))}</strong></p>',
        "<h2>Offenders</h2>", f"<ul>{offenders}</ul>" if offenders else "<p>None.</p>",
        "<h2>Tables</h2>", *(html_table(t) for t in tables(report)),
        "<h2>Plots</h2>", *(html_plot(p) for p in plots),
        "</body></html>",
    ])


def write_reports(storage: Storage, report: AuditReport, plots: list[Plot]) -> list[str]:
    """Write every report file; returns their paths relative to the root. The plots go first, so
    the Markdown that links them is never there without them."""
    files = {f"{PLOTS_DIR}/{p.name}.png": p.png for p in plots}
    files[f"{REPORTS_DIR}/audit.md"] = markdown(report, plots).encode()
    files[f"{REPORTS_DIR}/audit.html"] = html_page(report, plots).encode()
    files[f"{REPORTS_DIR}/audit.json"] = (json.dumps(report.model_dump(mode="json"), indent=1) + "\n").encode()
    for rel, data in files.items():
        storage.write_bytes(rel, data)
    return list(files)

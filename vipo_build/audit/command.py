"""`vipo-build audit ROOT [--tolerance PCT] [--compare OTHER_ROOT]`: prove the committed shards
hold the planned category mix, and report what they contain."""

from __future__ import annotations

import posixpath

from rich.console import Console

from vipo_build import __version__
from vipo_build.audit.check import offenders
from vipo_build.audit.collect import read_root
from vipo_build.audit.model import AuditReport
from vipo_build.audit.plots import render
from vipo_build.audit.report import write_reports
from vipo_build.audit.stats import compare_categories, run_audit
from vipo_build.audit.terminal import show
from vipo_build.errors import VipoError
from vipo_build.layout import REPORTS_DIR


def audit(root: str, tolerance_pct: float, compare: str | None, console: Console) -> int:
    """Audit ROOT (and COMPARE beside it); writes ROOT/reports/; returns the exit code: 0 when
    every category and every shard's mix is within the tolerance and every commit record matches
    its manifest, else 1. A root that cannot be read raises VipoError."""
    if tolerance_pct < 0:
        raise VipoError(f"--tolerance: must be >= 0, got {tolerance_pct:g}")
    contents = read_root(root)
    run = run_audit(contents)
    other = run_audit(read_root(compare)) if compare else None
    found = offenders(run, tolerance_pct) + (offenders(other, tolerance_pct) if other else [])
    report = AuditReport(
        version=__version__, tolerance_pct=tolerance_pct, passed=not found, offenders=found, run=run, compare=other,
        comparison=compare_categories(run, other) if other else None,
    )
    write_reports(contents.storage, report, render(report))
    show(report, console)
    reports = posixpath.join(contents.storage.url, REPORTS_DIR)
    console.print(f"reports: {reports}/audit.{{json,md,html}}", markup=False, highlight=False, soft_wrap=True)
    return 0 if report.passed else 1

"""The audit in the terminal: the balance tables (rich), the offenders by name, the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from vipo_build.audit.model import AuditReport
from vipo_build.audit.report import verdict
from vipo_build.audit.tables import (
    TextTable,
    calibration_table,
    category_table,
    comparison_table,
    diversity_table,
    facet_share_table,
    judge_table,
    judges_table,
)


def print_table(table: TextTable, console: Console) -> None:
    """The title on its own line (it names roots, which may be longer than the table is wide)."""
    console.print(table.title, markup=False, highlight=False, soft_wrap=True)
    shown = Table()
    for i, column in enumerate(table.header):
        shown.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for i, row in enumerate(table.rows):
        flag = i < len(table.flagged) and table.flagged[i]
        shown.add_row(*row, style="bold red" if flag else None)
    console.print(shown)


def show(report: AuditReport, console: Console) -> None:
    print_table(category_table(report.run, report.tolerance_pct), console)
    print_table(judge_table(report.run), console)
    print_table(diversity_table(report.run), console)
    # a panel of judges; least facet shares; human labels
    for table in (judges_table(report.run), facet_share_table(report.run), calibration_table(report.run)):
        if table is not None:
            print_table(table, console)
    if report.compare is not None:
        print_table(category_table(report.compare, report.tolerance_pct), console)
        print_table(comparison_table(report), console)
    for offender in report.offenders:
        where = f" [{offender.root}]" if report.compare is not None else ""
        console.print(f"OFFENDER {offender.message}{where}", markup=False, highlight=False, soft_wrap=True)
    console.print(verdict(report), style="green" if report.passed else "bold red", markup=False, highlight=False)

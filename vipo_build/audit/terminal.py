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
    """The title on its own line (it names roots, which may be longer than the table is wide); a
    table wider than the console is shown as several, each with the first column, so that no
    figure is cut short and every row stays on one line."""
    console.print(table.title, markup=False, highlight=False, soft_wrap=True)
    for group in column_groups(table, console.width):
        shown = Table()
        for i in (0, *group):
            width = cell_width(table, i)
            shown.add_column(table.header[i], justify="left" if i == 0 else "right", no_wrap=i == 0, min_width=width,
                             max_width=width)
        for i, row in enumerate(table.rows):
            flag = i < len(table.flagged) and table.flagged[i]
            shown.add_row(*(row[c] for c in (0, *group)), style="bold red" if flag else None)
        console.print(shown)


def cell_width(table: TextTable, column: int) -> int:
    """The widest cell of a column, or its longest header word (headers may wrap, figures may not)."""
    return max([len(word) for word in table.header[column].split()] + [len(row[column]) for row in table.rows])


def column_groups(table: TextTable, width: int) -> list[list[int]]:
    """The columns after the first, packed in order into groups that fit `width` beside the first."""
    padded = [cell_width(table, c) + 3 for c in range(len(table.header))]  # a space either side and a border
    groups: list[list[int]] = [[]]
    used = padded[0] + 1
    for column in range(1, len(table.header)):
        if groups[-1] and used + padded[column] > width:
            groups.append([])
            used = padded[0] + 1
        groups[-1].append(column)
        used += padded[column]
    return groups


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

"""The benchmarks' text table: a header, a rule, then rows; the first `left` columns left-aligned, the rest
right-aligned (numbers)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], lines: Sequence[Sequence[str]], *, left: int = 1) -> None:
    table = [list(header), *(list(line) for line in lines)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) if j < left else cell.rjust(w)
                        for j, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

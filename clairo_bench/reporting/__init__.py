"""Reports from finished run directories: leaderboards, significance tests, slices, plots, claims.

Nothing here trains or evaluates a model; everything is read from the files `clairo_bench.runner`
writes. Modules: `collect` (find, select and check runs), `significance` (paired tests, Holm),
`leaderboard` (scores and comparisons), `tables` (Markdown, LaTeX, CSV), `slices`, `plots`,
`claims` (the CLAIRO paper's claims) and `report` (writes the files).
"""

from clairo_bench.reporting.collect import (
    IncomparableRunsError,
    ReportError,
    RunRecord,
    RunSelection,
    check_comparable,
    collect_runs,
    discover_runs,
    select_runs,
)
from clairo_bench.reporting.leaderboard import Leaderboard, build_leaderboard
from clairo_bench.reporting.significance import holm_adjust, paired_tests, relative_gain_percent

__all__ = [
    "IncomparableRunsError",
    "Leaderboard",
    "ReportError",
    "RunRecord",
    "RunSelection",
    "build_leaderboard",
    "check_comparable",
    "collect_runs",
    "discover_runs",
    "holm_adjust",
    "paired_tests",
    "relative_gain_percent",
    "select_runs",
]

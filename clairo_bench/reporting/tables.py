"""Render leaderboards as Markdown, LaTeX (booktabs, a complete article document) and CSV.

In every metric column the best mean is bold and the second best underlined. Means are compared
after rounding to the four decimals shown, so equal-looking values share a rank. A dagger (†)
marks a method whose difference from the reference is significant under the Wilcoxon signed-rank
test, a double dagger (‡) under the paired t-test, both Holm-adjusted at alpha = 0.05. The CSV
carries the exact p-values.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

from clairo_bench.reporting.leaderboard import SIGNIFICANCE_LEVEL, Leaderboard, method_order
from clairo_bench.reporting.slices import SliceReport

DECIMALS = 4

DISPLAY_NAMES = {
    "clairo": "CLAIRO",
    "clairo-text-only": "CLAIRO (text only)",
    "clairo-image-only": "CLAIRO (image only)",
    "clairo-final-pca": "CLAIRO + final PCA",
    "actionpiece": "ActionPiece",
    "mql4grec": "MQL4GRec",
    "tiger": "TIGER",
    "sasrec": "SASRec",
    "gru4rec": "GRU4Rec",
    "bert4rec": "BERT4Rec",
    "pop": "Pop",
}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR"}

CSV_COLUMNS = (
    "dataset", "profile", "method", "metric", "mean", "std", "n_seeds", "seeds", "n_users",
    "ci_low", "ci_high", "rank", "reference", "gain_percent", "wilcoxon_statistic", "wilcoxon_p",
    "wilcoxon_p_holm", "ttest_statistic", "ttest_p", "ttest_p_holm",
)


def method_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def metric_name(metric: str) -> str:
    base, _, cutoff = metric.partition("@")
    return f"{METRIC_NAMES.get(base, base)}@{cutoff}" if cutoff else METRIC_NAMES.get(base, base)


def rank_marks(values: Mapping[str, float]) -> dict[str, str | None]:
    """Return method -> "best", "second" or None for one column (higher is better).

    Values are compared at the DECIMALS shown; ties share a rank, and "second" is the next
    distinct value below the best.
    """
    rounded = {method: round(value, DECIMALS) for method, value in values.items() if not math.isnan(value)}
    distinct = sorted(set(rounded.values()), reverse=True)
    marks: dict[str, str | None] = {method: None for method in values}
    if not distinct:
        return marks
    for method, value in rounded.items():
        if value == distinct[0]:
            marks[method] = "best"
        elif len(distinct) > 1 and value == distinct[1]:
            marks[method] = "second"
    return marks


def significance_marks(board: Leaderboard, method: str, metric: str, latex: bool = False) -> str:
    comparison = board.comparison(method, metric)
    if comparison is None:
        return ""
    marks = ""
    if comparison.significant("wilcoxon"):
        marks += r"\dag" if latex else "†"
    if comparison.significant("ttest"):
        marks += r"\ddag" if latex else "‡"
    return marks


def format_gain(gain: float) -> str:
    return "n/a" if math.isnan(gain) else f"{gain:+.1f}%"


def format_p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def legend(board: Leaderboard) -> str:
    if board.reference is None:
        return "No reference method, so no gains or significance tests (pass --reference)."
    return (
        f"† / ‡: the difference from {method_name(board.reference)} is significant at alpha = "
        f"{SIGNIFICANCE_LEVEL} by the two-sided Wilcoxon signed-rank test / paired t-test on per-user "
        f"metrics (each user's value averaged over seeds, users paired by user id), Holm-corrected over "
        f"the {len(board.comparisons)} comparisons of this table."
    )


def _column_marks(board: Leaderboard) -> dict[str, dict[str, str | None]]:
    return {
        metric: rank_marks({scores.method: scores.mean[metric] for scores in board.methods})
        for metric in board.metrics
    }


def _markdown_cell(text: str, rank: str | None) -> str:
    if rank == "best":
        return f"**{text}**"
    if rank == "second":
        return f"<u>{text}</u>"
    return text


def render_markdown(board: Leaderboard) -> str:
    """Render one dataset's leaderboard, gains, p-values and missing runs as Markdown."""
    lines = [f"# Leaderboard: {board.dataset}", ""]
    lines += [f"- **{label}:** {text}" for label, text in board.header]
    lines += ["", "## Test metrics (mean ± sample standard deviation over seeds)", ""]
    lines += _markdown_scores(board)
    lines += ["", "Bold: best; underlined: second best (compared at four decimals). " + legend(board)]
    if board.reference is not None and len(board.methods) > 1:
        lines += ["", f"## Relative gain of {method_name(board.reference)} over each method", ""]
        lines += _markdown_gains(board)
        lines += ["", f"## Paired tests against {method_name(board.reference)}", ""]
        lines += _markdown_pvalues(board)
    lines += ["", "## Missing runs", ""]
    if board.missing:
        lines += [f"- {method} seed {seed}: {reason}" for method, seed, reason in board.missing]
    else:
        lines.append("None: every run found has finished.")
    return "\n".join(lines) + "\n"


def _markdown_scores(board: Leaderboard) -> list[str]:
    marks = _column_marks(board)
    lines = [
        "| Method | Seeds | " + " | ".join(metric_name(m) for m in board.metrics) + " |",
        "|---|---:|" + "---:|" * len(board.metrics),
    ]
    for scores in board.methods:
        cells = []
        for metric in board.metrics:
            text = f"{scores.mean[metric]:.{DECIMALS}f}"
            cell = _markdown_cell(text, marks[metric][scores.method])
            if not math.isnan(scores.std[metric]):
                cell += f" ± {scores.std[metric]:.{DECIMALS}f}"
            cell += significance_marks(board, scores.method, metric)
            cells.append(cell)
        lines.append(f"| {method_name(scores.method)} | {len(scores.seeds)} | " + " | ".join(cells) + " |")
    return lines


def _markdown_gains(board: Leaderboard) -> list[str]:
    lines = [
        "| Over | " + " | ".join(metric_name(m) for m in board.metrics) + " |",
        "|---|" + "---:|" * len(board.metrics),
    ]
    for scores in board.methods:
        if scores.method == board.reference:
            continue
        cells = [
            format_gain(board.comparison(scores.method, metric).gain_percent)
            + significance_marks(board, scores.method, metric)
            for metric in board.metrics
        ]
        lines.append(f"| {method_name(scores.method)} | " + " | ".join(cells) + " |")
    lines += ["", f"Gain = 100 × ({method_name(board.reference)} − method) / method, on means over seeds."]
    return lines


def _markdown_pvalues(board: Leaderboard) -> list[str]:
    lines = [
        "| Method | Metric | Users | Wilcoxon p | Wilcoxon p (Holm) | t-test p | t-test p (Holm) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for comparison in board.comparisons:
        lines.append(
            f"| {method_name(comparison.method)} | {metric_name(comparison.metric)} | {comparison.test.n_users} | "
            f"{format_p(comparison.test.wilcoxon_p)} | {format_p(comparison.wilcoxon_p_holm)} | "
            f"{format_p(comparison.test.ttest_p)} | {format_p(comparison.ttest_p_holm)} |"
        )
    return lines


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "†": r"\dag{}", "‡": r"\ddag{}", "−": "-", "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters and replace the non-ASCII signs the tables use."""
    return "".join(LATEX_SPECIALS.get(character, character) for character in str(text))


def _latex_cell(text: str, rank: str | None) -> str:
    if rank == "best":
        return rf"\textbf{{{text}}}"
    if rank == "second":
        return rf"\underline{{{text}}}"
    return text


def _latex_marks(board: Leaderboard, method: str, metric: str) -> str:
    marks = significance_marks(board, method, metric, latex=True)
    return rf"\textsuperscript{{{marks}}}" if marks else ""


def _latex_document(body: list[str]) -> str:
    preamble = [
        r"\documentclass{article}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage[margin=2cm,landscape]{geometry}",
        r"\usepackage{booktabs}",
        r"\begin{document}",
    ]
    return "\n".join(preamble + body + [r"\end{document}"]) + "\n"


def render_latex(board: Leaderboard) -> str:
    """Render one dataset's leaderboard and gains as a complete LaTeX article using booktabs."""
    marks = _column_marks(board)
    body = [r"\begin{table}[ht]", r"\centering", r"\small"]
    body.append(rf"\caption{{Test metrics on {latex_escape(board.dataset)}: mean $\pm$ standard deviation over seeds.}}")
    body.append(r"\begin{tabular}{l" + "r" * (len(board.metrics) + 1) + "}")
    body.append(r"\toprule")
    body.append("Method & Seeds & " + " & ".join(latex_escape(metric_name(m)) for m in board.metrics) + r" \\")
    body.append(r"\midrule")
    for scores in board.methods:
        cells = []
        for metric in board.metrics:
            cell = _latex_cell(f"{scores.mean[metric]:.{DECIMALS}f}", marks[metric][scores.method])
            if not math.isnan(scores.std[metric]):
                cell += rf" $\pm$ {scores.std[metric]:.{DECIMALS}f}"
            cells.append(cell + _latex_marks(board, scores.method, metric))
        body.append(f"{latex_escape(method_name(scores.method))} & {len(scores.seeds)} & " + " & ".join(cells) + r" \\")
    body += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    if board.reference is not None and len(board.methods) > 1:
        body += _latex_gains(board)
    body.append(latex_escape("Bold: best; underlined: second best (compared at four decimals). " + legend(board)))
    body += ["", r"\begin{itemize}"]
    body += [rf"\item \textbf{{{latex_escape(label)}:}} {latex_escape(text)}" for label, text in board.header]
    body.append(r"\end{itemize}")
    return _latex_document(body)


def _latex_gains(board: Leaderboard) -> list[str]:
    body = [r"\begin{table}[ht]", r"\centering", r"\small"]
    body.append(rf"\caption{{Relative gain of {latex_escape(method_name(board.reference))} over each method (means over seeds).}}")
    body.append(r"\begin{tabular}{l" + "r" * len(board.metrics) + "}")
    body += [r"\toprule", "Over & " + " & ".join(latex_escape(metric_name(m)) for m in board.metrics) + r" \\", r"\midrule"]
    for scores in board.methods:
        if scores.method == board.reference:
            continue
        cells = [
            latex_escape(format_gain(board.comparison(scores.method, metric).gain_percent))
            + _latex_marks(board, scores.method, metric)
            for metric in board.metrics
        ]
        body.append(latex_escape(method_name(scores.method)) + " & " + " & ".join(cells) + r" \\")
    body += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return body


def csv_rows(board: Leaderboard) -> list[dict[str, object]]:
    """Return one CSV row per (method, metric) with scores, interval, gain and exact p-values."""
    marks = _column_marks(board)
    rows = []
    for scores in board.methods:
        for metric in board.metrics:
            comparison = board.comparison(scores.method, metric)
            _, low, high = scores.interval[metric]
            rows.append({
                "dataset": board.dataset,
                "profile": board.profile,
                "method": scores.method,
                "metric": metric,
                "mean": scores.mean[metric],
                "std": scores.std[metric],
                "n_seeds": len(scores.seeds),
                "seeds": " ".join(str(seed) for seed in scores.seeds),
                "n_users": scores.n_users,
                "ci_low": low,
                "ci_high": high,
                "rank": marks[metric][scores.method] or "",
                "reference": board.reference or "",
                "gain_percent": comparison.gain_percent if comparison else math.nan,
                "wilcoxon_statistic": comparison.test.wilcoxon_statistic if comparison else math.nan,
                "wilcoxon_p": comparison.test.wilcoxon_p if comparison else math.nan,
                "wilcoxon_p_holm": comparison.wilcoxon_p_holm if comparison else math.nan,
                "ttest_statistic": comparison.test.ttest_statistic if comparison else math.nan,
                "ttest_p": comparison.test.ttest_p if comparison else math.nan,
                "ttest_p_holm": comparison.ttest_p_holm if comparison else math.nan,
            })
    return rows


def render_csv(boards: Sequence[Leaderboard]) -> str:
    """Render one or more leaderboards as CSV; floats keep full precision and NaN is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for board in boards:
        for row in csv_rows(board):
            writer.writerow({
                key: "" if isinstance(value, float) and math.isnan(value) else value
                for key, value in row.items()
            })
    return buffer.getvalue()


def _combined_methods(boards: Sequence[Leaderboard]) -> list[str]:
    seen: list[str] = []
    for board in boards:
        seen += [scores.method for scores in board.methods if scores.method not in seen]
    return method_order(seen)


def _combined_cell(board: Leaderboard, method: str, metric: str, ranks, latex: bool) -> str:
    try:
        scores = board.scores(method)
    except KeyError:
        return "--" if latex else "–"
    text = f"{scores.mean[metric]:.{DECIMALS}f}"
    rank = ranks[(board.dataset, metric)][method]
    if latex:
        return _latex_cell(text, rank) + _latex_marks(board, method, metric)
    return _markdown_cell(text, rank) + significance_marks(board, method, metric)


def _combined_ranks(boards: Sequence[Leaderboard]):
    return {
        (board.dataset, metric): rank_marks({scores.method: scores.mean[metric] for scores in board.methods})
        for board in boards for metric in board.metrics
    }


def render_combined_markdown(boards: Sequence[Leaderboard]) -> str:
    """Render mean test metrics of every method across datasets in one Markdown table."""
    ranks = _combined_ranks(boards)
    header = ["Method"] + [f"{board.dataset} {metric_name(m)}" for board in boards for m in board.metrics]
    lines = ["# Leaderboard across datasets", ""]
    lines.append("Mean over seeds; bold: best and underlined: second best within each dataset and metric; "
                 "–: no finished run.")
    lines.append("† / ‡: significant difference from each dataset's reference by the Wilcoxon signed-rank "
                 f"test / paired t-test, Holm-corrected within each dataset, alpha = {SIGNIFICANCE_LEVEL}.")
    lines += ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method in _combined_methods(boards):
        cells = [_combined_cell(board, method, m, ranks, latex=False) for board in boards for m in board.metrics]
        lines.append(f"| {method_name(method)} | " + " | ".join(cells) + " |")
    lines += ["", "Per-dataset settings, seeds and p-values: see each dataset's own leaderboard file.", ""]
    for board in boards:
        reference = method_name(board.reference) if board.reference else "none"
        lines.append(f"- {board.dataset}: profile {board.profile}, reference {reference}, "
                     f"missing runs: {len(board.missing)}")
    return "\n".join(lines) + "\n"


def render_combined_latex(boards: Sequence[Leaderboard]) -> str:
    """Render mean test metrics across datasets as one booktabs table in a complete article."""
    ranks = _combined_ranks(boards)
    n_columns = sum(len(board.metrics) for board in boards)
    body = [r"\begin{table}[ht]", r"\centering", r"\small"]
    body.append(r"\caption{Test metrics across datasets: mean over seeds; bold best, underlined second best "
                r"within each dataset; \dag{} / \ddag{} significant difference from the reference (Wilcoxon / "
                r"paired t-test, Holm-corrected within each dataset, $\alpha = 0.05$).}")
    body.append(r"\begin{tabular}{l" + "r" * n_columns + "}")
    body.append(r"\toprule")
    groups = " & ".join(
        rf"\multicolumn{{{len(board.metrics)}}}{{c}}{{{latex_escape(board.dataset)}}}" for board in boards
    )
    body.append(" & " + groups + r" \\")
    rules = []
    start = 2
    for board in boards:
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(board.metrics) - 1}}}")
        start += len(board.metrics)
    body.append("".join(rules))
    body.append("Method & " + " & ".join(latex_escape(metric_name(m)) for board in boards for m in board.metrics) + r" \\")
    body.append(r"\midrule")
    for method in _combined_methods(boards):
        cells = [_combined_cell(board, method, m, ranks, latex=True) for board in boards for m in board.metrics]
        body.append(latex_escape(method_name(method)) + " & " + " & ".join(cells) + r" \\")
    body += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return _latex_document(body)


def render_slices_markdown(report: SliceReport, metrics: Sequence[str]) -> str:
    """Render metrics by slice: one table per (slice kind, metric), methods as rows, best in bold."""
    lines = ["## Metrics by slice", ""]
    lines += [f"- {note}" for note in report.notes]
    table = report.table
    for kind in dict.fromkeys(table["kind"]):
        of_kind = table[table["kind"] == kind]
        slices = list(dict.fromkeys(of_kind["slice"]))
        counts = of_kind.drop_duplicates("slice").set_index("slice")["n_users"]
        methods = method_order(set(of_kind["method"]))
        for metric in metrics:
            values = of_kind[of_kind["metric"] == metric].set_index(["slice", "method"])["mean"]
            lines += ["", f"### {metric_name(metric)} by {kind}", ""]
            lines.append("| Method | " + " | ".join(f"{name} ({counts[name]} users)" for name in slices) + " |")
            lines.append("|---|" + "---:|" * len(slices))
            marks = {name: rank_marks({m: values.get((name, m), math.nan) for m in methods}) for name in slices}
            for method in methods:
                cells = []
                for name in slices:
                    value = values.get((name, method), math.nan)
                    cells.append("n/a" if math.isnan(value) else _markdown_cell(f"{value:.{DECIMALS}f}", marks[name][method]))
                lines.append(f"| {method_name(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

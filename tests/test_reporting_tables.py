import csv
import io
import math
import re

import numpy as np
import pytest
from scipy import stats

from clairo_bench.reporting.collect import collect_runs
from clairo_bench.reporting.leaderboard import build_leaderboard
from clairo_bench.reporting.tables import (
    rank_marks,
    render_combined_latex,
    render_combined_markdown,
    render_csv,
    render_latex,
    render_markdown,
)
from test_reporting_support import ranks_with_hits, write_run

N_USERS = 30


def write_toy_runs(runs_dir, dataset="toy"):
    # clairo: 15 and 13 hits at rank 1 over two seeds -> Recall@5 mean 28/60, std |0.5 - 13/30| / sqrt(2).
    write_run(runs_dir, "clairo", 0, ranks_with_hits(N_USERS, 15), dataset=dataset)
    write_run(runs_dir, "clairo", 1, ranks_with_hits(N_USERS, 13), dataset=dataset)
    # actionpiece: 10 hits -> Recall@5 1/3, so CLAIRO's gain is (28/60 - 1/3) / (1/3) = +40%.
    write_run(runs_dir, "actionpiece", 0, ranks_with_hits(N_USERS, 10), dataset=dataset)
    # pop: 3 targets at rank 8 -> Recall@5 0, Recall@10 0.1.
    write_run(runs_dir, "pop", 0, ranks_with_hits(N_USERS, 3, hit_rank=8), dataset=dataset)
    write_run(runs_dir, "mql4grec", 0, ranks_with_hits(N_USERS, 3), dataset=dataset, status="failed")


@pytest.fixture
def board(tmp_path):
    write_toy_runs(tmp_path)
    return build_leaderboard(collect_runs(tmp_path, "toy"), ("recall@5", "recall@10", "ndcg@5", "ndcg@10"))


def test_leaderboard_mean_and_std_over_seeds(board):
    clairo = board.scores("clairo")
    assert clairo.mean["recall@5"] == pytest.approx(28 / 60)
    assert clairo.std["recall@5"] == pytest.approx(abs(0.5 - 13 / 30) / math.sqrt(2))


def test_leaderboard_single_seed_has_no_std(board):
    assert math.isnan(board.scores("pop").std["recall@5"])


def test_leaderboard_reference_defaults_to_clairo(board):
    assert board.reference == "clairo"


def test_gain_percent_hand_case(board):
    assert board.comparison("actionpiece", "recall@5").gain_percent == pytest.approx(40.0)


def test_gain_percent_in_markdown(board):
    assert "| ActionPiece | +40.0%" in render_markdown(board)


def test_paired_tests_use_seed_averaged_users(board):
    clairo = np.array([1.0] * 13 + [0.5] * 2 + [0.0] * 15)
    actionpiece = np.array([1.0] * 10 + [0.0] * 20)
    comparison = board.comparison("actionpiece", "recall@5")
    assert comparison.test.wilcoxon_p == pytest.approx(stats.wilcoxon(actionpiece, clairo).pvalue)
    assert comparison.test.ttest_p == pytest.approx(stats.ttest_rel(actionpiece, clairo).pvalue)


def test_holm_family_is_all_comparisons(board):
    # 2 methods x 4 metrics; the smallest p-value is multiplied by the family size 8.
    smallest = min(board.comparisons, key=lambda c: c.test.wilcoxon_p)
    assert len(board.comparisons) == 8
    assert smallest.wilcoxon_p_holm == pytest.approx(min(1.0, 8 * smallest.test.wilcoxon_p))


def test_best_bold_second_underlined_markdown(board):
    text = render_markdown(board)
    assert "**0.4667** ± 0.0471" in text
    assert "<u>0.3333</u>" in text
    assert "| Pop | 1 | 0.0000" in text


def test_best_bold_second_underlined_latex(board):
    text = render_latex(board)
    assert r"\textbf{0.4667} $\pm$ 0.0471" in text
    assert r"\underline{0.3333}" in text


def test_rank_marks_ties_share_rank():
    marks = rank_marks({"a": 0.5, "b": 0.50001, "c": 0.4, "d": 0.1})
    assert marks == {"a": "best", "b": "best", "c": "second", "d": None}


def test_significance_mark_on_clear_difference(board):
    # pop never hits at 5 while CLAIRO hits 13-15 of 30 users: both tests reject after Holm.
    comparison = board.comparison("pop", "recall@5")
    assert comparison.wilcoxon_p_holm < 0.05
    assert "| Pop | 1 | 0.0000†‡ |" in render_markdown(board)


def test_header_states_setup(board):
    text = render_markdown(board)
    for expected in ("**Dataset:** toy", "**Processing:** 5-core, chronological", "leave-one-out",
                     "history items not masked", "**Profile:** quick", "clairo: 0, 1", "torch 2.14.1",
                     "**Generated:**"):
        assert expected in text


def test_markdown_lists_missing_runs(board):
    assert "- mql4grec seed 0: failed: RuntimeError: out of memory" in render_markdown(board)


def test_csv_has_exact_p_values(board):
    rows = list(csv.DictReader(io.StringIO(render_csv([board]))))
    row = next(r for r in rows if r["method"] == "actionpiece" and r["metric"] == "recall@5")
    comparison = board.comparison("actionpiece", "recall@5")
    assert float(row["wilcoxon_p"]) == comparison.test.wilcoxon_p
    assert float(row["ttest_p_holm"]) == comparison.ttest_p_holm
    assert float(row["gain_percent"]) == pytest.approx(40.0)


def test_csv_reference_rows_have_empty_p_values(board):
    rows = list(csv.DictReader(io.StringIO(render_csv([board]))))
    row = next(r for r in rows if r["method"] == "clairo" and r["metric"] == "ndcg@10")
    assert row["wilcoxon_p"] == ""
    assert row["rank"] == "best"


def check_latex_structure(text):
    """Assert what pdflatex would need: balanced braces and environments, booktabs, equal columns."""
    assert text.startswith(r"\documentclass")
    assert r"\usepackage{booktabs}" in text

    unescaped = re.sub(r"\\[{}%&_#$]", "", text)
    depth = 0
    for character in unescaped:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0
    assert depth == 0

    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", text):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert stack == []

    assert re.search(r"(?<!\\)[_%#]", unescaped.replace(r"\textbackslash", "")) is None

    tabulars = re.findall(r"\\begin\{tabular\}\{([lcr]+)\}(.*?)\\end\{tabular\}", text, flags=re.S)
    assert tabulars
    for spec, body in tabulars:
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert rule in body
        rows = [line for line in body.splitlines() if line.strip().endswith(r"\\")]
        assert rows
        for row in rows:
            cells = re.split(r"(?<!\\)&", row)
            width = 0
            for cell in cells:
                spanned = re.match(r"\s*\\multicolumn\{(\d+)\}", cell)
                width += int(spanned.group(1)) if spanned else 1
            assert width == len(spec), row

    outside = re.sub(r"\\begin\{tabular\}.*?\\end\{tabular\}", "", text, flags=re.S)
    assert re.search(r"(?<!\\)&", outside) is None


def test_latex_table_is_structurally_valid(board):
    check_latex_structure(render_latex(board))


def test_latex_escapes_underscores_and_percent(board):
    text = render_latex(board)
    assert r"open\_clip\_torch" in text
    assert r"+40.0\%" in text


def test_combined_tables_cover_both_datasets(tmp_path):
    write_toy_runs(tmp_path, "toy")
    write_toy_runs(tmp_path, "arts_2018")
    boards = [build_leaderboard(collect_runs(tmp_path, name), ("recall@5", "ndcg@10")) for name in ("toy", "arts_2018")]
    latex = render_combined_latex(boards)
    check_latex_structure(latex)
    assert r"\multicolumn{2}{c}{arts\_2018}" in latex
    assert "| Method | toy Recall@5 | toy NDCG@10 | arts_2018 Recall@5 | arts_2018 NDCG@10 |" in render_combined_markdown(boards)

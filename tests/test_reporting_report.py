import numpy as np
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.reporting.report import ReportOptions, write_dataset_report
from test_reporting_support import ranks_with_hits, write_run

N_USERS = 30


def write_runs(runs_dir, dataset="toy", split_key="split-key-1"):
    write_run(runs_dir, "clairo", 0, ranks_with_hits(N_USERS, 15), dataset=dataset, split_key=split_key)
    write_run(runs_dir, "actionpiece", 0, ranks_with_hits(N_USERS, 10), dataset=dataset)


def test_dataset_report_writes_tables_slices_and_plots(tmp_path):
    write_runs(tmp_path / "runs")
    counts = np.arange(50)[::-1]
    _, written = write_dataset_report(tmp_path / "runs", "toy", tmp_path / "out",
                                      ReportOptions(metrics=("ndcg@10",)), lambda config: counts)
    names = sorted(path.relative_to(tmp_path / "out").as_posix() for path in written)
    assert names == [
        "plots/toy-methods.pdf", "plots/toy-methods.png",
        "plots/toy-slices-history-length.pdf", "plots/toy-slices-history-length.png",
        "plots/toy-slices-item-popularity.pdf", "plots/toy-slices-item-popularity.png",
        "toy-slices.csv", "toy.csv", "toy.md", "toy.tex",
    ]


def test_dataset_report_figures_are_png_and_pdf(tmp_path):
    write_runs(tmp_path / "runs")
    write_dataset_report(tmp_path / "runs", "toy", tmp_path / "out",
                         ReportOptions(metrics=("ndcg@10",), slices=False), None)
    assert (tmp_path / "out/plots/toy-methods.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "out/plots/toy-methods.pdf").read_bytes().startswith(b"%PDF")


def test_dataset_report_markdown_has_popularity_slices(tmp_path):
    write_runs(tmp_path / "runs")
    write_dataset_report(tmp_path / "runs", "toy", tmp_path / "out",
                         ReportOptions(metrics=("ndcg@10",), plots=False), lambda config: np.arange(50)[::-1])
    text = (tmp_path / "out/toy.md").read_text()
    assert "### NDCG@10 by item popularity" in text
    assert "### NDCG@10 by history length" in text


def test_cli_leaderboard_all_writes_combined(tmp_path):
    write_runs(tmp_path / "runs", "toy")
    write_runs(tmp_path / "runs", "arts")
    result = CliRunner().invoke(app, [
        "leaderboard", "--dataset", "all", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
        "--no-plots", "--no-slices", "--format", "md,csv",
    ])
    assert result.exit_code == 0, result.output
    for name in ("toy.md", "toy.csv", "arts.md", "combined.md", "combined.csv"):
        assert (tmp_path / "out" / name).exists()
    assert not (tmp_path / "out/toy.tex").exists()


def test_cli_leaderboard_rejects_different_splits(tmp_path):
    write_runs(tmp_path / "runs", split_key="other-split")
    result = CliRunner().invoke(app, [
        "leaderboard", "--dataset", "toy", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
        "--no-plots", "--no-slices",
    ])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ")
    assert "split.key" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_claims_without_runs_names_the_folder(tmp_path):
    result = CliRunner().invoke(app, ["claims", "--dataset", "toy", "--runs-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ")
    assert "none" in result.output


def test_cli_claims_lists_untested(tmp_path):
    write_runs(tmp_path / "runs")
    result = CliRunner().invoke(app, ["claims", "--dataset", "toy", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "untested" in result.output
    assert "+45.1% NDCG@5" in result.output


def test_header_names_methods_with_fewer_beams_than_cutoffs(tmp_path):
    from clairo_bench.reporting.collect import collect_runs
    from clairo_bench.reporting.leaderboard import describe_runs

    write_run(tmp_path, "pop", 0, ranks_with_hits(6, 2))
    write_run(tmp_path, "clairo", 0, ranks_with_hits(6, 2), method_config={"num_beams": 5})
    write_run(tmp_path, "mql4grec", 0, ranks_with_hits(6, 2), method_config={"num_beams": 20})
    header = dict(describe_runs(collect_runs(tmp_path, "toy")))
    assert header["Generation"].startswith("clairo (5 beams) decode a fixed number of beams")
    assert "largest cut-off 10" in header["Generation"]
    assert "mql4grec" not in header["Generation"]

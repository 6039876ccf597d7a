"""Damaged run files: each gets an error that names the file and the fix, and other runs go on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.data.catalog import load_dataset
from clairo_bench.io import DamagedFileError, read_json_file
from clairo_bench.reporting.collect import ReportError, discover_runs, load_per_user, select_runs
from clairo_bench.runner import (
    Job,
    _drop_partial_log_line,
    read_summary,
    read_train_log,
    run_jobs,
)
from clairo_bench.training import CheckpointError, EarlyStopping, train_with_early_stopping


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def pop_runs(tiny_datasets_dir, tmp_path):
    # With the data hash, as the CLI makes them, so that `run` finds these run directories.
    data_hash = load_dataset("tiny").content_hash()
    jobs = [Job("pop", "tiny", seed=seed, profile="smoke", dataset_hash=data_hash) for seed in (0, 1)]
    outcomes = run_jobs(jobs, tmp_path / "runs", tmp_path / "cache", isolate=False)
    assert [outcome.status for outcome in outcomes] == ["finished", "finished"]
    return jobs, [outcome.run_dir for outcome in outcomes], tmp_path


def test_read_json_file_names_file(tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_text('{"test": {"ndcg')
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    with pytest.raises(DamagedFileError, match=r"cut\.json is damaged: not valid JSON"):
        read_json_file(cut)
    with pytest.raises(DamagedFileError, match=r"list\.json is damaged: it contains a JSON list"):
        read_json_file(listed)


def test_read_summary_rejects_non_numeric_fields(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"test": {"ndcg@10": "high"}, "wall_time_s": "slow"}))
    with pytest.raises(DamagedFileError) as caught:
        read_summary(tmp_path)
    assert "'test' is not a mapping of metric names to numbers" in str(caught.value)
    assert "'wall_time_s' is 'slow', not a number" in str(caught.value)


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "parent-skip"])
def test_damaged_summary_fails_one_job_only(pop_runs, isolate):
    jobs, run_dirs, tmp_path = pop_runs
    (run_dirs[0] / "summary.json").write_text('{"test": {"nd')
    outcomes = run_jobs(jobs, tmp_path / "runs", tmp_path / "cache", isolate=isolate)
    assert [outcome.status for outcome in outcomes] == ["failed", "skipped"]
    assert str(run_dirs[0] / "summary.json") in outcomes[0].error
    assert "Delete" in outcomes[0].error


def test_cli_table_shows_damaged_summary(pop_runs):
    jobs, run_dirs, tmp_path = pop_runs
    (run_dirs[1] / "summary.json").write_text("[]")
    result = CliRunner().invoke(app, ["run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke",
                                      "--seeds", "0,1", "--runs-dir", str(tmp_path / "runs"),
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    output = _flat(result.output)
    assert "skipped" in output
    assert "contains a JSON list" in output


def test_partial_log_line_is_dropped(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"epoch": 1, "train_loss": 2.0}\n{"epoch": 2, "train_lo')
    _drop_partial_log_line(log)
    assert log.read_text() == '{"epoch": 1, "train_loss": 2.0}\n'
    _drop_partial_log_line(log)  # a whole file stays as it is
    assert log.read_text() == '{"epoch": 1, "train_loss": 2.0}\n'


def test_read_train_log_skips_bad_lines(tmp_path, caplog):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"epoch": 1}\nnot json\n[2]\n\n{"epoch": 3}\n')
    with caplog.at_level(logging.WARNING):
        records = read_train_log(log)
    assert [record["epoch"] for record in records] == [1, 3]
    assert "line 2 is not an epoch record" in caplog.text
    assert "line 3 is not an epoch record" in caplog.text


def test_resumed_job_survives_cut_log(tiny_datasets_dir, tmp_path):
    job = Job("sasrec", "tiny", seed=0, profile="smoke")
    [first] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)
    assert first.status == "finished", first.error
    log = first.run_dir / "train_log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    (first.run_dir / "summary.json").unlink()

    [second] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)
    assert second.status == "finished", second.error
    assert log.read_text().endswith("\n")
    assert second.summary["epochs_run"] == len(lines) - 1


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"], ids=["empty", "cut"])
def test_damaged_checkpoint_names_file(tmp_path, content):
    (tmp_path / "last.pt").write_bytes(content)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError) as caught:
        train_with_early_stopping(model, optimizer, lambda epoch: 0.0, lambda: {"ndcg@10": 0.0},
                                  EarlyStopping(max_epochs=1, patience=1), tmp_path, lambda record: None)
    assert str(tmp_path / "last.pt") in str(caught.value)
    assert "Delete it to restart training from epoch 1" in str(caught.value)


def _recommend(run_dir: Path, cache_dir: Path):
    # A wide terminal keeps the long run paths of the messages on one line.
    return CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--cache-dir", str(cache_dir),
                                    "--history", "#1"], env={"COLUMNS": "1000"})


def test_recommend_names_damaged_model_file(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    scores = run_dirs[0] / "model" / "scores.npy"
    scores.write_bytes(scores.read_bytes()[:40])
    result = _recommend(run_dirs[0], tmp_path / "cache")
    assert result.exit_code == 2
    output = _flat(result.output)
    assert f"The saved model in {run_dirs[0] / 'model'} cannot be loaded" in output
    assert f"delete {run_dirs[0] / 'summary.json'}" in output


def test_recommend_rejects_scores_of_other_length(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    np.save(run_dirs[0] / "model" / "scores.npy", np.ones(5))
    result = _recommend(run_dirs[0], tmp_path / "cache")
    assert result.exit_code == 2
    assert "expected 24 finite scores" in _flat(result.output)


@pytest.mark.parametrize("content, message", [
    ("[]", "contains a JSON list"),
    ('{"method": "pop"}', "lacks the field 'method_config'"),
    ('{"method": "po', "not valid JSON"),
], ids=["list", "missing-field", "cut"])
def test_recommend_names_damaged_config(pop_runs, content, message):
    _, run_dirs, tmp_path = pop_runs
    (run_dirs[0] / "config.json").write_text(content)
    result = _recommend(run_dirs[0], tmp_path / "cache")
    assert result.exit_code == 2
    assert message in _flat(result.output)
    assert "config.json" in _flat(result.output)


def test_leaderboard_leaves_out_damaged_run(pop_runs, caplog):
    _, run_dirs, tmp_path = pop_runs
    (run_dirs[1] / "summary.json").write_text('{"test": ')
    (run_dirs[0] / "provenance.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        selection = select_runs(discover_runs(tmp_path / "runs", "tiny"), "tiny")
    assert [run.seed for run in selection.runs] == [0]
    assert selection.runs[0].provenance == {}
    [missing] = selection.missing
    assert missing.seed == 1
    assert missing.reason.startswith("damaged: ")
    assert "summary.json is damaged" in missing.reason
    assert "provenance.json is damaged" in caplog.text


def _blank_cell(path: Path, row: int, column: str) -> str:
    """Empty one cell of a per-user CSV (`row` counts data rows from 1); return that row's user id."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = ""
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return cells[header.index("user_id")]


def test_per_user_file_with_empty_cell_names_user(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    user = _blank_cell(run_dirs[0] / "per_user_test.csv", 2, "ndcg@10")
    [run] = [run for run in select_runs(discover_runs(tmp_path / "runs", "tiny"), "tiny").runs if run.seed == 0]
    with pytest.raises(ReportError) as caught:
        load_per_user(run, ["ndcg@10"])
    assert f"of user {user!r} (data row 2)" in str(caught.value)


def test_per_user_file_empty_is_reported(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    (run_dirs[0] / "per_user_test.csv").write_text("")
    [run] = [run for run in select_runs(discover_runs(tmp_path / "runs", "tiny"), "tiny").runs if run.seed == 0]
    with pytest.raises(ReportError, match=r"per_user_test\.csv is damaged"):
        load_per_user(run, ["ndcg@10"])


def test_cli_rejects_file_paths_for_folders(pop_runs):
    _, _, tmp_path = pop_runs
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    run = CliRunner().invoke(app, ["run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke",
                                   "--runs-dir", str(a_file)])
    assert run.exit_code == 2
    assert f"--runs-dir {a_file} is a file, not a folder" in _flat(run.output)
    board = CliRunner().invoke(app, ["leaderboard", "--dataset", "tiny", "--runs-dir", str(tmp_path / "runs"),
                                     "--out", str(a_file), "--no-plots", "--no-slices"])
    assert board.exit_code == 2
    assert f"--out {a_file} is a file, not a folder" in _flat(board.output)


def test_cli_rejects_unknown_metric(pop_runs):
    _, _, tmp_path = pop_runs
    result = CliRunner().invoke(app, ["claims", "--dataset", "tiny", "--runs-dir", str(tmp_path / "runs"),
                                      "--metric", "bogus"])
    assert result.exit_code == 2
    assert "Invalid metric 'bogus'" in _flat(result.output)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cli_rejects_cuda_without_device_before_jobs(tiny_datasets_dir, tmp_path):
    result = CliRunner().invoke(app, ["run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke",
                                      "--device", "cuda:0", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "torch sees no CUDA device" in _flat(result.output)
    assert not (tmp_path / "runs").exists()


def test_read_train_log_skips_non_numeric_values(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"epoch": 1, "valid_ndcg@10": 0.5}\n{"epoch": 2, "valid_ndcg@10": "x"}\n'
                   '{"epoch": 3, "seconds": "abc"}\n' + "[" * 100_000 + "\n{\"epoch\": 4, \"seconds\": 1}\n")
    assert [record["epoch"] for record in read_train_log(log)] == [1, 4]


def _resume(work_dir: Path, model: torch.nn.Module | None = None) -> None:
    model = model or torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_with_early_stopping(model, optimizer, lambda epoch: 0.0, lambda: {"ndcg@10": 0.0},
                              EarlyStopping(max_epochs=2, patience=1), work_dir, lambda record: None)


def test_checkpoint_of_zero_bytes_names_file(tmp_path):
    (tmp_path / "last.pt").write_bytes(bytes(5000))
    with pytest.raises(CheckpointError, match=r"last\.pt is damaged"):
        _resume(tmp_path)


def test_checkpoint_that_does_not_fit_names_file(tmp_path):
    _resume(tmp_path)
    torch.save({"version": 1}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt does not fit this job's model \(KeyError"):
        _resume(tmp_path)


def test_checkpoint_of_other_model_names_file(tmp_path):
    _resume(tmp_path)
    with pytest.raises(CheckpointError, match=r"does not fit this job's model \(RuntimeError"):
        _resume(tmp_path, torch.nn.Linear(3, 1))


def test_locked_job_is_reported_as_locked(pop_runs):
    import fcntl

    jobs, run_dirs, tmp_path = pop_runs
    (run_dirs[0] / "summary.json").unlink()
    (run_dirs[0] / "error.json").write_text('{"error": "an old failure"}')
    with open(run_dirs[0] / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        outcomes = run_jobs(jobs[:1], tmp_path / "runs", tmp_path / "cache", isolate=True)
    assert outcomes[0].status == "failed"
    assert outcomes[0].error == f"another process is running this job in {run_dirs[0]}; wait for it to finish"


def test_cli_rejects_folder_below_a_file(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    wide = {"COLUMNS": "1000"}
    run = CliRunner().invoke(app, ["run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke",
                                   "--runs-dir", str(a_file / "sub")], env=wide)
    assert run.exit_code == 2
    assert f"--runs-dir {a_file / 'sub'} cannot be created because {a_file} is a file" in _flat(run.output)
    recommend = CliRunner().invoke(app, ["recommend", "--run", str(run_dirs[0]), "--history", "#1",
                                         "--cache-dir", str(a_file)], env=wide)
    assert recommend.exit_code == 2
    assert f"--cache-dir {a_file} is a file, not a folder" in _flat(recommend.output)
    build = CliRunner().invoke(app, ["features", "build", "--dataset", "tiny", "--cache-dir", str(a_file)], env=wide)
    assert build.exit_code == 1
    assert f"--cache-dir {a_file} is a file, not a folder" in _flat(build.output)


@pytest.mark.parametrize("change, message", [
    (lambda config: config.update(split="abc"), "config.json or job.json is damaged"),
    (lambda config: config["split"].update(max_history_items="x"), "config.json or job.json is damaged"),
    (lambda config: config["method_config"].update(unknown=1), "has an invalid method_config"),
], ids=["split-string", "cap-string", "unknown-setting"])
def test_recommend_names_wrong_typed_config(pop_runs, change, message):
    _, run_dirs, tmp_path = pop_runs
    config = json.loads((run_dirs[0] / "config.json").read_text())
    change(config)
    (run_dirs[0] / "config.json").write_text(json.dumps(config))
    result = _recommend(run_dirs[0], tmp_path / "cache")
    assert result.exit_code == 2
    assert message in _flat(result.output)


def test_job_seed_falls_back_to_folder_name(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    job = json.loads((run_dirs[1] / "job.json").read_text())
    (run_dirs[1] / "job.json").write_text(json.dumps({**job, "seed": "abc"}))
    selection = select_runs(discover_runs(tmp_path / "runs", "tiny"), "tiny")
    assert [run.seed for run in selection.runs] == [0, 1]


def test_run_rejects_dataset_without_usable_users(tiny_datasets_dir, tmp_path):
    import lzma

    # Two interactions per user: too few for a training item, a validation and a test target.
    with lzma.open(tiny_datasets_dir / "embedded" / "tiny" / "user_sequence.txt.xz", "wt") as handle:
        handle.write("U1 I0001 I0002\nU2 I0002 I0003\n")
    result = CliRunner().invoke(app, ["run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke",
                                      "--runs-dir", str(tmp_path / "runs")], env={"COLUMNS": "1000"})
    assert result.exit_code == 2
    assert "Dataset 'tiny' has no user with at least 3 interactions" in _flat(result.output)
    assert not (tmp_path / "runs").exists()


def test_leaderboard_skips_damaged_per_user_file(pop_runs):
    _, run_dirs, tmp_path = pop_runs
    _blank_cell(run_dirs[1] / "per_user_test.csv", 1, "mrr@5")
    result = CliRunner().invoke(app, ["leaderboard", "--dataset", "tiny", "--runs-dir", str(tmp_path / "runs"),
                                      "--out", str(tmp_path / "boards"), "--no-plots", "--no-slices"])
    assert result.exit_code == 0, result.output
    table = _flat((tmp_path / "boards" / "tiny.md").read_text())
    assert "damaged:" in table
    assert "has no value for mrr@5" in table

"""Runner and CLI: run directories, skipping finished jobs, failures, kill and resume, plugins."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from clairo_bench.methods.base import ConfigError
from clairo_bench.methods.registry import UnknownMethodError, get_method_class
from clairo_bench import runner
from clairo_bench.runner import Job, expand_jobs, run_jobs

REPOSITORY = Path(__file__).resolve().parents[1]
PLUGINS = "runner_plugins"
CLI = [sys.executable, "-m", "clairo_bench.cli"]


def cli(*arguments: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_pop_job_writes_complete_run_directory(tiny_datasets_dir, tmp_path):
    [outcome] = run_jobs([Job("pop", "tiny", seed=3, profile="smoke")], tmp_path / "runs",
                         tmp_path / "cache", isolate=False)
    assert outcome.status == "finished"
    run_dir = outcome.run_dir
    config = json.loads((run_dir / "config.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    per_user = pd.read_csv(run_dir / "per_user_test.csv")
    assert config["seed"] == 3
    assert config["profile"] == "smoke"
    assert config["split"]["max_history_items"] == 20
    assert config["evaluation"]["exclude_history_items"] is False
    assert len(config["dataset"]["content_hash"]) == 16
    assert "torch" in provenance["packages"]
    assert "commit" in provenance["git"]
    assert len(per_user) == 40
    assert set(per_user.columns) >= {"user_id", "target_id", "rank", "ndcg@10", "recall@5", "mrr@20"}
    assert summary["test"]["ndcg@10"] == pytest.approx(per_user["ndcg@10"].mean())
    assert summary["peak_memory_mb"] > 0
    assert summary["wall_time_s"] > 0


def test_finished_job_is_skipped(tiny_datasets_dir, tmp_path):
    job = Job("pop", "tiny", seed=0, profile="smoke")
    [first] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)
    modified = (first.run_dir / "summary.json").stat().st_mtime_ns
    [second] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)
    assert second.status == "skipped"
    assert (first.run_dir / "summary.json").stat().st_mtime_ns == modified


def test_failing_job_does_not_stop_others(tiny_datasets_dir, tmp_path):
    jobs = expand_jobs(["failing", "pop"], "tiny", [0], "smoke", plugins=[f"{PLUGINS}:Failing"])
    outcomes = {o.job.method: o for o in run_jobs(jobs, tmp_path / "runs", tmp_path / "cache", isolate=False)}
    assert outcomes["failing"].status == "failed"
    assert "deliberate failure" in outcomes["failing"].error
    assert (outcomes["failing"].run_dir / "error.json").exists()
    assert not (outcomes["failing"].run_dir / "summary.json").exists()
    assert outcomes["pop"].status == "finished"


def test_dead_worker_process_is_reported(tiny_datasets_dir, tmp_path):
    jobs = expand_jobs(["dies-in-fit", "pop"], "tiny", [0], "smoke", plugins=[f"{PLUGINS}:DiesInFit"])
    outcomes = {o.job.method: o for o in run_jobs(jobs, tmp_path / "runs", tmp_path / "cache")}
    assert outcomes["dies-in-fit"].status == "failed"
    assert "worker process died" in outcomes["dies-in-fit"].error
    assert outcomes["pop"].status == "finished"


def test_killed_run_resumes_without_redoing_work(tiny_datasets_dir, tmp_path):
    arguments = ["run", "--methods", "pop,slow-epochs", "--dataset", "tiny", "--profile", "smoke",
                 "--plugin", f"{PLUGINS}:SlowEpochs", "--runs-dir", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache")]
    process = subprocess.Popen([*CLI, *arguments], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        logs = list((tmp_path / "runs").glob("tiny/slow-epochs/*/train_log.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 2:
            log = logs[0]
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert log is not None, "the slow job never logged two epochs"
    run_dir = log.parent
    assert not (run_dir / "summary.json").exists()
    pop_summary = next((tmp_path / "runs").glob("tiny/pop/*/summary.json"))
    pop_modified = pop_summary.stat().st_mtime_ns

    result = cli(*arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    started = [int(line) for line in (run_dir / "work" / "epochs_started.txt").read_text().split()]
    assert epochs == [1, 2, 3, 4]
    assert started.count(1) == 1
    assert (run_dir / "summary.json").exists()
    assert pop_summary.stat().st_mtime_ns == pop_modified
    summary = json.loads((run_dir / "summary.json").read_text())
    # Four logged epochs of at least one second each, two of them from the killed process.
    assert summary["logged_epoch_seconds"] >= 4.0


@pytest.mark.parametrize("to_group", [True, False], ids=["terminal-ctrl-c", "parent-only"])
def test_ctrl_c_prints_table_and_exits_130(tiny_datasets_dir, tmp_path, to_group):
    arguments = ["run", "--methods", "pop,slow-epochs,sasrec", "--dataset", "tiny", "--profile", "smoke",
                 "--plugin", f"{PLUGINS}:SlowEpochs", "--set", "slow-epochs.max_epochs=50",
                 "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    process = subprocess.Popen([*CLI, *arguments], cwd=tmp_path, start_new_session=True, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "COLUMNS": "250"})

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        logs = list((tmp_path / "runs").glob("tiny/slow-epochs/*/train_log.jsonl"))
        if logs and logs[0].read_text().strip():
            break
        time.sleep(0.2)

    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group; `kill -INT PID`
    # reaches the parent only, which must then stop the job process itself.
    if to_group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGINT)

    # 50 epochs of one second: a job that kept running would finish and write summary.json.
    stdout, stderr = process.communicate(timeout=45)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Interrupted." in stdout

    rows = {line.split()[1]: line for line in stdout.splitlines() if line.count("│") > 3}
    assert "finished" in rows["pop"]
    assert "interrupted" in rows["slow-epochs"]
    assert "not started" in rows["sasrec"]
    assert rows["sasrec"].split("│")[-2].strip() == "-"  # no run directory exists yet
    assert not any((tmp_path / "runs").glob("tiny/slow-epochs/*/summary.json"))
    assert not list((tmp_path / "runs").rglob("*.tmp"))


def test_stopped_run_lists_queued_finished_job_as_skipped(tiny_datasets_dir, tmp_path):
    done = Job("pop", "tiny", seed=0, profile="smoke")
    run_jobs([done], tmp_path / "runs", tmp_path / "cache", isolate=False)
    queued = runner._interrupted(done, tmp_path / "runs", started=False)
    never_run = runner._interrupted(Job("pop", "tiny", seed=1, profile="smoke"), tmp_path / "runs",
                                    started=False)
    assert queued.status == "skipped"
    assert never_run.status == "not started"


def test_finished_job_is_skipped_without_a_process(tiny_datasets_dir, tmp_path, monkeypatch):
    job = Job("pop", "tiny", seed=0, profile="smoke")
    run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)

    def no_process(*args, **kwargs):
        raise AssertionError("a finished job must not start a process")

    monkeypatch.setattr(runner.multiprocessing, "get_context", lambda method: type(
        "Context", (), {"Process": staticmethod(no_process)})())
    [outcome] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=True)
    assert outcome.status == "skipped"
    assert outcome.summary["test"]["ndcg@10"] >= 0


def test_unknown_method_lists_available():
    with pytest.raises(UnknownMethodError, match="Available: .*pop.*sasrec"):
        get_method_class("no-such-method")


def test_unknown_setting_lists_available():
    with pytest.raises(ConfigError, match="Available: "):
        get_method_class("pop").resolve_config("smoke", {"learning_rate": "0.1"})


def test_unknown_set_key_suggests_setting():
    from clairo_bench.cli.runs import _check_overrides

    with pytest.raises(ConfigError, match="Did you mean max_epochs\\?$"):
        _check_overrides(["max_epoch=5"], ["sasrec", "pop"])
    with pytest.raises(ConfigError, match="Did you mean split.max_history_items( or |\\?$)"):
        _check_overrides(["max_histroy_items=5"], ["pop"])
    with pytest.raises(ConfigError, match="Settings per method: sasrec: .*patience.*; pop: "):
        _check_overrides(["zzz=5"], ["sasrec", "pop"])
    _check_overrides(["max_epochs=5", "split.max_history_items=10"], ["sasrec", "pop"])


def test_cli_rejects_unknown_set_key(tiny_datasets_dir, tmp_path):
    result = cli("run", "--methods", "pop", "--dataset", "tiny", "--set", "pop.lr=1",
                 "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    assert "pop has no setting 'lr'" in result.stdout


def test_plugin_module_in_current_folder_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_local_method.py").write_text(
        "from clairo_bench.methods.pop import Pop\n\n\n"
        "class LocalPop(Pop):\n    name = 'local-pop'\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    # The console script's sys.path contains neither "" nor the current folder.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    from clairo_bench.methods import registry

    monkeypatch.setattr(registry, "_plugins", dict(registry._plugins))  # forget it afterwards
    assert registry.register_plugin("my_local_method:LocalPop") == "local-pop"
    assert get_method_class("local-pop").__module__ == "my_local_method"
    assert sys.path[-1] == str(tmp_path)


def test_plugin_distribution_runs_through_cli(tiny_datasets_dir, tmp_path):
    target = tmp_path / "site"
    build = shutil.copytree(REPOSITORY / "examples" / "plugin", tmp_path / "plugin-src")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(build)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), os.environ["PYTHONPATH"]])

    listing = cli("methods", "list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "recent-items" in listing.stdout
    assert "clairo-bench-recent" in listing.stdout

    run = cli("run", "--methods", "recent-items", "--dataset", "tiny", "--profile", "smoke",
              "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(next((tmp_path / "runs").glob("tiny/recent-items/*/summary.json")).read_text())
    assert 0.0 <= summary["test"]["ndcg@10"] <= 1.0


def test_job_key_ignores_override_order():
    first = Job("sasrec", "tiny", 0, overrides=("lr=0.1", "sasrec.lr=0.2"))
    second = Job("sasrec", "tiny", 0, overrides=("sasrec.lr=0.2", "lr=0.1"))
    assert first.key == second.key
    assert first.resolved_overrides()["method"] == {"lr": 0.2}


def test_job_key_ignores_other_methods_overrides():
    plain = Job("sasrec", "tiny", 0)
    other = Job("sasrec", "tiny", 0, overrides=("gru4rec.lr=1",))
    assert plain.key == other.key


def test_job_key_depends_on_dataset_hash():
    assert Job("pop", "tiny", 0, dataset_hash="a").key != Job("pop", "tiny", 0, dataset_hash="b").key


def test_repeated_override_key_raises():
    job = Job("sasrec", "tiny", 0, overrides=("eval.ks=5", "eval.ks=10"))
    with pytest.raises(ConfigError, match="more than once"):
        job.resolved_overrides()


def test_invalid_eval_value_raises_before_run():
    with pytest.raises(ConfigError):
        Job("pop", "tiny", 0, overrides=("eval.ks=abc",)).resolved_overrides()


def test_repeated_seeds_give_one_job():
    jobs = expand_jobs(["pop", "pop"], "tiny", [0, 0, 1], "smoke")
    assert [(job.method, job.seed) for job in jobs] == [("pop", 0), ("pop", 1)]


def test_dataset_name_with_path_is_rejected(tiny_datasets_dir):
    from clairo_bench.data.catalog import load_dataset
    from clairo_bench.data.dataset import DataError

    with pytest.raises(DataError, match="Invalid dataset name"):
        load_dataset("../tiny")


def test_threads_per_job_splits_the_cores_between_workers(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    assert runner.threads_per_job(1) is None
    assert runner.threads_per_job(2) == 4
    assert runner.threads_per_job(16) == 1


def test_threads_per_job_leaves_an_explicit_omp_setting(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runner.threads_per_job(4) is None


def test_fit_sees_only_training_interactions(tiny_datasets_dir, tmp_path):
    jobs = expand_jobs(["counts-fit-interactions"], "tiny", [0], "smoke",
                       plugins=[f"{PLUGINS}:CountsFitInteractions"])
    [outcome] = run_jobs(jobs, tmp_path / "runs", tmp_path / "cache", isolate=False)
    seen = int((outcome.run_dir / "work" / "fit_interactions.txt").read_text())
    config = json.loads((outcome.run_dir / "config.json").read_text())
    held_out = 2 * (config["dataset"]["n_users"] - config["split"]["dropped_users"])
    assert seen == config["dataset"]["n_interactions"] - held_out


def test_run_rejects_bad_arguments_before_any_job(tmp_path):
    for arguments, message in (
        (["--methods", ""], "No method given"),
        (["--methods", "pop", "--device", "gpu"], "Unknown device 'gpu'"),
        (["--methods", "pop", "--seeds=-1"], "Seeds must be in"),
        (["--methods", "pop", "--workers", "0"], "--workers must be at least 1"),
    ):
        result = cli("run", "--dataset", "instruments", "--runs-dir", str(tmp_path / "runs"),
                     *arguments, cwd=tmp_path)
        assert result.returncode == 2, arguments
        assert message in result.stdout + result.stderr, arguments
        assert not (tmp_path / "runs").exists(), arguments


def test_methods_list_reports_a_missing_plugin_module(tmp_path):
    result = cli("methods", "list", "--plugin", "no_such_module:X", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr


def test_validation_reused_from_kept_epoch(tiny_datasets_dir, tmp_path):
    job = Job("sasrec", "tiny", seed=0, profile="smoke", overrides=("eval.ks=5,20",))
    [outcome] = run_jobs([job], tmp_path / "runs", tmp_path / "cache", isolate=False)
    assert outcome.status == "finished", outcome.error
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (outcome.run_dir / "train_log.jsonl").read_text().splitlines()]
    kept_record = next(record for record in records if record["epoch"] == summary["best_epoch"])
    assert summary["valid_source"] == "kept epoch"
    # The validation pass also scored K=10 for early stopping; the summary keeps the run's cut-offs.
    assert set(summary["valid"]) == {f"{name}@{k}" for name in ("recall", "ndcg", "mrr") for k in (5, 20)}
    for name, value in summary["valid"].items():
        assert value == kept_record[f"valid_{name}"]


def test_equal_copy_of_validation_metrics_is_scored_again(tiny_datasets_dir, tmp_path):
    jobs = expand_jobs(["copies-validation"], "tiny", [0], "smoke", plugins=[f"{PLUGINS}:CopiesValidation"])
    [outcome] = run_jobs(jobs, tmp_path / "runs", tmp_path / "cache", isolate=False)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["valid_source"] == "after training"
    assert summary["valid"]["ndcg@10"] > 0


def test_reused_validation_checks_identity_and_drops_extra_cutoffs():
    handed_out = [{"ndcg@10": 0.5, "ndcg@20": 0.6, "invalid_generation_rate": 0.1}]
    assert runner._reused_validation(dict(handed_out[0]), handed_out, (20,)) is None
    assert runner._reused_validation(None, handed_out, (20,)) is None
    assert runner._reused_validation(handed_out[0], handed_out, (20,)) == {
        "ndcg@20": 0.6, "invalid_generation_rate": 0.1}


def test_cli_table_shows_the_runs_own_cutoffs(tiny_datasets_dir, tmp_path):
    result = cli("run", "--methods", "pop", "--dataset", "tiny", "--profile", "smoke", "--set", "eval.ks=5,50",
                 "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if "method" in line and "seed" in line)
    assert [cell.strip() for cell in header.split("┃")[4:8]] == ["recall@5", "ndcg@5", "recall@50", "ndcg@50"]
    assert "Cut-offs 50 exceed the 24 items of tiny" in " ".join(result.stderr.split())

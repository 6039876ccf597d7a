import numpy as np
import pytest

from clairo_bench.reporting.collect import (
    IncomparableRunsError,
    ReportError,
    collect_runs,
    discover_runs,
    seed_averaged_per_user,
    select_runs,
)
from test_reporting_support import ranks_with_hits, write_run


def test_select_runs_keeps_latest_finished(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), finished_at="2026-01-01T00:00:00+00:00")
    newer = write_run(tmp_path, "pop", 0, ranks_with_hits(4, 2), finished_at="2026-02-01T00:00:00+00:00",
                      overrides=("pop.x=1",))
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy")
    assert [run.run_dir for run in selection.runs] == [newer]


def test_select_runs_lists_failed_as_missing(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1))
    failed = write_run(tmp_path, "sasrec", 0, ranks_with_hits(4, 1), status="failed")
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy")
    assert selection.methods == ["pop"]
    assert [(m.method, m.seed, m.run_dir) for m in selection.missing] == [("sasrec", 0, failed)]
    assert "out of memory" in selection.missing[0].reason


def test_select_runs_lists_incomplete_as_missing(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1))
    write_run(tmp_path, "pop", 1, ranks_with_hits(4, 1), status="incomplete")
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy")
    assert [run.seed for run in selection.runs] == [0]
    assert selection.missing[0].reason.startswith("incomplete")


def test_failed_rerun_does_not_hide_finished_run(tmp_path):
    finished = write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1))
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), status="failed", overrides=("pop.x=2",))
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy")
    assert [run.run_dir for run in selection.runs] == [finished]
    assert selection.missing == ()


def test_select_runs_requires_profile_when_several(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), profile="quick")
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), profile="paper")
    with pytest.raises(ReportError, match="paper, quick"):
        select_runs(discover_runs(tmp_path, "toy"), "toy")


def test_select_runs_filters_profile(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), profile="quick")
    paper = write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), profile="paper")
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy", profile="paper")
    assert [run.run_dir for run in selection.runs] == [paper]


def test_unknown_dataset_names_available_ones(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1))
    with pytest.raises(ReportError, match="toy"):
        discover_runs(tmp_path, "arts")


def test_collect_rejects_different_splits(tmp_path):
    first = write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), split_key="split-A")
    second = write_run(tmp_path, "sasrec", 0, ranks_with_hits(4, 1), split_key="split-B")
    with pytest.raises(IncomparableRunsError) as raised:
        collect_runs(tmp_path, "toy")
    message = str(raised.value)
    assert "split.key" in message
    assert '"split-A"' in message
    assert '"split-B"' in message
    assert str(first) in message
    assert str(second) in message


def test_collect_rejects_different_data_hashes(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), content_hash="hash-A")
    write_run(tmp_path, "sasrec", 0, ranks_with_hits(4, 1), content_hash="hash-B")
    with pytest.raises(IncomparableRunsError, match="dataset.content_hash differs.*hash-A.*hash-B"):
        collect_runs(tmp_path, "toy")


def test_collect_rejects_different_protocols(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), exclude_history_items=False)
    write_run(tmp_path, "sasrec", 0, ranks_with_hits(4, 1), exclude_history_items=True)
    with pytest.raises(IncomparableRunsError, match="evaluation differs"):
        collect_runs(tmp_path, "toy")


def test_collect_accepts_different_batch_sizes(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), batch_size=256)
    write_run(tmp_path, "sasrec", 0, ranks_with_hits(4, 1), batch_size=32)
    assert collect_runs(tmp_path, "toy").methods == ["pop", "sasrec"]


def test_seed_averaged_per_user_hand_case(tmp_path):
    write_run(tmp_path, "pop", 0, [1, 1000, 1, 1000])
    write_run(tmp_path, "pop", 1, [1, 1, 1000, 1000])
    selection = collect_runs(tmp_path, "toy")
    averaged = seed_averaged_per_user(selection.runs_of("pop"), ["recall@5"])
    np.testing.assert_allclose(averaged.loc[["U0", "U1", "U2", "U3"], "recall@5"], [1.0, 0.5, 0.5, 0.0])


def test_seed_averaged_per_user_rejects_missing_metric(tmp_path):
    write_run(tmp_path, "pop", 0, [1, 2])
    selection = collect_runs(tmp_path, "toy")
    with pytest.raises(ReportError, match="recall@20"):
        seed_averaged_per_user(selection.runs_of("pop"), ["recall@20"])


def test_collect_without_finished_runs_names_other_profiles(tmp_path):
    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1), profile="smoke")
    write_run(tmp_path, "clairo", 0, ranks_with_hits(4, 1), profile="quick", status="incomplete")
    with pytest.raises(ReportError) as caught:
        collect_runs(tmp_path, "toy", profile="quick")
    assert "Finished runs exist for profile(s) smoke; pass --profile with one of them." in str(caught.value)


def test_collected_runs_read_per_user_once(tmp_path, monkeypatch):
    import pandas as pd

    write_run(tmp_path, "pop", 0, ranks_with_hits(4, 1))
    write_run(tmp_path, "pop", 1, ranks_with_hits(4, 2))
    reads = []
    original = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: reads.append(args[0]) or original(*args, **kwargs))
    selection = collect_runs(tmp_path, "toy")
    seed_averaged_per_user(selection.runs_of("pop"), ["ndcg@5"])
    assert len(reads) == 2

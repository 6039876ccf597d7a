"""`recommend`: reload a finished run and rank items for a history given on the command line."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.data.catalog import load_dataset
from clairo_bench.data.dataset import DataError
from clairo_bench.inference import load_trained_method, parse_history, recommend_for_history
from clairo_bench.methods.base import Recommendations
from clairo_bench.runner import Job, run_jobs


@pytest.fixture
def pop_run(tiny_datasets_dir, tmp_path):
    [outcome] = run_jobs([Job("pop", "tiny", seed=0, profile="smoke")], tmp_path / "runs",
                         tmp_path / "cache", isolate=False)
    assert outcome.status == "finished"
    return outcome.run_dir, tmp_path / "cache"


def test_pop_ranking_excludes_history(pop_run):
    run_dir, cache_dir = pop_run
    trained = load_trained_method(run_dir, cache_dir)
    counts = np.load(run_dir / "train_item_counts.npy")
    by_count = np.argsort(-counts, kind="stable").tolist()
    history = np.asarray(by_count[:2])

    with_history = recommend_for_history(trained.method, trained.dataset, history, k=4)
    without_history = recommend_for_history(trained.method, trained.dataset, history, k=4, exclude_history=True)

    assert [item.item_index for item in with_history] == by_count[:4]
    assert [item.item_index for item in without_history] == by_count[2:6]
    assert [item.rank for item in without_history] == [1, 2, 3, 4]
    assert without_history[0].item_id == trained.dataset.item_ids[by_count[2]]
    assert trained.max_history_items == 20


class _RecordsHistories:
    name = "records"

    def __init__(self):
        self.seen = []

    def recommend(self, histories, k):
        self.seen.extend(np.asarray(h).tolist() for h in histories)
        return Recommendations(items=np.array([[3, -1, 99, 4]]))


def test_history_capped_invalid_dropped(tiny_datasets_dir):
    dataset = load_dataset("tiny")
    method = _RecordsHistories()
    ranked = recommend_for_history(method, dataset, np.arange(10), k=3, max_history_items=4)
    assert method.seen == [[6, 7, 8, 9]]
    # -1 (empty slot) and 99 (beyond the 24 items) are not items.
    assert [item.item_index for item in ranked] == [3, 4]


def test_parse_history_blank_and_empty(tiny_datasets_dir):
    dataset = load_dataset("tiny")
    assert parse_history([" I0001", "", "#2 "], dataset).tolist() == [1, 2]
    with pytest.raises(DataError, match="The history is empty"):
        parse_history([""], dataset)
    with pytest.raises(DataError, match="'I9999' is not in dataset 'tiny'"):
        parse_history(["I9999"], dataset)


def test_cli_ranking_and_empty_history(pop_run):
    run_dir, cache_dir = pop_run
    runner = CliRunner()
    base = ["recommend", "--run", str(run_dir), "--cache-dir", str(cache_dir)]
    empty = runner.invoke(app, [*base, "--history", ""])
    assert empty.exit_code == 2
    assert "The history is empty" in empty.output
    listed = runner.invoke(app, [*base, "--history", "I0001,I0002", "--k", "3", "--exclude-history"],
                           terminal_width=200)
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if line.count("│") >= 4]
    assert len(rows) == 3
    assert not any(" I0001 " in row or " I0002 " in row for row in rows)
    assert "Dataset tiny has no titles for these items" in " ".join(listed.output.split())


def test_cli_rows_can_be_pasted_back(pop_run):
    run_dir, cache_dir = pop_run
    base = ["recommend", "--run", str(run_dir), "--cache-dir", str(cache_dir), "--k", "2"]
    first = CliRunner().invoke(app, [*base, "--history", "I0001"], terminal_width=200)
    assert first.exit_code == 0, first.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in first.output.splitlines()
            if line.startswith("│")]
    assert [len(row) for row in rows] == [3, 3]  # no title column without titles
    for _, index, identifier in rows:
        assert index == f"#{int(identifier[1:])}"  # tiny's item I000N has index N
    again = CliRunner().invoke(app, [*base, "--history", ",".join(row[1] for row in rows)], terminal_width=200)
    assert again.exit_code == 0, again.output


def test_parse_history_hints_case_and_hash(tiny_datasets_dir):
    dataset = load_dataset("tiny")
    with pytest.raises(DataError, match="'i0001' is not in dataset 'tiny', but 'I0001' is; identifiers are case"):
        parse_history(["i0001"], dataset)
    with pytest.raises(DataError, match="write item indices with a hash, as #7"):
        parse_history(["7"], dataset)


def test_cli_short_list_and_brackets(pop_run):
    run_dir, cache_dir = pop_run
    runner = CliRunner()
    base = ["recommend", "--run", str(run_dir), "--cache-dir", str(cache_dir)]
    everything = ",".join(f"I{index:04d}" for index in range(24))
    result = runner.invoke(app, [*base, "--history", everything, "--exclude-history"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # undo the console's line wrapping
    assert "the first 4 of the 24 given do not inform the ranking" in text
    assert "0 of the 10 items asked for: the catalogue holds 24 items, 24 of them in the history" in text
    odd = runner.invoke(app, [*base, "--history", "B00[/x]"])
    assert odd.exit_code == 2
    assert "'B00[/x]' is not in dataset" in " ".join(odd.output.split())
    superscript = runner.invoke(app, [*base, "--history", "#²"])
    assert superscript.exit_code == 2

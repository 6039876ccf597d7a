"""Print the measured cost of finished runs: wall time, training and test time, peak memory.

Usage: python benchmarks/run_costs.py [--runs-dir runs] [--profile quick] [--format md|tsv] [--per-method]

Reads summary.json, config.json and provenance.json of every finished run directory under
RUNS_DIR/DATASET/METHOD/. Wall time covers the whole job: data loading, training, validation
and the test evaluation of every user. Peak memory is the job process's maximum resident set
size. The thread and CPU columns come from provenance.json, so a reader can tell runs that had
the cores to themselves from runs that shared them (the load is not recorded). With
--per-method, one row per (dataset, method) gives the mean and range over seeds instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_rows(runs_dir: Path, profile: str) -> list[dict]:
    rows = []
    for summary_path in sorted(runs_dir.glob(f"*/*/{profile}-seed*/summary.json")):
        run_dir = summary_path.parent
        summary = read_json(summary_path)
        config = read_json(run_dir / "config.json")
        provenance = read_json(run_dir / "provenance.json")
        test = summary.get("test", {})
        rows.append({
            "dataset": run_dir.parts[-3],
            "method": run_dir.parts[-2],
            "seed": config.get("seed", "?"),
            "wall_s": summary.get("wall_time_s"),
            "fit_s": summary.get("fit_seconds"),
            "test_s": summary.get("test_seconds"),
            "peak_mib": summary.get("peak_memory_mb"),
            "best_epoch": summary.get("best_epoch"),
            "epochs_run": summary.get("epochs_run"),
            "ndcg@10": test.get("ndcg@10"),
            "invalid": test.get("invalid_generation_rate"),
            "threads": provenance.get("torch_threads", "?"),
            "cpus": provenance.get("cpu_count", "?"),
            "device": provenance.get("device", "?"),
            "run": run_dir.name,
        })
    return rows


FORMATS = {"wall_s": "{:,.1f}", "fit_s": "{:,.1f}", "test_s": "{:,.1f}", "peak_mib": "{:,.0f}",
           "ndcg@10": "{:.4f}", "invalid": "{:.4f}", "wall_s_mean": "{:,.0f}", "fit_s_mean": "{:,.0f}",
           "test_s_mean": "{:,.0f}", "peak_mib_max": "{:,.0f}", "ndcg@10_mean": "{:.4f}",
           "ndcg@10_std": "{:.4f}"}


def cell(column: str, value) -> str:
    if value is None:
        return "-"
    if column in FORMATS and isinstance(value, (int, float)):
        return FORMATS[column].format(value)
    return str(value)


def per_method_rows(rows: list[dict]) -> list[dict]:
    """Summarize runs per (dataset, method): seeds, mean and range of times, largest peak memory."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"]), []).append(row)
    summary = []
    for (dataset, method), group in sorted(groups.items()):
        def values(column: str) -> list[float]:
            return [row[column] for row in group if isinstance(row[column], (int, float))]

        walls, ndcgs = values("wall_s"), values("ndcg@10")
        summary.append({
            "dataset": dataset,
            "method": method,
            "seeds": " ".join(str(row["seed"]) for row in sorted(group, key=lambda r: str(r["seed"]))),
            "wall_s_mean": statistics.fmean(walls) if walls else None,
            "wall_s_range": f"{min(walls):,.0f}-{max(walls):,.0f}" if walls else None,
            "fit_s_mean": statistics.fmean(values("fit_s")) if values("fit_s") else None,
            "test_s_mean": statistics.fmean(values("test_s")) if values("test_s") else None,
            "peak_mib_max": max(values("peak_mib")) if values("peak_mib") else None,
            "ndcg@10_mean": statistics.fmean(ndcgs) if ndcgs else None,
            "ndcg@10_std": statistics.stdev(ndcgs) if len(ndcgs) > 1 else None,
        })
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--format", choices=("md", "tsv"), default="md")
    parser.add_argument("--per-method", action="store_true",
                        help="one row per (dataset, method): mean and range over seeds")
    args = parser.parse_args()
    rows = run_rows(args.runs_dir, args.profile)
    if not rows:
        raise SystemExit(f"No finished {args.profile} runs under {args.runs_dir}.")
    if args.per_method:
        rows = per_method_rows(rows)
    columns = list(rows[0])
    if args.format == "tsv":
        print("\t".join(columns))
        for row in rows:
            print("\t".join(cell(column, row[column]) for column in columns))
        return
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(column, row[column]) for column in columns) + " |")


if __name__ == "__main__":
    main()

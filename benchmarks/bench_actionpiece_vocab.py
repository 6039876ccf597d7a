"""Time ActionPiece vocabulary construction and segmentation on Instruments.

Reads the Instruments release of MQL4GRec (Amazon 2018 Musical Instruments) directly:
`Instruments.index_lemb.json` (4 text RQ-VAE codes per item) and `Instruments.inter.json`
(chronological user sequences). Item features are the 4 text codes plus a hash bucket
`random.Random(0).randrange(128)` drawn per item index; the corpus is every user's sequence
without its last two items (the training parts, 102,002 interactions). This is the input of the
`instruments_text` conformance fixture.

One build runs to the largest size; the time and peak memory at each smaller size are taken when
the build passes it, which equals a separate build of that size because the merges before it do
not depend on the target. Peak memory is the process's maximum resident set size
(`resource.getrusage`), which includes the interpreter, numpy and the loaded data.

Usage: python benchmarks/bench_actionpiece_vocab.py [--data-dir DIR] [--sizes 5000 20000 40000]
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import re
import resource
import time
from pathlib import Path

import numpy as np

from clairo_bench.tokenization import ActionPieceTokenizer, ActionPieceVocabulary

# The embedded copy of the MQL4GRec Instruments release (xz-compressed JSON).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "datasets" / "embedded" / "instruments"
CODE_PATTERN = re.compile(r"_(\d+)>$")


def read_json(path: Path):
    """Read `path`, or `path` with an .xz suffix when only the compressed file exists."""
    if path.exists():
        return json.loads(path.read_text())
    with lzma.open(path.with_name(path.name + ".xz"), "rt") as handle:
        return json.load(handle)


def load_instruments(data_dir: Path) -> tuple[np.ndarray, list[list[int]]]:
    """Return (item features, training corpus) as described in the module docstring."""
    codes = read_json(data_dir / "Instruments.index_lemb.json")
    interactions = read_json(data_dir / "Instruments.inter.json")
    buckets = random.Random(0)
    rows = []
    for item in range(len(codes)):
        values = [int(CODE_PATTERN.search(code).group(1)) for code in codes[str(item)]]
        rows.append(values + [buckets.randrange(128)])
    corpus = [interactions[user][:-2] for user in sorted(interactions, key=int)]
    return np.array(rows, dtype=np.int64), corpus


def distinct_buckets(features: np.ndarray) -> np.ndarray:
    """Return `features` with the bucket of a repeated feature row moved to a free value.

    Random buckets leave a few items with identical features, and the tokenizer needs distinct
    items to decode. Segmentation speed does not depend on which free bucket an item gets.
    """
    fixed = features.copy()
    used: dict[tuple[int, ...], set[int]] = {}
    for row in fixed:
        taken = used.setdefault(tuple(row[:-1].tolist()), set())
        if int(row[-1]) in taken:
            row[-1] = min(set(range(128)) - taken)
        taken.add(int(row[-1]))
    return fixed


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with Instruments.*.json or .json.xz (default: the embedded copy)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[5000, 20000, 40000], help="vocabulary sizes"
    )
    parser.add_argument(
        "--segment-sequences",
        type=int,
        default=2000,
        help="sequences segmented per throughput figure",
    )
    parser.add_argument(
        "--history", type=int, default=20, help="items per segmented history (most recent)"
    )
    arguments = parser.parse_args()

    features, corpus = load_instruments(arguments.data_dir)
    print(
        f"Instruments: {features.shape[0]} items x {features.shape[1]} categories, "
        f"{len(corpus)} sequences, {sum(map(len, corpus))} training interactions"
    )
    print(f"before build: {load_text()}, peak RSS {peak_rss_mib():.0f} MiB")

    sizes = sorted(arguments.sizes)
    n_initial = 1 + sum(len(np.unique(features[:, c])) for c in range(features.shape[1]))
    checkpoints = {size - n_initial: size for size in sizes}
    started_wall = time.perf_counter()
    started_cpu = time.process_time()
    print(f"{'tokens':>8} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13}")

    def progress(done: int, planned: int) -> None:
        if done in checkpoints:
            print(
                f"{checkpoints[done]:>8} {time.perf_counter() - started_wall:>8.1f} "
                f"{time.process_time() - started_cpu:>8.1f} {peak_rss_mib():>13.0f}",
                flush=True,
            )

    vocabulary = ActionPieceVocabulary.build(
        features,
        corpus,
        sizes[-1],
        category_modalities=("text",) * 4 + ("dedup",),
        progress=progress,
    )
    print(f"after build: {load_text()}; {vocabulary.size} tokens")

    tokenizer = ActionPieceTokenizer(vocabulary, distinct_buckets(features))
    histories = [sequence[-arguments.history :] for sequence in corpus if sequence]
    histories = histories[: arguments.segment_sequences]
    n_items = sum(len(history) for history in histories)
    for label, rng in (("deterministic", None), ("SPR", np.random.default_rng(0))):
        started = time.perf_counter()
        n_tokens = sum(len(tokenizer.encode_sequence(history, rng)) for history in histories)
        elapsed = time.perf_counter() - started
        print(
            f"segmentation {label}: {len(histories) / elapsed:.0f} sequences/s "
            f"({len(histories)} histories of <= {arguments.history} items, "
            f"{n_tokens / n_items:.2f} tokens per item)"
        )
    started = time.perf_counter()
    for item in range(len(features)):
        tokenizer.encode_item(item)
    elapsed = time.perf_counter() - started
    print(f"encode_item (first call, uncached): {len(features) / elapsed:.0f} items/s")
    print(f"end: {load_text()}")


if __name__ == "__main__":
    main()

"""Print evaluator throughput (users per second) and peak memory on a synthetic catalogue.

Usage: python benchmarks/bench_evaluator.py [--items 1000000] [--users 2000] [--batch-size 256]

The scorer returns random float32 scores, so the figures measure ranking and metric cost, not a
model. The evaluator caps each scored batch at about 64M floats, so with a million items it
scores 64 users per call whatever --batch-size is.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from clairo_bench.data.split import EvalPairs
from clairo_bench.evaluation import EvalSettings, Evaluator
from clairo_bench.methods.base import Method, MethodConfig, Recommendations


class RandomScorer(Method):
    name = "random-scorer"
    config_class = MethodConfig

    def __init__(self, n_items: int, seed: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.generator = np.random.default_rng(seed)

    def fit(self, dataset, split, context) -> None:
        pass

    def recommend(self, histories, k):
        return Recommendations(
            scores=self.generator.random((len(histories), self.n_items), dtype=np.float32)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalogue size")
    parser.add_argument("--users", type=int, default=2_000, help="evaluated users")
    parser.add_argument("--batch-size", type=int, default=256, help="histories per recommend call")
    parser.add_argument("--history-length", type=int, default=20, help="items per history")
    parser.add_argument("--exclude-history", action="store_true", help="mask history items")
    arguments = parser.parse_args()

    generator = np.random.default_rng(0)
    pairs = EvalPairs(
        users=np.arange(arguments.users),
        histories=[generator.integers(0, arguments.items, arguments.history_length)
                   for _ in range(arguments.users)],
        targets=generator.integers(0, arguments.items, arguments.users),
    )
    evaluator = Evaluator(EvalSettings(batch_size=arguments.batch_size,
                                       exclude_history_items=arguments.exclude_history))
    started = time.perf_counter()
    result = evaluator.evaluate(RandomScorer(arguments.items, seed=1), pairs, arguments.items)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"catalogue: {arguments.items:,} items, users: {arguments.users:,}, "
          f"exclude history: {arguments.exclude_history}")
    print(f"throughput: {arguments.users / seconds:,.0f} users/s ({seconds:.1f} s in total)")
    print(f"peak resident memory: {peak_mib:,.0f} MiB")
    print(f"mean recall@20 of the random scorer: {result.per_user['recall@20'].mean():.5f} "
          f"(expected about {20 / arguments.items:.5f})")


if __name__ == "__main__":
    main()

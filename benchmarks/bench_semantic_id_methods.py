"""Print the cost of a training step and of beam search for TIGER and MQL4GRec, and a job estimate.

Usage: python benchmarks/bench_semantic_id_methods.py [--methods tiger,mql4grec]
    [--profile quick] [--dataset instruments] [--threads 2] [--steps 6] [--users 512]

For each method the script builds the profile's IDs, vocabulary and (untrained) T5 on the real
dataset, then times `--steps` optimizer steps on batches cut as in training (length-grouped) and
`recommend` on `--users` validation histories. CPU seconds are printed next to wall seconds
because wall time on a shared machine depends on load. The estimate of a whole job assumes every
epoch costs its steps times the measured step, and that the job scores all validation users once
per in-training validation plus twice more (the runner's validation and the test). It is an
estimate, not a measurement, and it leaves out early stopping. Untrained models decode as fast as trained ones, since beam search
always runs a fixed number of steps.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from clairo_bench.data.catalog import load_dataset
from clairo_bench.data.split import build_split
from clairo_bench.generative.seq2seq import length_grouped_batches, train_epoch
from clairo_bench.generative.t5 import build_t5
from clairo_bench.methods.registry import get_method_class


def timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="tiger,mql4grec")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="instruments")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--users", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    dataset = load_dataset(args.dataset)
    split = build_split(dataset)
    n_users = len(split.valid)
    for name in args.methods.split(","):
        method_class = get_method_class(name)
        config = method_class.resolve_config(args.profile)
        method = method_class(config)
        method.max_history = config.max_history_items or split.settings.max_history_items
        ids = {
            space: method.build_semantic_ids(space, dataset, split, context=None)
            for space in method.id_spaces()
        }
        method.set_vocabulary(ids)
        method.model = build_t5(config.t5_settings(), method.layout.vocab_size)
        optimizer = torch.optim.AdamW(method.model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        examples = method.training_examples(split).for_epoch(generator, config.examples_per_epoch)

        # One length-grouped batch order as in training; the first `--steps` batches are timed.
        batches = length_grouped_batches(
            method.batcher.input_lengths(examples), config.batch_size, generator
        )
        sample = examples.take(np.concatenate(batches[: args.steps]))
        method.model.train()
        wall, cpu = timed(
            lambda: train_epoch(
                method.model, optimizer, method.batcher, sample, config.batch_size, generator, "cpu"
            )
        )
        steps_per_epoch = math.ceil(len(examples) / config.batch_size)
        step_wall, step_cpu = wall / args.steps, cpu / args.steps
        print(
            f"{name} ({args.profile}, {args.threads} threads): {len(examples)} examples/epoch, "
            f"{steps_per_epoch} steps/epoch; training step of {config.batch_size}: "
            f"{step_wall:.3f} s wall, {step_cpu:.3f} s CPU"
        )

        histories = split.valid.histories[: args.users]
        method.model.eval()
        wall, cpu = timed(lambda: method.recommend(histories, 20))
        pass_wall = wall * n_users / len(histories)
        pass_cpu = cpu * n_users / len(histories)
        routes = len(method.inference_routes())
        print(
            f"{name}: recommend on {len(histories)} users ({config.num_beams} beams x {routes} "
            f"routes): {wall:.2f} s wall, {cpu:.2f} s CPU; all {n_users} users: "
            f"{pass_wall:.0f} s wall, {pass_cpu:.0f} s CPU"
        )
        # Scoring passes: one per in-training validation, then the runner's validation and test.
        passes = math.ceil(config.max_epochs / config.eval_every) + 2
        steps = config.max_epochs * steps_per_epoch
        print(
            f"{name}: estimated job ({config.max_epochs} epochs, {passes} scoring passes): "
            f"{(steps * step_wall + passes * pass_wall) / 60:.1f} min wall at this load, "
            f"{(steps * step_cpu + passes * pass_cpu) / 60:.1f} min of CPU time"
        )


if __name__ == "__main__":
    main()

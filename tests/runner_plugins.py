"""Methods that the runner tests load with `--plugin runner_plugins:Class`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from clairo_bench.methods.base import Method, MethodConfig, Recommendations
from clairo_bench.training import EarlyStopping, train_with_early_stopping


@dataclass(frozen=True)
class SlowEpochsConfig(MethodConfig):
    max_epochs: int = 4
    seconds_per_epoch: float = 1.0


class SlowEpochs(Method):
    """A one-parameter-per-item scorer whose epochs take a fixed time, to test kill and resume."""

    name = "slow-epochs"
    config_class = SlowEpochsConfig

    def fit(self, dataset, split, context):
        self.weights = torch.nn.Parameter(torch.zeros(split.n_items))
        model = torch.nn.ParameterList([self.weights])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        popularity = torch.as_tensor(split.item_popularity(), dtype=torch.float32)

        def train_epoch(epoch):
            started_path = context.work_dir / "epochs_started.txt"
            with open(started_path, "a") as handle:
                handle.write(f"{epoch}\n")
            loss = -(torch.log_softmax(self.weights, 0) * popularity).sum() / popularity.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            time.sleep(self.config.seconds_per_epoch)
            return float(loss)

        train_with_early_stopping(
            model, optimizer, train_epoch, lambda: context.validate(self),
            EarlyStopping(max_epochs=self.config.max_epochs, patience=100),
            context.work_dir, context.log_epoch,
        )

    def recommend(self, histories, k):
        scores = self.weights.detach().numpy()
        return Recommendations(scores=np.tile(scores, (len(histories), 1)))


@dataclass(frozen=True)
class FailingConfig(MethodConfig):
    pass


class Failing(Method):
    name = "failing"
    config_class = FailingConfig

    def fit(self, dataset, split, context):
        raise RuntimeError("deliberate failure in fit")

    def recommend(self, histories, k):
        raise AssertionError("never called")


@dataclass(frozen=True)
class DieConfig(MethodConfig):
    pass


class DiesInFit(Method):
    """Kills its own process, as an out-of-memory kill would."""

    name = "dies-in-fit"
    config_class = DieConfig

    def fit(self, dataset, split, context):
        os._exit(9)

    def recommend(self, histories, k):
        raise AssertionError("never called")


class CountsFitInteractions(Method):
    """Writes how many interactions the dataset given to `fit` holds, to test the training view."""

    name = "counts-fit-interactions"

    def fit(self, dataset, split, context):
        (context.work_dir / "fit_interactions.txt").write_text(str(dataset.n_interactions))
        self.n_items = split.n_items

    def recommend(self, histories, k):
        return Recommendations(scores=np.zeros((len(histories), self.n_items)))


@dataclass(frozen=True)
class CopiesValidationConfig(MethodConfig):
    max_epochs: int = 2


class CopiesValidation(Method):
    """Hands the runner an equal copy of its best validation metrics, which it must not trust."""

    name = "copies-validation"
    config_class = CopiesValidationConfig

    def fit(self, dataset, split, context):
        self.weights = torch.nn.Parameter(torch.as_tensor(split.item_popularity(), dtype=torch.float32))
        model = torch.nn.ParameterList([self.weights])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        outcome = train_with_early_stopping(
            model, optimizer, lambda epoch: 0.0, lambda: context.validate(self),
            EarlyStopping(max_epochs=self.config.max_epochs, patience=100),
            context.work_dir, context.log_epoch,
        )
        context.final_validation = dict(outcome.best_metrics)

    def recommend(self, histories, k):
        scores = self.weights.detach().numpy()
        return Recommendations(scores=np.tile(scores, (len(histories), 1)))

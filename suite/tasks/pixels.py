"""Permuted pixel-by-pixel classification: an image is read one pixel per step, in an
order fixed by a random permutation drawn from the seed, and classified at the last step.

A subclass says where its images come from (:meth:`PixelTask.load`). Loss: cross-entropy
at the last step; ``test_accuracy`` in %. A network without memory can only predict the
class frequencies: ``baseline_loss`` is their entropy and ``baseline_accuracy`` the share
of the most frequent class (both on the test set).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn import functional as F

from .base import Config, Problem, Task

__all__ = ["PixelTask", "permutation"]


def permutation(pixels: int, seed: int) -> torch.Tensor:
    """The pixel order of seed ``seed`` (the same on every machine).

    >>> permutation(5, 0).tolist()
    [4, 0, 1, 3, 2]
    """
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(seed))


class PixelTask(Task):
    """Base of the permuted pixel tasks: ``pixels`` steps, ``classes`` labels."""

    pixels: int = 0
    classes: int = 10

    def load(self, data_dir: Path | None, config: Config):
        """``(train_images, train_labels, test_images, test_labels)``: images as float
        tensors of shape (count, pixels) scaled to [0, 1], labels as int64."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def check(self, config: Config, data_dir: Path | None) -> None:
        super().check(config, data_dir)
        if config.T != self.pixels:
            raise ValueError(
                f"{self.name} sequences have T = {self.pixels} steps (one per pixel), "
                f"got T = {config.T}"
            )

    def problem(self, config: Config, *, seed: int, device, data_dir: Path | None) -> Problem:
        train_x, train_y, test_x, test_y = self.load(data_dir, config)
        order = permutation(self.pixels, seed)
        train_x = train_x[:, order].unsqueeze(-1).to(device)
        train_y = train_y.to(device)
        n = min(config.test_size, len(test_y))
        test = (test_x[:n, order].unsqueeze(-1).to(device), test_y[:n].to(device))

        def sample(batch, generator):
            index = torch.randint(0, len(train_y), (batch,), generator=generator).to(device)
            return train_x[index], train_y[index]

        def loss(out, y):
            return F.cross_entropy(out[:, -1], y)

        def metrics(out, y):
            right = out[:, -1].argmax(-1) == y
            return {"test_loss": loss(out, y), "test_accuracy": 100 * right.float().mean()}

        share = torch.bincount(test[1].cpu(), minlength=self.classes).double() / n
        entropy = -sum(float(p) * math.log(float(p)) for p in share if p > 0)
        return Problem(
            input_size=1,
            output_size=self.classes,
            sample=sample,
            test=test,
            loss=loss,
            metrics=metrics,
            loss_unit="nats",
            baselines={"baseline_loss": entropy, "baseline_accuracy": 100 * float(share.max())},
        )

"""Permuted pixel-by-pixel classification: an image is read one pixel per step, in an
order fixed by a random permutation drawn from the seed, and classified at the last step.

A subclass says where its images come from (:meth:`PixelTask.load`). Loss: cross-entropy
at the last step; ``test_accuracy`` in %. A network without memory can only predict the
class frequencies: ``baseline_loss`` is their entropy and ``baseline_accuracy`` the share
of the most frequent class (both on the test set).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from .base import Config, Problem, Task

__all__ = ["PixelTask", "classification", "permutation"]


def permutation(pixels: int, seed: int) -> torch.Tensor:
    """The pixel order of seed ``seed`` (the same on every machine).

    >>> permutation(5, 0).tolist()
    [4, 0, 1, 3, 2]
    """
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(seed))


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def classification(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    config: Config,
    device,
    classes: int,
    input_size: int,
    view: Callable[[torch.Tensor], torch.Tensor] = _same,
    logits: Callable[[torch.Tensor], torch.Tensor] = _same,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> Problem:
    """The :class:`Problem` of classifying images into ``classes`` labels (the pixel
    tasks and ``digits-conv``): the first ``config.test_size`` test images are the test
    set; training batches are drawn with replacement (``augment(x, generator)`` applied
    when given). ``view`` reshapes the images into the model's input, ``logits`` picks
    the class scores out of its output. Loss: cross-entropy; metrics ``test_loss`` and
    ``test_accuracy`` (%); baselines: the class entropy and the majority class share of
    the test set (what a model that ignores its input can reach)."""
    train_x, train_y = view(train_x).to(device), train_y.to(device)
    n = min(config.test_size, len(test_y))
    test = (view(test_x[:n]).to(device), test_y[:n].to(device))

    def sample(batch, generator):
        index = torch.randint(0, len(train_y), (batch,), generator=generator).to(device)
        x = train_x[index]
        return (augment(x, generator) if augment else x), train_y[index]

    def loss(out, y):
        return F.cross_entropy(logits(out), y)

    def metrics(out, y):
        right = logits(out).argmax(-1) == y
        return {"test_loss": loss(out, y), "test_accuracy": 100 * right.float().mean()}

    share = torch.bincount(test[1].cpu(), minlength=classes).double() / n
    entropy = -sum(float(p) * math.log(float(p)) for p in share if p > 0)
    return Problem(
        input_size=input_size,
        output_size=classes,
        sample=sample,
        test=test,
        loss=loss,
        metrics=metrics,
        loss_unit="nats",
        baselines={"baseline_loss": entropy, "baseline_accuracy": 100 * float(share.max())},
    )


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
        order = permutation(self.pixels, seed)
        return classification(
            *self.load(data_dir, config),
            config=config,
            device=device,
            classes=self.classes,
            input_size=1,
            view=lambda x: x[:, order].unsqueeze(-1),
            logits=lambda out: out[:, -1],
        )

"""Permuted pixel-by-pixel MNIST (Le et al. 2015): 28x28 images read as 784-step
sequences in a permuted order (see :mod:`suite.tasks.pixels`). MNIST is read from
``--data-dir`` and never downloaded (:mod:`suite.tasks.mnist`).

The paper's test accuracies ship as ``results/reference/projunn_pmnist.csv`` and are
printed beside measured pmnist rows.
"""

from __future__ import annotations

from pathlib import Path

from . import mnist
from .base import Config, DataError
from .pixels import PixelTask

__all__ = ["TASK", "PermutedMNIST"]


def quick() -> Config:
    """2 CPU cores, a few minutes per method: hidden 32, 300 steps of batch 32, 500 test
    images. Our choice; far from convergence (the paper trains for many epochs)."""
    return _paper(32).replace(batch=32, steps=300, test_size=500, log_every=50)


def _paper(hidden: int) -> Config:
    return Config(
        T=784,
        hidden=hidden,
        batch=128,
        steps=20000,
        lr=1e-3,
        lr_divisor=32,
        init="henaff",
        test_size=10000,
        log_every=500,
    )


def paper170() -> Config:
    """Kiani et al. 2022 (projUNN, NeurIPS), permuted-MNIST table (docs/tasks.md §3): hidden
    170, RMSprop, the unitary learning rate divided by 32 (as in the paper's copy and
    adding tasks). Batch 128, lr 1e-3 and 20000 steps (about 43 epochs) are our choice:
    they are not recorded in docs/tasks.md."""
    return _paper(170)


def paper360() -> Config:
    """As paper170 with hidden 360 (Kiani et al. 2022, permuted-MNIST table)."""
    return _paper(360)


def paper512() -> Config:
    """As paper170 with hidden 512 (Kiani et al. 2022, permuted-MNIST table)."""
    return _paper(512)


class PermutedMNIST(PixelTask):
    name = "pmnist"
    description = "permuted pixel-by-pixel MNIST, 784 steps (reads --data-dir, no download)"
    presets = {"quick": quick, "paper170": paper170, "paper360": paper360, "paper512": paper512}
    pixels = 784

    def check(self, config: Config, data_dir: Path | None) -> None:
        super().check(config, data_dir)
        if data_dir is None:
            raise DataError("pmnist reads MNIST from --data-dir DIR; none was given")
        if not Path(data_dir).is_dir():
            raise DataError(f"--data-dir {data_dir} is not a folder")
        mnist.find(Path(data_dir))  # the files torchvision or our reader will read

    def load(self, data_dir: Path | None, config: Config):
        train_x, train_y, test_x, test_y = mnist.load(data_dir)
        flat = lambda images: images.reshape(len(images), -1).float() / 255.0  # noqa: E731
        return flat(train_x), train_y.long(), flat(test_x), test_y.long()


TASK = PermutedMNIST()

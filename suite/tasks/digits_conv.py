"""Orthogonal-convolution image classification: ``digits-conv`` (scikit-learn's bundled
8 x 8 digits, no download: runs anywhere, CI included) and its ``paper-cifar10`` preset
(the projUNN paper's CIFAR-10 experiment, read from ``--data-dir``, never downloaded).

Each method is the orthogonal convolution of the classifier (the registry's
``Method.conv``: projUNN's :class:`~projunn_core.nn.OrthogonalConv2d`, Cayley-FFT, expm,
SVD, SOC, unconstrained). The preset's ``T`` is the image side: 8 trains
:class:`suite.tasks.convnets.SmallConvNet` (``hidden`` = its channels) on the digits, 32 the
paper's :class:`suite.tasks.convnets.ResNet9` on CIFAR-10. Loss: cross-entropy; metrics
``test_loss`` and ``test_accuracy`` (%); baselines: the majority class share and the
class entropy of the test set. At the end a run records ``orthogonality``: the largest
``max |sigma - 1|`` over the model's orthogonal layers.

>>> TASK.preset("quick").hidden, TASK.preset("paper-cifar10").T
(16, 32)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch.nn import functional as F

from ..measure.cases import Case, torch_dtype
from ..measure.methods import METHODS
from . import pdigits
from .base import LSTM, Config, DataError, Problem, Target, Task, optimizer_name
from .convnets import ResNet9, SmallConvNet
from .pixels import classification

__all__ = ["CIFAR_FOLDER", "TASK", "ConvImages", "load_cifar10", "load_digits"]

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def quick() -> Config:
    """2 CPU cores, about a minute per method: two orthogonal convolutions of 16
    channels on the 8 x 8 digits (360 test images), batch 64, 400 steps, RMSprop lr 3e-3.
    Our choice (the paper has no digits experiment)."""
    return Config(T=8, hidden=16, batch=64, steps=400, lr=3e-3, init="haar", test_size=360)


def tune_quick() -> Config:
    """The quick preset evaluated every 20 of its 400 steps."""
    return quick().replace(log_every=20)


def paper_cifar10() -> Config:
    """The paper's CIFAR-10 experiment (Kiani et al. 2022, orthogonal convolutions; its
    code's ``cifar_config.yaml``): ResNet-9 with FFT-domain orthogonal convolutions of
    128 and 256 channels, projUNN rank 1, batch 128, 100 epochs (39 000 steps), RMSprop,
    random flips and translations by up to 2 pixels. Not reproduced: the code's momentum
    0.9, weight decay 5e-5, label smoothing 0.01, step schedule and lr 0.5 (its own
    RMSprop); lr 1e-3 is ours. Needs a GPU and CIFAR-10 in ``--data-dir``."""
    return Config(T=32, hidden=128, batch=128, steps=39_000, lr=1e-3, init="haar", test_size=10_000)


def load_digits(config: Config):
    """scikit-learn's digits as ``(train_x, train_y, test_x, test_y)``, images
    ``(count, 1, 8, 8)`` scaled to [0, 1]; the pdigits task's split (the same for every
    seed)."""
    train_x, train_y, test_x, test_y = pdigits.TASK.load(None, config)
    return train_x.view(-1, 1, 8, 8), train_y, test_x.view(-1, 1, 8, 8), test_y


def cifar_folder(data_dir: Path | None) -> Path:
    """The folder holding CIFAR-10's python batches (``data_batch_1`` ... ``test_batch``):
    ``data_dir`` itself or ``data_dir/cifar-10-batches-py``; :class:`DataError` naming
    what was looked for where."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if data_dir is None:
        raise DataError(
            "the paper-cifar10 preset reads CIFAR-10 from --data-dir (the python version, "
            f"{CIFAR_FOLDER}/ with {', '.join(names)}); it never downloads"
        )
    for folder in (Path(data_dir) / CIFAR_FOLDER, Path(data_dir)):
        if all((folder / n).is_file() for n in names):
            return folder
    raise DataError(
        f"CIFAR-10 not found in {data_dir}: expected {', '.join(names)} in {data_dir} or "
        f"{Path(data_dir) / CIFAR_FOLDER} (the python version of CIFAR-10, unpacked from "
        "cifar-10-python.tar.gz); nothing is downloaded"
    )


def load_cifar10(data_dir: Path | None):
    """CIFAR-10 as ``(train_x, train_y, test_x, test_y)``: uint8 images
    ``(count, 3, 32, 32)`` and int64 labels, read from the python batches."""
    folder = cifar_folder(data_dir)

    def read(name):
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images = torch.from_numpy(batch[b"data"]).view(-1, 3, 32, 32)
        return images, torch.tensor(batch[b"labels"], dtype=torch.long)

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y


def _augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flips and translations by up to ``shift`` pixels (zero fill)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    padded = F.pad(x, (shift,) * 4)
    dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


class ConvImages(Task):
    name = "digits-conv"
    description = "image classification with orthogonal convolutions: 8x8 digits, CIFAR-10"
    presets = {"quick": quick, "paper-cifar10": paper_cifar10}
    targets = {"quick": Target(tune_quick, "test_accuracy", 85.0, higher=True, why="our choice")}
    methods = tuple(m.name for m in METHODS.values() if m.conv is not None)

    def skip_reason(self, method, rank, config, device):
        """The suite's skip rules of the ``conv_train_step`` case at C = ``hidden``."""
        if method == LSTM:
            return "digits-conv trains orthogonal convolutions; the LSTM has none"
        case = Case("conv_train_step", method, config.hidden, rank, config.dtype, str(device),
                    spatial=config.T)  # fmt: skip
        return case.skip_reason()

    def check(self, config: Config, data_dir: Path | None) -> None:
        super().check(config, data_dir)
        if config.T not in (8, 32):
            raise ValueError(f"T is the image side: 8 (digits) or 32 (CIFAR-10), got {config.T}")
        if config.T == 8:
            pdigits.check_digits(config, "digits-conv")
        else:
            cifar_folder(data_dir)

    def problem(self, config: Config, *, seed: int, device, data_dir: Path | None) -> Problem:
        if config.T == 8:
            train_x, train_y, test_x, test_y = load_digits(config)
            augment = None
        else:
            train_x, train_y, test_x, test_y = load_cifar10(data_dir)
            mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
            train_x, test_x = ((x.float() / 255 - mean) / std for x in (train_x, test_x))
            augment = _augment
        return classification(
            train_x,
            train_y,
            test_x,
            test_y,
            config=config,
            device=device,
            classes=10,
            input_size=train_x.shape[1],
            augment=augment,
        )

    def build(self, method, rank, problem, config, device):
        dtype = torch_dtype(config.dtype)
        if config.T == 32:
            return ResNet9(method, rank, dtype=dtype, device=device)
        return SmallConvNet(
            method, rank, channels=config.hidden, size=8, dtype=dtype, device=device
        )

    def optimizer(self, model, method, rank, config, generator):
        sketches = {} if rank is None else {"generator": generator}  # projUNN's sketches
        name = optimizer_name(method, config)
        return model.optimizer(name, lr=config.lr, lr_divisor=config.lr_divisor, **sketches)

    def final_metrics(self, model):
        return {"orthogonality": model.orthogonality_error()}


TASK = ConvImages()

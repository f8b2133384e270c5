"""MNIST from a local folder, never downloaded: torchvision's ``MNIST(download=False)``
when torchvision is installed, else the four standard IDX files read directly.

Accepted layouts of ``data_dir``: the IDX files (raw or ``.gz``) in ``data_dir`` itself or
in ``data_dir/MNIST/raw`` (where torchvision keeps them).

>>> import gzip, io, struct, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_idx(d / "x.gz", torch.arange(6, dtype=torch.uint8).reshape(2, 3))
>>> read_idx(d / "x.gz").tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

from .base import DataError

__all__ = ["FILES", "find", "load", "read_idx", "write_idx"]

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The standard MNIST file names (each may also end in ``.gz``)."""

_UBYTE = 0x08


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (raw or gzipped) as a uint8 tensor."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] or data[1] or data[2] != _UBYTE:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    count = 1
    for size in shape:
        count *= size
    if len(body) != count:
        raise DataError(f"{path}: header says {shape} ({count} bytes), found {len(body)} bytes")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    header = bytes([0, 0, _UBYTE, tensor.dim()]) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + tensor.contiguous().numpy().tobytes())


def find(data_dir: Path) -> dict[str, Path]:
    """The paths of the four files under ``data_dir``; :class:`DataError` naming the
    expected files when one is missing."""
    data_dir = Path(data_dir)
    found, missing = {}, []
    for key, name in FILES.items():
        for folder in (data_dir, data_dir / "MNIST" / "raw"):
            hits = [folder / n for n in (name, name + ".gz") if (folder / n).is_file()]
            if hits:
                found[key] = hits[0]
                break
        else:
            missing.append(name)
    if missing:
        raise DataError(
            f"MNIST not found in {data_dir}: missing {', '.join(missing)} (raw or .gz), "
            f"looked in {data_dir} and {data_dir / 'MNIST' / 'raw'}. This command never "
            "downloads; fetch the four files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) "
            "into one of those folders."
        )
    return found


def _torchvision(data_dir: Path):
    try:
        from torchvision.datasets import MNIST
    except Exception:  # not installed, or built for another torch
        return None
    try:
        train = MNIST(str(data_dir), train=True, download=False)
        test = MNIST(str(data_dir), train=False, download=False)
    except Exception:  # files elsewhere than torchvision expects: read them ourselves
        return None
    return train.data, train.targets, test.data, test.targets


def load(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_images, train_labels, test_images, test_labels)``: uint8 images
    (count, 28, 28) and int64 labels."""
    if data_dir is None:
        raise DataError("pmnist reads MNIST from --data-dir DIR; none was given")
    found = _torchvision(Path(data_dir))
    if found is not None:
        return found
    paths = find(data_dir)
    images = {k: read_idx(paths[k]) for k in ("train_images", "test_images")}
    labels = {k: read_idx(paths[k]).long() for k in ("train_labels", "test_labels")}
    for part in ("train", "test"):
        if len(images[f"{part}_images"]) != len(labels[f"{part}_labels"]):
            raise DataError(f"MNIST {part}: image and label counts differ in {data_dir}")
    return (
        images["train_images"],
        labels["train_labels"],
        images["test_images"],
        labels["test_labels"],
    )

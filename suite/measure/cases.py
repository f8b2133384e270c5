"""Benchmark cases, grids and the skip rules: the one place all three front ends share.

A :class:`Case` names one measurement (workload, method, n, k, dtype, device, options,
spatial).
:meth:`Case.skip_reason` returns why a case cannot run here (``None`` if it can); asv
raises it as ``NotImplementedError`` in ``setup``, pytest calls ``pytest.skip`` with it and
the CLI writes a row with status ``skipped`` and the reason.

A :class:`Grid` is a parameter grid plus the :class:`Settings` its cases are measured
with: ``tiny`` (tests), ``quick`` (2 CPU cores, the default), ``gate`` (the pull-request
gate, see :mod:`suite.gate`) and ``full`` (GPUs), selected
by ``$PROJUNN_BENCH_GRID`` or the CLI's ``--grid/--quick/--full``.

>>> Case("update", "eunn_fft", 12).skip_reason()
'eunn_fft has no functional update (it is measured by train_step and accuracy)'
>>> Case("update", "projunn_t", 8, k=16).skip_reason()
'rank k=16 exceeds n=8'
>>> Case("update", "geoopt_stiefel", 8, dtype="complex64").skip_reason()
'geoopt_stiefel takes float32 or float64 only, not complex64 (geoopt is real-only: ...)'
>>> len(iter_cases("tiny", workloads=["update"], dtypes=["float32"])) > 0
True

**Convolutions.** The ``conv_*`` workloads measure a circular convolution with C channels
on an H x W = ``spatial`` x ``spatial`` grid, trained as a batch of C x C frequency
matrices. Their cases reuse the fields: ``n`` is C (the size of each unitary, so the rank
rules apply unchanged), ``dtype`` the layer's real dtype (its frequency matrices are
complex of the same precision), and the new field ``spatial`` is the grid side (``None``
for dense cases). In the results table the grid is written first in ``options``
(``height=16;width=16;...``), so conv rows are self-describing and sort beside the dense
rows of the same method.

>>> Case("conv_update", "svd", 64, spatial=16).id
'conv_update-svd-n64-hw16-float32-cpu'
>>> Case("conv_train_step", "soc", 16, spatial=8).as_dict()["options"]
'height=8;width=8'
>>> Case("conv_train_step", "soc", 16, dtype="complex64", spatial=8).skip_reason()
'convolutions are real: dtype must be float32 or float64 (complex64 ...)'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from projunn_core.graph import graph_unavailable

from .methods import METHODS
from .rows import IDENTITY, Row
from .settings import Settings
from .workloads import TRAIN_OPTIMIZER, WORKLOADS

__all__ = [
    "CUBIC_CAP",
    "DEVICES",
    "DTYPES",
    "GRIDS",
    "GRID_ENV",
    "Case",
    "Grid",
    "Settings",
    "Skip",
    "available_devices",
    "case_options",
    "current_grid",
    "device_available",
    "grid_name",
    "iter_cases",
    "method_label",
    "method_labels",
    "parse_method_label",
    "torch_dtype",
]

REAL_DTYPES = ("float32", "float64")

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
DEVICES = ("cpu", "cuda")

CUBIC_CAP = {"cpu": 2048, "cuda": 8192}
"""Largest n at which O(N^3) methods run, per device type (one SVD at N=4096 takes ~2 s on
an H200 and >10 s on 2 CPU cores; larger sizes would dominate any sweep)."""

MEMORY_FACTOR = 8
"""A case needs about MEMORY_FACTOR N x N matrices of its dtype (weight, gradient, update
temporaries)."""
MEMORY_HEADROOM = 0.8
"""A case runs only if it needs at most this share of the memory available right now
(``psutil.virtual_memory().available`` on the host, ``torch.cuda.mem_get_info`` free
bytes on a GPU): the rest is left to the allocator, the OS and other processes."""

GRID_ENV = "PROJUNN_BENCH_GRID"


class Skip(NotImplementedError):
    """A case that cannot run here; the message is the reason. Raised by
    :meth:`Case.require` (and so by every workload's ``prepare`` / ``evaluate``): the
    runner writes a "skipped" row, pytest skips, and asv, which treats a
    ``NotImplementedError`` in ``setup`` as a skip, records a skipped combination. Any
    other exception from a case is a failure (an "error" row), never a skip."""


def torch_dtype(name: str) -> torch.dtype:
    """``"complex64"`` -> ``torch.complex64``; ``ValueError`` for unknown names."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}") from None


def device_available(device: str) -> str | None:
    """``None`` if ``device`` ("cpu", "cuda", "cuda:1") can be used here, else the reason."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        return f"device type {dev.type!r} is not supported (use cpu or cuda)"
    if not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"{device} does not exist ({torch.cuda.device_count()} CUDA device(s))"
    return None


def available_devices() -> tuple[str, ...]:
    """The device types present here: ``("cpu",)`` or ``("cpu", "cuda")``."""
    return tuple(d for d in DEVICES if device_available(d) is None)


def _available_memory(device: str) -> int | None:
    """Bytes that can be allocated on ``device`` right now (``None`` if unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev.index or 0)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency
        return None


@dataclass(frozen=True)
class Case:
    """One measurement: ``workload`` of ``method`` at size ``n`` (rank ``k`` for ranked
    methods, ``None`` otherwise), ``dtype`` name, ``device``, extra method ``options``
    (a tuple of ``(name, value)`` pairs, so cases stay hashable) and, for the ``conv_*``
    workloads, the grid side ``spatial`` (H = W; n is then the channel count C)."""

    workload: str
    method: str
    n: int
    k: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    options: tuple[tuple[str, Any], ...] = field(default=())
    spatial: int | None = None

    def __post_init__(self):
        if self.workload not in WORKLOADS:
            raise ValueError(
                f"unknown workload {self.workload!r}; choose from {', '.join(WORKLOADS)}"
            )
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {sorted(METHODS)}")
        torch_dtype(self.dtype)

    @property
    def spec(self):
        """The registry entry (:class:`suite.measure.methods.Method`)."""
        return METHODS[self.method]

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def conv(self) -> bool:
        """Whether this is a convolution case (``conv_*`` workload)."""
        return WORKLOADS[self.workload].matrices == "conv"

    @property
    def frequencies(self) -> int:
        """Frequency matrices in the rfft2 layout, ``H (W // 2 + 1)`` (1 for dense cases)."""
        return self.spatial * (self.spatial // 2 + 1) if self.conv and self.spatial else 1

    def method_options(self) -> dict[str, Any]:
        """Options for the factory / update: the method's defaults, ``options``, ``rank=k``."""
        opts = dict(self.options)
        if self.spec.ranked and self.k is not None:
            opts["rank"] = self.k
        return self.spec.options_for(self.workload, **opts)

    def skip_reason(self) -> str | None:
        """Why this case cannot run here, or ``None``. The only skip rules in the suite."""
        spec = self.spec
        if not WORKLOADS[self.workload].applies_to(spec):
            measured = spec.workloads
            by = ", ".join(measured[:-1]) + " and " + measured[-1]
            if WORKLOADS[self.workload].uses == "update" and spec.update is None:
                return f"{self.method} has no functional update (it is measured by {by})"
            return f"{self.method} does not apply to {self.workload} (it is measured by {by})"
        if spec.dtypes is not None and self.dtype not in spec.dtypes:
            note = f" ({spec.dtype_note})" if spec.dtype_note else ""
            return f"{self.method} takes {' or '.join(spec.dtypes)} only, not {self.dtype}{note}"
        if reason := spec.unavailable():
            return f"{self.method} cannot be built here: {reason}"
        if spec.ranked and self.k is None:
            return f"{self.method} needs a rank k"
        if not spec.ranked and self.k is not None:
            return f"rank options do not apply to {self.method}"
        if self.k is not None and self.k < 1:
            return f"rank k={self.k} must be >= 1"
        if self.n < 2:
            return f"n={self.n} is too small (n >= 2)"
        if self.k is not None and self.k > self.n:
            return f"rank k={self.k} exceeds n={self.n}"
        if spec.pow2 and self.n & (self.n - 1):
            return f"{self.method} needs n to be a power of two, got n={self.n}"
        unknown = sorted(
            {k for k, _ in self.options} - set(WORKLOADS[self.workload].options_of(spec))
        )
        if unknown:
            return f"{self.method} does not take option(s) {unknown}"
        reason = self._conv_skip_reason()
        if reason:
            return reason
        reason = device_available(self.device)
        if reason:
            return reason
        if spec.graphed and (reason := graph_unavailable(self.device)):
            return f"{self.method} is replayed as a CUDA graph: {reason}"
        dev_type = torch.device(self.device).type
        # a batch of F matrices of size n costs like one of size F^(1/3) n
        cubic_n = round(self.n * self.frequencies ** (1 / 3))
        if spec.cubic and cubic_n > CUBIC_CAP[dev_type]:
            batch = f"; {self.frequencies} x C={self.n} costs like N={cubic_n}" if self.conv else ""
            return (
                f"{self.method} costs O(N^3): skipped above N={CUBIC_CAP[dev_type]} "
                f"on {dev_type} (suite.measure.cases.CUBIC_CAP{batch})"
            )
        mem = _available_memory(self.device)
        itemsize = (
            self.torch_dtype.to_complex().itemsize if self.conv else self.torch_dtype.itemsize
        )
        need = MEMORY_FACTOR * self.frequencies * self.n * self.n * itemsize
        if mem is not None and need > MEMORY_HEADROOM * mem:
            return (
                f"needs ~{need / 2**30:.1f} GiB, {self.device} has {mem / 2**30:.1f} GiB "
                f"available (suite.measure.cases.MEMORY_HEADROOM={MEMORY_HEADROOM})"
            )
        return None

    def _conv_skip_reason(self) -> str | None:
        if not self.conv:
            if self.spatial is not None:
                return f"spatial applies to the conv workloads only, not {self.workload}"
            return None
        if self.spatial is None:
            return f"{self.workload} needs the grid side spatial (H = W)"
        if self.spatial < 2:
            return f"spatial={self.spatial} is too small (spatial >= 2)"
        if self.dtype not in REAL_DTYPES:
            real = str(self.torch_dtype.to_real()).removeprefix("torch.")
            return (
                f"convolutions are real: dtype must be float32 or float64 ({self.dtype} "
                f"frequency matrices come with {real})"
            )
        kernel = self.method_options().get("kernel_size", 1)
        if kernel > self.spatial:
            return f"kernel_size={kernel} does not fit a {self.spatial} x {self.spatial} grid"
        return None

    def require(self) -> None:
        """Raise :class:`Skip` with :meth:`skip_reason` if this case cannot run here."""
        reason = self.skip_reason()
        if reason:
            raise Skip(reason)

    @property
    def id(self) -> str:
        """Short readable id, e.g. ``update-projunn_t-n1024-k4-float32-cpu``."""
        parts = [self.workload, self.method, f"n{self.n}"]
        if self.k is not None:
            parts.append(f"k{self.k}")
        if self.spatial is not None:
            parts.append(f"hw{self.spatial}")
        parts += [self.dtype, self.device]
        parts += [f"{k}={v}" for k, v in self.options]
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """Plain fields (``options`` as ``"name=value;..."``, led by ``height=H;width=W``
        for conv cases) for pytest-benchmark's extra_info."""
        return {**asdict(self), **self.identity()}

    def identity(self) -> dict[str, Any]:
        """The :data:`suite.measure.rows.IDENTITY` columns of this case's rows
        (``options`` as in :meth:`as_dict`)."""
        grid = (("height", self.spatial), ("width", self.spatial)) if self.spatial else ()
        options = ";".join(f"{k}={v}" for k, v in grid + self.options + self._optimizer())
        fields = {"options": options, **{f: getattr(self, f) for f in IDENTITY[:-1]}}
        return {f: fields[f] for f in IDENTITY}

    def _optimizer(self) -> tuple[tuple[str, str], ...]:
        """``(("optimizer", name),)`` where a training workload trains this method with
        another optimizer than the workloads' own (geoopt has no RMSprop), so that its rows
        say so; empty otherwise."""
        if WORKLOADS[self.workload].uses != "layer":
            return ()
        try:
            used = self.spec.optimizer_for(TRAIN_OPTIMIZER)
        except ValueError:  # it has none: the case fails when it runs, and says why
            return ()
        return () if used == TRAIN_OPTIMIZER else (("optimizer", used),)

    def rows(self, measurements) -> list[Row]:
        """The table rows of ``measurements`` of this case.

        >>> from suite.measure.rows import Measurement
        >>> Case("update", "svd", 8).rows([Measurement.skipped("why")])[0].reason
        'why'
        """
        identity = self.identity()
        return [Row.of(identity, m) for m in measurements]


@dataclass(frozen=True)
class Grid:
    """A parameter grid (sizes, ranks, dtypes, workloads) and the :class:`Settings` its
    cases are measured with; ``description`` is shown by ``projunn-bench list``;
    ``asv_rounds``: rounds of asv's timed benchmarks (each a fresh process; two commits'
    rounds alternate under ``--interleave-rounds``).
    Conv workloads take ``channels`` (as n) x ``spatial`` (H = W) and the real dtypes."""

    name: str
    sizes: tuple[int, ...]
    ranks: tuple[int, ...]
    dtypes: tuple[str, ...] = ("float32", "complex64")
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    channels: tuple[int, ...] = ()
    spatial: tuple[int, ...] = ()
    settings: Settings = Settings()
    description: str = ""
    asv_rounds: int = 2

    @property
    def conv_dtypes(self) -> tuple[str, ...]:
        """The dtypes of the conv workloads: the grid's real ones."""
        return tuple(d for d in self.dtypes if d in REAL_DTYPES)


GRIDS = {
    "tiny": Grid(
        "tiny",
        sizes=(16,),
        ranks=(1, 4),
        channels=(4,),
        spatial=(4,),
        settings=Settings(warmup=0, min_time=0.005, max_time=0.02, accuracy_steps=3, batch=4),
        description="smoke test for CI / pytest (seconds)",
    ),
    "quick": Grid(
        "quick",
        sizes=(64, 256, 1024),
        ranks=(1, 4, 16),
        channels=(16, 64),
        spatial=(8,),
        settings=Settings(),
        description="the default: about 3 minutes on 2 quiet CPU cores (report included)",
    ),
    "gate": Grid(
        "gate",
        sizes=(64, 256, 1024),
        ranks=(1, 16),
        dtypes=("float32",),
        workloads=("update", "train_step", "conv_train_step"),
        channels=(16,),
        spatial=(8,),
        settings=Settings(threads=1, clock="cpu"),
        description="the pull-request gate (projunn-bench gate): one thread, CPU time, "
        "float32, timed workloads; N=1024 is where projUNN's O(kN^2) shows",
    ),
    "full": Grid(
        "full",
        sizes=(256, 1024, 2048, 4096, 8192, 16384),
        ranks=(1, 4, 16, 64),
        channels=(16, 64, 256),
        spatial=(8, 16, 32),
        settings=Settings(warmup=3, min_time=0.5, max_time=2.0, accuracy_steps=100, batch=128),
        description="for GPUs: N up to 16384 (O(N^3) methods capped, see CUBIC_CAP)",
    ),
}


def grid_name(default: str = "quick") -> str:
    """The grid selected by ``$PROJUNN_BENCH_GRID`` (``default`` when unset)."""
    name = os.environ.get(GRID_ENV, "").strip().lower() or default
    if name not in GRIDS:
        raise ValueError(f"${GRID_ENV}={name!r} is not one of {sorted(GRIDS)}")
    return name


def current_grid(default: str = "quick") -> Grid:
    """``GRIDS[grid_name(default)]``."""
    return GRIDS[grid_name(default)]


def iter_cases(
    grid: str | Grid = "quick",
    *,
    workloads: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    ranks: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu",),
    options: Iterable[tuple[str, Any]] = (),
    channels: Sequence[int] | None = None,
    spatial: Sequence[int] | None = None,
) -> list[Case]:
    """The cases of ``grid`` (overridden per axis), in a stable order.

    Ranked methods get one case per rank, the others one case with ``k=None``. Without
    an explicit ``methods`` list a workload only takes the methods it applies to (EUNN has
    no functional update, and a CUDA-graph method no CPU device); explicitly named methods
    are all kept, so an impossible
    combination shows up as a skipped case, never silently vanishes. ``options``
    (``name=value`` pairs) go to the methods that accept them. Conv workloads take
    ``channels`` x ``spatial`` instead of ``sizes``, and of the grid's dtypes only the real
    ones (explicit ``dtypes`` are all kept).
    """
    g = GRIDS[grid] if isinstance(grid, str) else grid
    workloads = tuple(workloads or g.workloads)
    explicit = methods is not None
    names = tuple(methods) if explicit else tuple(METHODS)
    sizes = tuple(sizes or g.sizes)
    ranks = tuple(ranks or g.ranks)
    conv_dtypes = tuple(dtypes or g.conv_dtypes)
    dtypes = tuple(dtypes or g.dtypes)
    devices = tuple(devices)
    options = tuple(options)
    conv_sizes = [(c, hw) for c in channels or g.channels for hw in spatial or g.spatial]
    out = []
    for wl in workloads:
        conv = WORKLOADS[wl].matrices == "conv"
        for name in names:
            opts = case_options(name, wl, options)
            for device in devices:
                if not explicit and not WORKLOADS[wl].applies_to(METHODS[name], device):
                    continue
                for dtype in conv_dtypes if conv else dtypes:
                    for n, hw in conv_sizes if conv else [(n, None) for n in sizes]:
                        for k in ranks if METHODS[name].ranked else (None,):
                            out.append(Case(wl, name, n, k, dtype, device, opts, hw))
    return out


def case_options(method: str, workload: str, options: Iterable[tuple[str, Any]]):
    """Of the ``(name, value)`` pairs ``options``, those ``method`` takes in ``workload``
    (as a tuple, the form of :attr:`Case.options`).

    >>> case_options("eunn", "train_step", [("capacity", 4), ("approx", "column")])
    (('capacity', 4),)
    """
    accepted = WORKLOADS[workload].options_of(METHODS[method])
    return tuple((k, v) for k, v in options if k in accepted)


def method_label(method: str, k: int | None) -> str:
    """``"projunn_t-k4"`` for a ranked method at rank 4, the plain name otherwise.

    >>> parse_method_label(method_label("projunn_t", 4)), method_label("svd", None)
    (('projunn_t', 4), 'svd')
    """
    return method if k is None else f"{method}-k{k}"


def parse_method_label(label: str) -> tuple[str, int | None]:
    """Inverse of :func:`method_label`."""
    name, sep, rank = label.rpartition("-k")
    if sep and name in METHODS and rank.isdigit():
        return name, int(rank)
    return label, None


def method_labels(
    workload: str,
    ranks: Sequence[int],
    reference: bool = False,
    devices: Sequence[str] = ("cpu", "cuda"),
) -> list[str]:
    """Method labels (one per rank for ranked methods) of the methods ``workload`` applies
    to; with ``reference`` only those with an exact reference step (asv parameters); the
    CUDA-graph methods only when ``devices`` has a CUDA device."""
    out = []
    for name, m in METHODS.items():
        if reference and m.reference is None:
            continue
        if not any(WORKLOADS[workload].applies_to(m, d) for d in devices):
            continue
        out += [method_label(name, k) for k in ranks] if m.ranked else [name]
    return out

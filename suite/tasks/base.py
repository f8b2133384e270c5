"""What a task is: a :class:`Config` (one training setup), a :class:`Problem` (data, loss,
test metrics, no-memory baseline) and a :class:`Task` that makes both and the model.

A new task is one module defining a :class:`Task` subclass (its ``presets`` and
``problem()``; ``build()`` too when its model is not a sequence model) and one entry in
:data:`suite.tasks.TASKS`.

>>> cfg = Config(T=10, hidden=8, batch=4, steps=20, lr=1e-3)
>>> cfg.replace(hidden=16, lr=None).hidden, cfg.log_interval
(16, 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..measure.cases import Case

__all__ = [
    "LSTM",
    "Config",
    "DataError",
    "Problem",
    "Target",
    "Task",
    "count_parameters",
    "optimizer_label",
    "optimizer_name",
    "sequence_model",
    "synthetic_data",
]

LSTM = "lstm"
"""Method name of the LSTM reference (``baselines.LSTMReference``)."""


class DataError(ValueError):
    """A task's data is missing or unreadable (the message says what was expected where)."""


@dataclass(frozen=True)
class Config:
    """One training setup. ``T``: sequence length (the copy task: the delay); ``hidden``:
    hidden size N of the recurrent matrix; ``batch`` (over all processes), ``steps``,
    ``optimizer`` and ``lr`` (the unitary/orthogonal parameters learn at
    ``lr / lr_divisor``); ``init``: starting recurrent matrix (``projunn_core.init.INITS``;
    methods that cannot take it keep their own); ``nonlinearity`` and ``dtype`` of the RNN;
    ``log_every``: steps between logged rows (0: about 25 rows); ``test_size``: held-out
    examples (synthetic tasks draw them once, by seed)."""

    T: int
    hidden: int
    batch: int
    steps: int
    lr: float
    lr_divisor: float = 1.0
    optimizer: str = "rmsprop"
    init: str = "henaff"
    nonlinearity: str = "modrelu"
    dtype: str = "float32"
    log_every: int = 0
    test_size: int = 1000

    def replace(self, **overrides: Any) -> Config:
        """A copy with the non-``None`` ``overrides`` applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def log_interval(self) -> int:
        """Steps between two logged rows."""
        return self.log_every or max(1, self.steps // 25)

    def describe(self) -> str:
        """``name=value;...`` of the fields, for the ``options`` column."""
        return ";".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


@dataclass
class Problem:
    """A task's data and objective on one device.

    ``sample(batch, generator)`` draws a training batch ``(x, y)``; ``test`` is the held-out
    ``(x, y)``; ``loss(out, y)`` is the training objective of the model output (a mean over
    the batch); ``metrics(out, y)`` gives the test metrics, each a mean over the batch
    (``test_loss`` first); ``loss_unit`` is the unit of every ``*_loss`` (accuracies are
    in %); ``baselines`` holds the no-memory baseline metrics (``baseline_loss``, ...)
    recorded with every run.
    """

    input_size: int
    output_size: int
    sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    test: tuple[torch.Tensor, torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
    loss_unit: str
    baselines: Mapping[str, float] = field(default_factory=dict)

    def unit(self, metric: str) -> str:
        """The unit of ``metric`` (``"%"`` for accuracies, ``loss_unit`` otherwise)."""
        return "%" if metric.endswith("accuracy") else self.loss_unit


def synthetic_data(draw, config: Config, seed: int, device):
    """``(sample, test)`` of a task whose batches ``draw(T, batch, generator)`` makes on
    the CPU (so a seed gives the same data on every device); the test set is
    ``config.test_size`` examples drawn from ``seed``."""

    def sample(batch: int, generator: torch.Generator):
        x, y = draw(config.T, batch, generator)
        return x.to(device), y.to(device)

    return sample, sample(config.test_size, torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class Target:
    """A time-to-result goal of a task (``projunn-bench tune``): train with ``config()``
    (its ``steps`` are the step budget, its ``log_every`` the evaluation interval, its
    ``optimizer`` the optimizer family whose lr is tuned; its ``lr`` is not used) until
    test ``metric`` is at most ``value`` (at least, with ``higher=True``).
    ``why`` says where the numbers come from. A family sized for a scaling campaign
    names the hidden ``sizes`` it runs at by default (``tune --hidden`` overrides them)
    and a wall-clock ``time_budget`` per trial in training seconds (``--time-budget``).

    >>> t = Target(lambda: Config(T=5, hidden=8, batch=4, steps=20, lr=1e-3), "test_loss", 0.5)
    >>> t.reached(0.4), t.reached(0.6), t.describe()
    (True, False, 'test_loss <= 0.5')
    """

    config: Callable[[], Config]
    metric: str
    value: float
    higher: bool = False
    why: str = ""
    sizes: tuple[int, ...] = ()
    time_budget: float | None = None

    def reached(self, metric_value: float | None) -> bool:
        """Whether ``metric_value`` meets the target (``None`` or NaN never does)."""
        if metric_value is None or metric_value != metric_value:
            return False
        return metric_value >= self.value if self.higher else metric_value <= self.value

    def describe(self) -> str:
        """``"test_accuracy >= 80"``."""
        return f"{self.metric} {'>=' if self.higher else '<='} {self.value:.4g}"


class Task:
    """A training task: ``name``, ``description``, named ``presets`` (functions returning a
    :class:`Config`, each naming its source in its docstring), ``methods`` (what
    ``--method all`` trains; ``None``: every registry method and the LSTM) and ``targets``
    (named :class:`Target` goals of ``projunn-bench tune``, called ``{task}-{name}``)."""

    name: str = ""
    description: str = ""
    presets: Mapping[str, Callable[[], Config]] = {}
    methods: tuple[str, ...] | None = None
    targets: Mapping[str, Target] = {}

    def preset(self, name: str) -> Config:
        """The configuration of preset ``name``; ``KeyError`` lists the presets."""
        try:
            return self.presets[name]()
        except KeyError:
            raise KeyError(
                f"task {self.name!r} has no preset {name!r}; choose from {sorted(self.presets)}"
            ) from None

    def check(self, config: Config, data_dir: Path | None) -> None:
        """Raise ``ValueError`` (:class:`DataError` for data) if ``config`` cannot run."""
        for name in ("T", "hidden", "batch", "steps", "test_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
        if config.hidden < 2:
            raise ValueError(f"hidden must be >= 2, got {config.hidden}")

    def problem(self, config: Config, *, seed: int, device, data_dir: Path | None) -> Problem:
        raise NotImplementedError  # pragma: no cover - every task defines it

    def skip_reason(self, method: str, rank: int | None, config: Config, device) -> str | None:
        """Why ``method`` cannot train with ``config`` on ``device`` (default: the suite's
        skip rules of its ``train_step`` case), or ``None``."""
        if method == LSTM:
            return None if rank is None else "rank options do not apply to lstm"
        case = Case("train_step", method, config.hidden, rank, config.dtype, str(device))
        return case.skip_reason()

    def build(
        self, method: str, rank: int | None, problem: Problem, config: Config, device
    ) -> nn.Module:
        """The model ``method`` trains on this task (default: :func:`sequence_model`)."""
        return sequence_model(method, rank, problem, config, device)

    def optimizer(
        self, model: nn.Module, method: str, rank: int | None, config: Config, generator
    ) -> torch.optim.Optimizer:
        """The optimizer of ``model`` (default: the sequence model's own ``optimizer``;
        the unitary RNN's with ``config.lr_divisor``, and for a ranked method its rank and
        ``generator`` for its randomized sketches). The optimizer is
        ``config.optimizer``, or the method's own where it has not that one
        (:func:`optimizer_name`: geoopt trains with Adam for RMSprop)."""
        kw: dict[str, Any] = {}
        if method != LSTM:
            kw["lr_divisor"] = config.lr_divisor
        if rank is not None:
            kw.update(rank=rank, generator=generator)
        return model.optimizer(optimizer_name(method, config), lr=config.lr, **kw)

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        """Metrics of the trained model (default: ``unitarity`` of a unitary RNN's
        recurrent matrix, ``||W^H W - I||_F / sqrt(N)``)."""
        import projunn_core as pc

        if isinstance(model, pc.nn.UnitaryRNN):
            with torch.no_grad():
                return {"unitarity": pc.unitarity_error(model.cell.recurrent.matrix())}
        return {}


def optimizer_name(method: str, config: Config) -> str:
    """The optimizer ``method`` trains with under ``config``: ``config.optimizer``, or the
    registry's substitute where the method's layer has not that one
    (``Method.optimizer_for``).

    >>> cfg = Config(T=5, hidden=6, batch=2, steps=1, lr=1e-3)
    >>> optimizer_name("geoopt_stiefel", cfg), optimizer_name("lstm", cfg)
    ('adam', 'rmsprop')
    """
    from ..measure.methods import METHODS

    if method not in METHODS:
        return config.optimizer
    return METHODS[method].optimizer_for(config.optimizer)


def optimizer_label(method: str, config: Config) -> str:
    """The readable name of the optimizer ``method`` trains with under ``config`` (what
    the tables print; :meth:`suite.measure.methods.Method.optimizer_label`).

    >>> cfg = Config(T=5, hidden=6, batch=2, steps=1, lr=1e-3)
    >>> optimizer_label("geoopt_stiefel", cfg), optimizer_label("lstm", cfg)
    ('Riemannian Adam (geoopt)', 'RMSprop')
    """
    from ..measure.methods import METHODS, OPTIMIZER_LABELS

    if method not in METHODS:
        return OPTIMIZER_LABELS.get(config.optimizer, config.optimizer)
    return METHODS[method].optimizer_label(config.optimizer)


def count_parameters(model: nn.Module) -> int:
    """Trainable real numbers of ``model`` (a complex parameter counts twice; frozen ones,
    such as the fixed base of ``baselines.ExpmConv2d``, not at all).

    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(
        p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad
    )


def sequence_model(
    method: str, rank: int | None, problem: Problem, config: Config, device
) -> nn.Module:
    """A unitary RNN whose recurrent matrix is registry ``method`` (``rank`` for ranked
    methods; ``config.init`` for the methods that take a starting matrix), or for
    ``"lstm"`` the LSTM reference with the parameter count of the full-capacity unitary
    RNN (a projUNN recurrent matrix) at ``config.hidden``.

    Both have ``.optimizer(name, lr=..., **kw)``; the unitary RNN's also takes
    ``lr_divisor`` and the projUNN options.

    >>> p = Problem(1, 2, None, None, None, None, "nats")
    >>> cfg = Config(T=5, hidden=6, batch=2, steps=1, lr=1e-3)
    >>> lstm, rnn = (sequence_model(m, None, p, cfg, "cpu") for m in ("lstm", "expm"))
    >>> lstm.hidden_size, count_parameters(lstm), count_parameters(rnn)
    (3, 80, 68)
    """
    import baselines
    import projunn_core as pc

    from ..measure.cases import torch_dtype
    from ..measure.methods import METHODS

    dtype = torch_dtype(config.dtype)
    if method == LSTM:
        with torch.random.fork_rng(devices=[]):  # counting leaves the global RNG as it was
            full = sequence_model("projunn_t", 1, problem, config, "cpu")
        count = count_parameters(full)
        return baselines.LSTMReference(
            problem.input_size, output_size=problem.output_size, match_params=count, device=device
        )
    spec = METHODS[method]
    options = {"rank": rank} if spec.ranked else {}
    if spec.initializable:
        options["init"] = config.init
    layer = spec(config.hidden, dtype=dtype, device=device, **options)
    return pc.nn.UnitaryRNN(
        problem.input_size,
        config.hidden,
        problem.output_size,
        layer,
        dtype=dtype,
        device=device,
        nonlinearity=config.nonlinearity,
    )

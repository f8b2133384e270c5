"""The method registry: every unitary-weight method the suite measures, in one place.

``METHODS[name]`` is a :class:`Method`. Calling it builds a protocol module
(``m(x)``, ``m.matrix()``, ``m.optimizer(...)``, see ``projunn_core.protocol``);
``Method.update`` is the functional in-place update ``(A, G, lr, **options) -> A`` used by
the *update* workload (``None`` for methods that only exist as parametrized layers).
``Method.build_conv(channels, height, width)`` builds the method's orthogonal circular
convolution (``Method.conv``; SOC exists only as one) for the ``conv_*`` workloads.
Nothing downstream special-cases a method: workloads, skip rules and the three front ends
read the fields of :class:`Method`.

>>> sorted(METHODS)[:3]
['cayley', 'eunn', 'eunn_fft']
>>> METHODS["projunn_t"].ranked, METHODS["svd"].cubic
(True, True)
>>> METHODS["soc"].workloads
('conv_train_step', 'conv_accuracy')

The peers (geoopt, geotorch and Landing, :mod:`baselines.peers`) are entries like the
others; what sets them apart is in fields, read by the skip rules and the workloads:
``dtypes`` (geoopt and geotorch are real-only), ``requires`` (the optional library; its
install line is the skip reason where it is missing), ``optimizers`` / ``train_optimizer``
(geoopt has no RMSprop: it trains with Adam where the suite says RMSprop) and
``tolerance_option`` (Landing is only near-unitary, by at most its ``eps``).

>>> METHODS["geoopt_stiefel"].optimizer_for("rmsprop"), METHODS["landing"].approximate
('adam', True)
>>> METHODS["geotorch_expm"].dtypes
('float32', 'float64')
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

import baselines
import projunn_core as pc
from projunn_core.lowrank import LOWRANK_ALIASES, lowrank_method
from projunn_core.protocol import OPTIMIZER_NAMES

from .workloads import WORKLOADS

__all__ = [
    "METHODS",
    "OPTIMIZER_LABELS",
    "OPTION_VALUES",
    "RESERVED_NAMES",
    "UPDATES",
    "RegistrationError",
    "Method",
    "check_option",
    "method",
    "plugin_methods",
    "register_method",
]

# -- option values ---------------------------------------------------------------------


def _choice(*allowed):
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value

    check.allowed = " | ".join(map(str, allowed))
    return check


def _boolean(value):
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"must be true or false; got {value!r}")


_boolean.allowed = "true | false"


def _lowrank_name(value):
    """A low-rank method name (aliases such as "lsi" become their canonical name)."""
    try:
        return lowrank_method("approx", value)
    except ValueError:
        names = pc.LOWRANK_METHODS + tuple(LOWRANK_ALIASES)
        raise ValueError(f"must be one of {', '.join(names)}; got {value!r}") from None


_lowrank_name.allowed = " | ".join(pc.LOWRANK_METHODS)


def _capacity(value):
    if value is None or str(value).lower() == "none":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be an integer >= 1 (or None for the default); got {value!r}")
    return value


_capacity.allowed = "an integer >= 1, or None"


def _positive(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be an integer >= 1; got {value!r}")
    return value


_positive.allowed = "an integer >= 1"


def _every(value):
    """``None`` (never) or a positive integer: a period in optimizer steps."""
    if value is None or str(value).lower() == "none":
        return None
    try:
        return _positive(int(value) if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"must be an integer >= 1 or None; got {value!r}") from None


_every.allowed = "an integer >= 1, or None"


def _number(low: float, high: float, *, closed_high: bool = False):
    """A float in ``(low, high)`` (``(low, high]`` with ``closed_high``)."""

    def check(value):
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if isinstance(value, bool) or not (low < x < high or (closed_high and x == high)):
            bracket = "]" if closed_high else ")"
            raise ValueError(f"must be a number in ({low:g}, {high:g}{bracket}; got {value!r}")
        return x

    check.allowed = f"a number in ({low:g}, {high:g}{']' if closed_high else ')'}"
    return check


OPTION_VALUES: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "approx": _lowrank_name,
        "check": _boolean,
        "capacity": _capacity,
        "orthogonal_map": _choice(*baselines.ORTHOGONAL_MAPS),
        "kernel_size": _positive,
        "train_terms": _positive,
        "eval_terms": _positive,
        "init": _choice(*pc.init.INITS),
        "impl": _choice(*pc.syncfree.IMPLS),
        "update_base": _every,
        "lam": _number(0, math.inf),
        "eps": _number(0, 1),
    }
)
"""Option name -> check returning the value (normalized) or raising ``ValueError`` naming
the allowed values; every option in a method's ``defaults`` has one."""


def check_option(name: str, value: Any) -> Any:
    """``value`` checked (and normalized) for method option ``name``.

    >>> check_option("check", "false")
    False
    >>> check_option("approx", "bogus")
    Traceback (most recent call last):
    ...
    ValueError: option approx must be one of ...; got 'bogus'
    """
    if name not in OPTION_VALUES:
        raise ValueError(f"unknown option {name!r}; known: {sorted(OPTION_VALUES)}")
    try:
        return OPTION_VALUES[name](value)
    except ValueError as e:
        raise ValueError(f"option {name} {e}") from None


class RegistrationError(ValueError):
    """:func:`register_method` refused a method (the message names it and says why)."""


OPTIMIZER_LABELS: Mapping[str, str] = MappingProxyType(
    {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam"}
)
"""The readable name of each optimizer of the layer protocol (``m.optimizer(name)``);
a method whose layer implements one differently says so in ``Method.optimizer_labels``."""


@dataclass(frozen=True)
class Method:
    """One registry entry.

    ``build(n, dtype=..., device=..., **options)`` returns a protocol module; ``update``
    is ``(A, G, lr, **options) -> A`` or ``None``; ``defaults`` are the accepted options
    with their default values (``rank`` is supplied by the case's ``k`` for ranked
    methods); ``cubic`` marks O(N^3) per-step cost (size-capped by the skip rules);
    ``pow2`` marks methods that need ``n`` to be a power of two; ``reference`` names the
    exact full-gradient step a rank-k result is compared with in the accuracy workload
    (``"expm"``: exponential retraction, ``"polar"``: closest unitary; ``None``: no such
    comparison); ``unitary`` is False for the unconstrained reference layer;
    ``initializable`` marks methods whose ``build`` takes ``init``, the starting unitary by
    name (``projunn_core.init.INITS``; Haar when not given); ``graphed`` methods have
    their update and training step captured in a CUDA graph
    (:func:`projunn_core.graph.capture_step`) and timed as replays, so they need CUDA;
    ``optimizer_options`` go to ``module.optimizer(...)`` (e.g. ``capturable=True``).

    Peers: ``dtypes`` are the dtype names the method takes (``None``: all), with
    ``dtype_note`` saying why (the skip reason of the others); ``requires`` names the
    optional library it needs (``baselines.peers.missing`` gives the skip reason with the
    install line where it is absent); ``optimizers`` are the optimizer names its layer
    offers, and ``train_optimizer`` the one it trains with where a workload or task asks
    for another (:meth:`optimizer_for`); ``tolerance_option`` names the option that bounds
    ``||W W^H - I||_F`` for a method that is only near-unitary by design (Landing's
    ``eps``; ``None``: unitary up to rounding, see :meth:`unitarity_bound`);
    ``optimizer_labels`` give the readable name of an optimizer its layer implements its
    own way (geoopt's "adam" is "Riemannian Adam (geoopt)"; :meth:`optimizer_label`).

    Convolutions: ``conv(channels, height, width, dtype=..., device=..., **options)``
    builds the method's orthogonal convolution (``None``: it has none), taking the options
    in ``conv_defaults``. ``build`` is ``None`` for a method that exists only as a
    convolution (SOC). ``conv_update`` uses ``update`` and ``defaults``.
    """

    name: str
    description: str
    build: Callable[..., torch.nn.Module] | None
    update: Callable[..., torch.Tensor] | None = None
    ranked: bool = False
    cubic: bool = False
    pow2: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    reference: str | None = None
    unitary: bool = True
    initializable: bool = False
    graphed: bool = False
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    conv: Callable[..., torch.nn.Module] | None = None
    conv_defaults: Mapping[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] | None = None
    dtype_note: str = ""
    requires: str | None = None
    optimizers: tuple[str, ...] = OPTIMIZER_NAMES
    train_optimizer: str | None = None
    tolerance_option: str | None = None
    optimizer_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.optimizers) - set(OPTIMIZER_NAMES))
        if unknown or not self.optimizers:
            raise RegistrationError(f"{self.name}: optimizers must be some of {OPTIMIZER_NAMES}")
        if self.train_optimizer is not None and self.train_optimizer not in self.optimizers:
            raise RegistrationError(
                f"{self.name}: train_optimizer must be one of {self.optimizers}"
            )
        stray = sorted(set(self.optimizer_labels) - set(self.optimizers))
        if stray:
            raise RegistrationError(
                f"{self.name}: optimizer_labels name optimizers it lacks: {stray}"
            )

    def optimizer_for(self, name: str) -> str:
        """The optimizer this method trains with when ``name`` is asked for: ``name``
        where its layer has it, else its ``train_optimizer`` (``ValueError`` if none).

        >>> METHODS["expm"].optimizer_for("rmsprop"), METHODS["geoopt_stiefel"].optimizer_for("sgd")
        ('rmsprop', 'sgd')
        """
        key = str(name).lower()
        if key in self.optimizers:
            return key
        if self.train_optimizer is None:
            raise ValueError(f"{self.name} has no {name} optimizer; it has {self.optimizers}")
        return self.train_optimizer

    def optimizer_label(self, name: str) -> str:
        """The readable name of the optimizer this method trains with when ``name`` is
        asked for (its ``optimizer_labels``, else :data:`OPTIMIZER_LABELS`): what the
        tables print.

        >>> METHODS["geoopt_stiefel"].optimizer_label("rmsprop")
        'Riemannian Adam (geoopt)'
        >>> METHODS["expm"].optimizer_label("rmsprop")
        'RMSprop'
        """
        used = self.optimizer_for(name)
        return self.optimizer_labels.get(used) or OPTIMIZER_LABELS[used]

    def optimizer_note(self, name: str) -> str:
        """``""`` when this method trains with ``name``, else what it trains with instead
        and why (a row's ``reason``, ``projunn-bench list``)."""
        used = self.optimizer_for(name)
        if used == str(name).lower():
            return ""
        return f"trained with {used}: {self.name} has no {name} optimizer"

    @property
    def approximate(self) -> bool:
        """Whether the method is only near-unitary by design (it has a tolerance)."""
        return self.tolerance_option is not None

    def unitarity_bound(self, n: int, workload: str = "train_step", **options) -> float | None:
        """The bound on ``||W^H W - I||_F / sqrt(n)`` this method keeps by design in
        ``workload`` with ``options`` (Landing: ``eps / sqrt(n)``), ``None`` for a method
        that is unitary up to rounding (or not unitary at all).

        >>> METHODS["landing"].unitarity_bound(4, eps=0.2), METHODS["svd"].unitarity_bound(4)
        (0.1, None)
        """
        if self.tolerance_option is None:
            return None
        return self.options_for(workload, **options)[self.tolerance_option] / math.sqrt(n)

    def unavailable(self) -> str | None:
        """Why this method cannot be built here (its library is not installed, with the
        install line), or ``None``. Nothing is imported."""
        if self.requires is None:
            return None
        try:
            return baselines.peers.missing(self.requires)
        except ValueError:  # not a peer library: a plug-in's own dependency
            if importlib.util.find_spec(self.requires) is not None:
                return None
            return f"{self.requires} is not installed: pip install {self.requires}"

    def __call__(
        self, n: int, dtype=torch.float32, device="cpu", *, init: str | None = None, **options
    ) -> torch.nn.Module:
        """Build the protocol module (``METHODS["svd"](8)`` is an 8x8 SVD-projected layer),
        starting from the unitary named ``init`` where the method is ``initializable``.

        >>> METHODS["expm"](4, init="identity").matrix().diagonal().tolist()
        [1.0, 1.0, 1.0, 1.0]
        """
        if self.build is None:
            raise ValueError(f"method {self.name!r} exists only as a convolution (build_conv)")
        if init is not None:
            if not self.initializable:
                raise ValueError(f"method {self.name!r} does not take a starting matrix (init)")
            options = {**options, "init": init}
        return self.build(
            n, dtype=dtype, device=device, **self.options_for("train_step", **options)
        )

    def build_conv(
        self, channels: int, height: int, width: int, dtype=torch.float32, device="cpu", **options
    ) -> torch.nn.Module:
        """Build the method's convolution (``METHODS["cayley"].build_conv(16, 8, 8)``)."""
        if self.conv is None:
            convs = sorted(m.name for m in METHODS.values() if m.conv is not None)
            raise ValueError(f"method {self.name!r} has no convolution layer; choose from {convs}")
        opts = self.options_for("conv_train_step", **options)
        return self.conv(channels, height, width, dtype=dtype, device=device, **opts)

    def options_for(self, workload: str, **options) -> dict[str, Any]:
        """The options of this method in ``workload``: its defaults there
        (:meth:`suite.measure.workloads.Workload.options_of`) overridden by ``options``,
        each checked (:func:`check_option`); ``rank`` for ranked methods, ``init`` for
        initializable dense layers. Unknown option names raise ``ValueError``. The one
        place where options are merged.

        >>> METHODS["cayley"].options_for("conv_train_step", kernel_size=5)
        {'kernel_size': 5}
        >>> METHODS["eunn"].options_for("train_step", capacity=4)
        {'capacity': 4}
        """
        wl = WORKLOADS[workload]
        defaults = wl.options_of(self)
        allowed = set(defaults) | ({"rank"} if self.ranked else set())
        if self.initializable and wl.matrices == "dense":
            allowed.add("init")
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(
                f"method {self.name!r} does not take option(s) {unknown} in {workload}; "
                f"it takes {sorted(defaults) or 'none'}"
            )
        merged = dict(defaults)
        merged.update({k: v if k == "rank" else check_option(k, v) for k, v in options.items()})
        return merged

    @property
    def workloads(self) -> tuple[str, ...]:
        """Workloads this method takes part in (:meth:`Workload.applies_to`)."""
        return tuple(name for name, wl in WORKLOADS.items() if wl.applies_to(self))


# -- factories -------------------------------------------------------------------------


def _projunn_build(variant: str):
    def build(n, *, dtype, device, rank=1, approx="range", check=False, init="haar"):
        del check  # only used by the functional update
        return pc.nn.UnitaryLinear(
            n, dtype=dtype, device=device, init=init, rank=rank, variant=variant, approx=approx
        )

    return build


def _projunn_update(variant: str):
    def update(A, G, lr, *, rank=1, approx="range", check=False):
        return pc.projunn_step(A, G, lr, rank=rank, variant=variant, approx=approx, check=check)

    return update


def _projunn_graphed_build(variant: str):
    def build(n, *, dtype, device, rank=1, approx="range", init="haar", impl="auto"):
        return pc.nn.UnitaryLinear(
            n,
            dtype=dtype,
            device=device,
            init=init,
            rank=rank,
            variant=variant,
            approx=approx,
            impl=impl,
        )

    return build


def _projunn_sync_free_update(variant: str):
    def update(A, G, lr, *, rank=1, approx="range", impl="auto"):
        return pc.projunn_step(
            A, G, lr, rank=rank, variant=variant, approx=approx, sync_free=True, impl=impl
        )

    return update


def _baseline_build(cls_name: str, **fixed):
    def build(n, *, dtype, device, **options):
        return getattr(baselines, cls_name)(n, dtype=dtype, device=device, **fixed, **options)

    return build


def _peer_build(name: str):
    def build(n, *, dtype, device, **options):
        return baselines.PEER_METHODS[name](n, dtype=dtype, device=device, **options)

    return build


def _peer_conv(name: str):
    def conv(channels, height, width, *, dtype, device, **options):
        return baselines.PEER_CONV_LAYERS[name](channels, height, width, dtype, device, **options)

    return conv


def _projunn_conv(variant: str):
    def conv(channels, height, width, *, dtype, device, rank=1, approx="range"):
        return pc.nn.OrthogonalConv2d(
            channels, height, width, dtype, device, rank=rank, variant=variant, approx=approx
        )

    return conv


def _baseline_conv(name: str):
    def conv(channels, height, width, *, dtype, device, **options):
        return baselines.CONV_LAYERS[name](channels, height, width, dtype, device, **options)

    return conv


_REAL_ONLY = ("float32", "float64")


def _real_only(library: str) -> str:
    return (
        f"{library} is real-only: it keeps X^T X = I (transposes where a unitary needs X^H), "
        "so complex cases are skipped"
    )


_PEERS = [
    *(
        Method(
            f"geoopt_{kind}",
            f"geoopt: ManifoldParameter on {manifold} ({how}), O(N^3); Riemannian SGD / "
            "Adam (no RMSprop: trains with adam where rmsprop is asked)",
            _peer_build(f"geoopt_{kind}"),
            baselines.PEER_UPDATES[f"geoopt_{kind}"],
            cubic=True,
            initializable=True,
            dtypes=_REAL_ONLY,
            dtype_note=_real_only("geoopt"),
            requires="geoopt",
            optimizers=baselines.peers.GEOOPT_OPTIMIZERS,
            train_optimizer="adam",
            optimizer_labels={
                "sgd": "Riemannian SGD (geoopt)",
                "adam": "Riemannian Adam (geoopt)",
            },
        )
        for kind, manifold, how in (
            ("stiefel", "EuclideanStiefel", "Euclidean metric, QR retraction"),
            ("canonical", "CanonicalStiefel", "canonical metric, Cayley retraction"),
        )
    ),
    *(
        Method(
            f"geotorch_{triv}",
            f"geotorch.orthogonal(triv={triv!r}): W = B {what}(A - A^T), O(N^3); "
            "update_base=K folds W into the base every K steps (dynamic trivialization)",
            _peer_build(f"geotorch_{triv}"),
            None,
            cubic=True,
            defaults={"update_base": None},
            initializable=True,
            dtypes=_REAL_ONLY,
            dtype_note=_real_only("geotorch"),
            requires="geotorch",
        )
        for triv, what in (("expm", "exp"), ("cayley", "cayley"))
    ),
    Method(
        "landing",
        "Landing (Ablin & Peyre 2022): X - eta (skew(G X^H) X + lam (X X^H - I) X), no "
        "retraction, O(N^3) products; near-unitary only: ||X X^H - I||_F <= eps (safe step)",
        _peer_build("landing"),
        baselines.PEER_UPDATES["landing"],
        cubic=True,
        defaults={"lam": 1.0, "eps": 0.5},
        initializable=True,
        conv=_peer_conv("landing"),
        conv_defaults={"lam": 1.0, "eps": 0.5},
        tolerance_option="eps",
    ),
]
"""The peer methods (:mod:`baselines.peers`): two libraries and Landing."""

_PROJUNN = (
    ("T", "rank-k tangent step A <- A exp(skew(A^H a b^H)), O(kN^2)", "expm"),
    ("D", "rank-k direct step, closest unitary to A + a b^H, O(kN^2)", "polar"),
)
"""projUNN's variants: what each step does, and the exact step it is compared with."""

_ENTRIES = [
    *(
        Method(
            f"projunn_{variant.lower()}",
            f"projUNN-{variant}: {what}",
            _projunn_build(variant),
            _projunn_update(variant),
            ranked=True,
            defaults={"approx": "range", "check": False},
            reference=reference,
            conv=_projunn_conv(variant),
            conv_defaults={"approx": "range"},
            initializable=True,
        )
        for variant, what, reference in _PROJUNN
    ),
    *(
        Method(
            f"projunn_{variant.lower()}_graphed",
            f"projUNN-{variant} without host synchronization, replayed as a CUDA graph (CUDA only)",
            _projunn_graphed_build(variant),
            _projunn_sync_free_update(variant),
            ranked=True,
            defaults={"approx": "range", "impl": "auto"},
            reference=reference,
            initializable=True,
            graphed=True,
            optimizer_options={"capturable": True},
        )
        for variant, _, reference in _PROJUNN
    ),
    Method(
        "svd",
        "full step then polar projection through an SVD, O(N^3)",
        _baseline_build("SVDProjection"),
        baselines.UPDATES["svd"],
        cubic=True,
        conv=_baseline_conv("svd"),
        initializable=True,
    ),
    Method(
        "expm",
        "exponential-map retraction A exp(-lr skew(A^H G)), O(N^3)",
        _baseline_build("ExpmUnitary"),
        baselines.UPDATES["expm"],
        cubic=True,
        conv=_baseline_conv("expm"),
        initializable=True,
    ),
    Method(
        "cayley",
        "Cayley retraction (scoRNN style), O(N^3); conv: Cayley transform of a k x k "
        "kernel's FFT per frequency (Trockman & Kolter 2021)",
        _baseline_build("CayleyUnitary"),
        baselines.UPDATES["cayley"],
        cubic=True,
        conv=_baseline_conv("cayley"),
        conv_defaults={"kernel_size": 3},
    ),
    Method(
        "eunn",
        "EUNN, tunable style: capacity layers of 2x2 rotations, O(capacity N) per product",
        _baseline_build("EUNN", fft=False),
        None,
        defaults={"capacity": 2},
    ),
    Method(
        "eunn_fft",
        "EUNN, FFT style: log2(N) butterfly layers (N a power of two)",
        _baseline_build("EUNN", fft=True),
        None,
        pow2=True,
        defaults={"capacity": None},
    ),
    Method(
        "torch_orthogonal",
        "torch.nn.utils.parametrizations.orthogonal (matrix_exp map by default), O(N^3)",
        _baseline_build("TorchOrthogonal"),
        None,
        cubic=True,
        defaults={"orthogonal_map": "matrix_exp"},
        initializable=True,
    ),
    Method(
        "unconstrained",
        "plain linear layer and A <- A - lr G (no constraint; the speed floor)",
        _baseline_build("Unconstrained"),
        baselines.UPDATES["unconstrained"],
        unitary=False,
        conv=_baseline_conv("unconstrained"),
    ),
    Method(
        "soc",
        "skew-orthogonal convolution (Singla & Feizi 2021): truncated Taylor series of "
        "exp(L), L a skew k x k convolution; orthogonal up to the truncation (measured)",
        None,
        None,
        conv=_baseline_conv("soc"),
        conv_defaults={"kernel_size": 3, "train_terms": 5, "eval_terms": 12},
        initializable=True,
    ),
    *_PEERS,
]

_REGISTRY: dict[str, Method] = {m.name: m for m in _ENTRIES}
_UPDATES: dict[str, Callable[..., torch.Tensor]] = {
    m.name: m.update for m in _ENTRIES if m.update is not None
}
_BUILT_IN = frozenset(_REGISTRY)
_ORIGINS: dict[str, str] = {}
"""Plug-in method name -> the module that registered it."""
_REGISTER_HOOKS: list[Callable[[str], None]] = []
"""Called with each registered name (:mod:`suite.plugins` counts a plug-in's methods)."""

METHODS: Mapping[str, Method] = MappingProxyType(_REGISTRY)
"""name -> :class:`Method` (callable: ``METHODS[name](n, dtype=..., device=..., **options)``).
A read-only live view: :func:`register_method` adds the plug-ins' methods to it."""

UPDATES: Mapping[str, Callable[..., torch.Tensor]] = MappingProxyType(_UPDATES)
"""name -> functional in-place update ``(A, G, lr, **options) -> A`` (update workload)."""

RESERVED_NAMES = ("lstm", "baseline", "all")
"""Names the front ends give other meanings (the LSTM reference, the no-memory baseline
rows, ``--method all``): no method may take them."""

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def method(name: str) -> Method:
    """The registry entry called ``name``; ``KeyError`` lists the valid names.

    >>> method("svd").name
    'svd'
    """
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose from {sorted(METHODS)}") from None


def plugin_methods() -> dict[str, str]:
    """The methods plug-ins registered: name -> the module that registered it
    (``machine.json`` records it with every result).

    >>> "expm" in plugin_methods()  # built-in methods are not plug-ins
    False
    """
    return dict(_ORIGINS)


def register_method(method: Method, *, origin: str | None = None) -> Method:
    """Add ``method`` to :data:`METHODS` (and its ``update`` to :data:`UPDATES`), so that
    every front end, workload and report picks it up; returns it.

    ``origin`` names who registers it (default: the module of its ``build``, or ``conv``).
    The name must be lower case letters, digits and ``_`` (a label such as ``m-k4`` carries
    a rank), not a built-in method's nor one of :data:`RESERVED_NAMES`; a name another
    origin registered is refused, while the same origin registering it again replaces it
    (loading a plug-in twice is harmless). The method is checked before it is added: its
    options (``defaults``, ``conv_defaults``) must be ones the suite knows
    (:data:`OPTION_VALUES`), its ``dtypes`` known dtype names, and, where it can be built
    here, a 4 x 4 layer must follow the protocol (``projunn_core/protocol.py``): ``m(x)``
    keeps the shape, ``m.matrix()`` is 4 x 4 and unitary (within its tolerance), and one
    step of each optimizer in ``optimizers`` keeps it so. Any failure raises
    :class:`RegistrationError` (a ``ValueError``) naming the method and the problem;
    nothing is added then. The torch random state is left as it was.

    >>> register_method(METHODS["expm"])
    Traceback (most recent call last):
    ...
    suite.measure.methods.RegistrationError: method name 'expm' is a built-in method's; ...
    """
    if not isinstance(method, Method):
        raise RegistrationError(
            f"register_method takes a suite.Method, got {type(method).__name__}"
        )
    name = method.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistrationError(
            f"method name {name!r} must be lower case letters, digits and _ (a letter first)"
        )
    if name in _BUILT_IN:
        raise RegistrationError(f"method name {name!r} is a built-in method's; choose another name")
    if name in RESERVED_NAMES:
        raise RegistrationError(f"method name {name!r} is reserved ({', '.join(RESERVED_NAMES)})")
    made_by = method.build if method.build is not None else method.conv
    if made_by is None or not callable(made_by):
        raise RegistrationError(f"method {name!r} needs a build (or conv) function")
    origin = origin or getattr(made_by, "__module__", None) or "?"
    if name in _ORIGINS and _ORIGINS[name] != origin:
        raise RegistrationError(
            f"method name {name!r} is already registered by {_ORIGINS[name]}; "
            f"{origin} cannot register it too (rename one of them)"
        )
    _check_method(method)
    _REGISTRY[name] = method
    _UPDATES.pop(name, None)
    if method.update is not None:
        _UPDATES[name] = method.update
    _ORIGINS[name] = origin
    for hook in _REGISTER_HOOKS:
        hook(name)
    return method


_DTYPE_NAMES = ("float32", "float64", "complex64", "complex128")


def _check_method(m: Method) -> None:
    """Raise ``ValueError`` naming ``m`` where its fields or its layer break the suite's
    rules (see :func:`register_method`)."""
    for field_name in ("defaults", "conv_defaults"):
        for key, value in getattr(m, field_name).items():
            if key not in OPTION_VALUES:
                raise RegistrationError(
                    f"method {m.name!r}: option {key!r} in {field_name} is not one the suite "
                    f"knows; choose from {sorted(OPTION_VALUES)}"
                )
            if value is not None:
                try:
                    check_option(key, value)
                except ValueError as e:
                    raise RegistrationError(f"method {m.name!r}: {field_name}: {e}") from None
    if m.dtypes is not None:
        wrong = sorted(set(m.dtypes) - set(_DTYPE_NAMES))
        if wrong or not m.dtypes:
            raise RegistrationError(f"method {m.name!r}: dtypes must be some of {_DTYPE_NAMES}")
    if m.build is None or m.graphed or m.unavailable():
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            _check_layer(m)
        except RegistrationError:
            raise
        except Exception as e:
            raise RegistrationError(
                f"method {m.name!r}: building or stepping a 4 x 4 layer failed: "
                f"{type(e).__name__}: {e}"
            ) from e


def _check_layer(m: Method) -> None:
    """One 4 x 4 layer of ``m``: the protocol's shapes, unitarity, one step per optimizer."""
    from projunn_core.protocol import unitarity_error

    n = 4
    dtype = getattr(torch, (m.dtypes or ("float32",))[0])
    bound = m.unitarity_bound(n) if m.approximate else None
    tolerance = (bound or 0.0) + (1e-3 if dtype in (torch.float32, torch.complex64) else 1e-8)

    def unitary(layer, when: str) -> None:
        W = layer.matrix()
        if tuple(W.shape) != (n, n):
            raise RegistrationError(
                f"method {m.name!r}: matrix() {when} has shape {tuple(W.shape)}"
            )
        error = unitarity_error(W)
        if m.unitary and not error <= tolerance:
            raise RegistrationError(
                f"method {m.name!r}: matrix() {when} is not unitary: "
                f"||W^H W - I||_F / sqrt(n) = {error:.3g} > {tolerance:.3g}"
            )

    for name in m.optimizers:
        layer = m(n, dtype=dtype)
        if not callable(getattr(layer, "matrix", None)):
            raise RegistrationError(f"method {m.name!r}: its layer has no matrix() method")
        unitary(layer, "after build")
        x = torch.randn(3, n, dtype=dtype)
        y = layer(x)
        if tuple(y.shape) != (3, n):
            raise RegistrationError(
                f"method {m.name!r}: layer(x) of x {(3, n)} has shape {y.shape}"
            )
        opt = layer.optimizer(name, lr=1e-2, **m.optimizer_options)
        opt.zero_grad()
        y.abs().square().sum().backward()
        opt.step()
        unitary(layer, f"after one {name} step")

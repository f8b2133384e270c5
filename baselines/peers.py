"""Peer libraries as layers of the project's protocol: geoopt's Stiefel manifolds and
geotorch's orthogonal parametrization (plus the registry of the peer methods, Landing
included, see :mod:`baselines.landing`).

Neither library is a dependency: ``import baselines`` works without them, each class
imports its library when it is built, and one built without it raises ``ImportError``
naming ``pip install "projunn-bench[peers]"``. :func:`missing` tells, without importing
anything, whether a peer method can be built here (for skip reasons).

* :class:`GeooptStiefel` -- ``geoopt.ManifoldParameter`` on ``geoopt.EuclideanStiefel``
  (Euclidean metric, QR retraction); :class:`GeooptCanonical` -- on
  ``geoopt.CanonicalStiefel`` (canonical metric, Cayley retraction). Optimizers: "sgd"
  (``geoopt.optim.RiemannianSGD``: momentum, nesterov, ``stabilize``) and "adam"
  (``RiemannianAdam``); geoopt has no Riemannian RMSprop. Functional updates
  :func:`geoopt_stiefel_step` / :func:`geoopt_canonical_step` (batched ``(..., N, N)``).
* :class:`GeotorchOrthogonal` -- ``geotorch.orthogonal(linear, "weight", triv=...)``,
  ``triv`` "expm" or "cayley", optional dynamic trivialization (``update_base``); the
  torch optimizers on its unconstrained parameter. No functional update (a
  parametrization, like ``torch_orthogonal``).

**Real only.** geoopt 0.5.1's Stiefel manifolds use ``X^T`` where the unitary case needs
``X^H`` (its projection, inner products and Cayley matrix ``u x^T − x u^T``) and its QR
retraction calls ``torch.sign`` on R's diagonal, which refuses complex tensors; with a
complex X its Cayley step runs but leaves the unitary group (measured: ``‖W^H W − I‖_F``
about 1 after one step of lr 0.1 at N = 4). geotorch 0.4.0 builds its skew matrices as
``A − A^T`` and its initialisation calls ``torch.sign`` too (complex weights raise). So
both take float32 and float64 only (:data:`PEER_DTYPES`); a complex dtype raises
``ValueError`` saying so.

**No convolutions.** The free frequency matrices of a convolution are complex; neither
library trains complex unitary matrices, so neither has a conv layer here (Landing has:
:class:`baselines.landing.LandingConv2d`).

**Non-finite gradients.** Like every optimizer of the project, the returned optimizers
skip a parameter whose gradient is not finite (bit-for-bit unchanged) and count it in
``opt.skipped_steps``: geoopt's behind a thin subclass that hides such gradients from
geoopt's ``step``, geotorch's through ``projunn_core.optim`` (torch's update).

>>> missing("landing") is None
True
>>> sorted(PEER_METHODS)
['geoopt_canonical', 'geoopt_stiefel', 'geotorch_cayley', 'geotorch_expm', 'landing']
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import warnings

import torch
from torch import nn

from projunn_core._checks import SUPPORTED_DTYPES, all_finite, check_square

from ._common import BaseUnitary, initial_unitary, projected_optimizer
from .landing import Landing, LandingConv2d, landing_step

__all__ = [
    "GEOOPT_OPTIMIZERS",
    "GEOTORCH_TRIVS",
    "INSTALL_LINE",
    "PEER_CONV_LAYERS",
    "PEER_DTYPES",
    "PEER_LIBRARIES",
    "PEER_METHODS",
    "PEER_UPDATES",
    "REAL_DTYPES",
    "GeooptCanonical",
    "GeooptStiefel",
    "GeotorchCayley",
    "GeotorchExpm",
    "GeotorchOrthogonal",
    "geoopt_canonical_step",
    "geoopt_stiefel_step",
    "missing",
]

INSTALL_LINE = 'pip install "projunn-bench[peers]"'
"""What installs the peer libraries (the ``peers`` extra of pyproject.toml)."""

REAL_DTYPES = (torch.float32, torch.float64)

PEER_LIBRARIES = {
    "geoopt_stiefel": "geoopt",
    "geoopt_canonical": "geoopt",
    "geotorch_expm": "geotorch",
    "geotorch_cayley": "geotorch",
    "landing": None,
}
"""Peer method name -> the library it needs (``None``: written here, needs nothing)."""

GEOOPT_OPTIMIZERS = ("sgd", "adam")
GEOTORCH_TRIVS = ("expm", "cayley")


# -- the libraries, imported on demand -----------------------------------------------


def _available(library: str) -> bool:
    """Whether ``library`` can be imported (checked without importing it)."""
    if library in sys.modules:
        return sys.modules[library] is not None
    return importlib.util.find_spec(library) is not None


def missing(name: str) -> str | None:
    """``None`` when peer method (or library) ``name`` can be built here, else the reason
    with the install line, e.g. ``'geoopt is not installed: pip install
    "projunn-bench[peers]"'``. Nothing is imported.

    >>> missing("geoopt_stiefel") in (None, 'geoopt is not installed: ' + INSTALL_LINE)
    True
    >>> missing("pymanopt")
    Traceback (most recent call last):
        ...
    ValueError: unknown peer 'pymanopt'; choose from geoopt_stiefel, geoopt_canonical, ...
    """
    libraries = {n for n in PEER_LIBRARIES.values() if n is not None}
    if name in PEER_LIBRARIES:
        library = PEER_LIBRARIES[name]
    elif name in libraries:
        library = name
    else:
        names = [*PEER_LIBRARIES, *sorted(libraries)]
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(names)}")
    if library is None or _available(library):
        return None
    return f"{library} is not installed: {INSTALL_LINE}"


def _require(library: str, who: str):
    """Import ``library`` (quietly: geoopt's import warns about ``torch.jit.script`` dozens
    of times) or raise ``ImportError`` naming the install line."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return importlib.import_module(library)
    except ImportError as e:
        raise ImportError(f"{who} needs {library}, which is not installed: {INSTALL_LINE}") from e


def _check_real(who: str, library: str, dtype: torch.dtype) -> None:
    if dtype.is_complex:
        raise ValueError(
            f"{who} is real-only: {library} keeps X^T X = I (transposes, not conjugate "
            f"transposes), so it cannot train a unitary {dtype} matrix; use float32 or "
            "float64 (landing, expm, cayley, svd and projUNN take complex dtypes)"
        )


# -- the non-finite guard around a library optimizer ---------------------------------


def _unhooked_step(cls):
    """``cls.step`` without torch's step-hook wrapper (torch wraps a class's ``step`` once
    an instance exists; calling the wrapped parent step from a subclass's would run the
    hooks twice)."""
    step = cls.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


@functools.cache
def _skipping(base: type) -> type:
    """``base`` (a ``torch.optim.Optimizer`` subclass) whose ``step`` hides non-finite
    gradients from ``base.step`` and counts them in ``skipped_steps``."""

    class Skipping(base):
        def __init__(self, *args, skip_nonfinite: bool = True, **kwargs):
            self.skip_nonfinite = bool(skip_nonfinite)
            self._skipped = 0
            super().__init__(*args, **kwargs)

        @property
        def skipped_steps(self) -> int:
            """Parameters skipped so far for a non-finite gradient."""
            return self._skipped

        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            held = []  # (param, grad) hidden from the library's step
            try:
                if self.skip_nonfinite:
                    for group in self.param_groups:
                        for p in group["params"]:
                            if p.grad is not None and not all_finite(p.grad):
                                held.append((p, p.grad))
                                p.grad = None
                                self._skipped += 1
                _unhooked_step(base)(self)
            finally:
                for p, grad in held:
                    p.grad = grad
            return loss

    Skipping.__name__ = Skipping.__qualname__ = f"Skipping{base.__name__}"
    return Skipping


# -- geoopt --------------------------------------------------------------------------


@functools.cache
def _geoopt_manifold(kind: str):
    geoopt = _require("geoopt", f"geoopt_{kind}_step")
    return geoopt.EuclideanStiefel() if kind == "stiefel" else geoopt.CanonicalStiefel()


def _geoopt_step(kind: str, A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    check_square("A", A)
    _check_real(f"geoopt_{kind}_step", "geoopt", A.dtype)
    if G.shape != A.shape:
        raise ValueError(f"G must have A's shape {tuple(A.shape)}, got {tuple(G.shape)}")
    manifold = _geoopt_manifold(kind)
    A.copy_(manifold.retr(A, -lr * manifold.egrad2rgrad(A, G)))
    return A


@torch.no_grad()
def geoopt_stiefel_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """geoopt's Euclidean-metric Stiefel step in place, ``A <- retr(A, −lr rgrad)``;
    returns ``A``. ``rgrad = G − A sym(A^T G)`` (``egrad2rgrad``, the projection onto the
    tangent space) and the retraction is the Q factor of ``A − lr rgrad`` with the signs
    of R's diagonal made positive (``EuclideanStiefel.retr``). Real, ``(..., N, N)``."""
    return _geoopt_step("stiefel", A, G, lr)


@torch.no_grad()
def geoopt_canonical_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """geoopt's canonical-metric Stiefel step in place; returns ``A``. ``rgrad = G − A
    G^T A`` and the Cayley retraction ``(I − W/2)^-1 (I + W/2) A`` with ``W = u A^T −
    A u^T``, ``u = −lr rgrad`` (``CanonicalStiefel.retr``). For square orthogonal A,
    ``W = −2 lr (G A^T − A G^T)``: this is ``baselines.cayley_step`` at twice the rate
    (the canonical metric is half the Euclidean one on O(n)). Real, ``(..., N, N)``."""
    return _geoopt_step("canonical", A, G, lr)


class _GeooptLayer(BaseUnitary):
    """A ``geoopt.ManifoldParameter`` W on a Stiefel manifold (``_kind``)."""

    DTYPES = REAL_DTYPES
    LIBRARY = "geoopt"
    _kind = "stiefel"

    def __init__(self, n: int, dtype=torch.float32, device=None, *, init: str = "haar"):
        super().__init__(n, dtype, device)
        _check_real(type(self).__name__, self.LIBRARY, self.dtype)
        W = initial_unitary(init, self.n, self.dtype, self.device)
        geoopt = _require(self.LIBRARY, type(self).__name__)
        self.weight = geoopt.ManifoldParameter(W, manifold=_geoopt_manifold(self._kind))

    def matrix(self) -> torch.Tensor:
        return self.weight

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """geoopt's ``RiemannianSGD`` ("sgd": ``momentum``, ``nesterov``, ``stabilize``,
        ...) or ``RiemannianAdam`` ("adam": ``betas``, ``stabilize``, ...), skipping
        non-finite gradients (``skipped_steps``); ``skip_nonfinite=False`` turns that off.
        ``stabilize=K`` re-projects W onto the manifold (SVD) every K steps."""
        key = str(name).lower()
        if key == "rmsprop":
            raise ValueError(
                f"geoopt has no Riemannian RMSprop; optimizer name must be one of "
                f"{GEOOPT_OPTIMIZERS}, got {name!r}"
            )
        if key not in GEOOPT_OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {GEOOPT_OPTIMIZERS}, got {name!r}")
        optim = _require(self.LIBRARY, type(self).__name__).optim
        base = optim.RiemannianSGD if key == "sgd" else optim.RiemannianAdam
        return _skipping(base)(self.parameters(), lr=lr, **kw)


class GeooptStiefel(_GeooptLayer):
    """W a ``geoopt.ManifoldParameter`` on ``geoopt.EuclideanStiefel()`` (Euclidean metric,
    QR retraction), trained by geoopt's Riemannian optimizers (see ``optimizer``).
    Options: ``init`` (a name of ``projunn_core.init.INITS``; default "haar"). Real dtypes
    only (:data:`DTYPES`)."""

    _kind = "stiefel"


class GeooptCanonical(_GeooptLayer):
    """W a ``geoopt.ManifoldParameter`` on ``geoopt.CanonicalStiefel()`` (canonical metric,
    Cayley retraction), trained by geoopt's Riemannian optimizers (see ``optimizer``).
    Options: ``init`` (a name of ``projunn_core.init.INITS``; default "haar"). Real dtypes
    only (:data:`DTYPES`)."""

    _kind = "canonical"


# -- geotorch ------------------------------------------------------------------------


class GeotorchOrthogonal(BaseUnitary):
    """``geotorch.orthogonal`` on a square bias-free ``nn.Linear``: ``W = B φ(A − A^T)``,
    A's strictly lower triangle the trained parameter, B a base buffer and φ the
    trivialization ``triv`` ("expm": ``torch.linalg.matrix_exp``; "cayley": geotorch's
    Cayley map). ``update_base=K`` (None or int K >= 1) folds W into the base every K
    optimizer steps (geotorch's ``update_base``: dynamic trivialization), inside the
    returned optimizer's ``step()``. ``init`` (a name of ``projunn_core.init.INITS``;
    default "haar") is the starting W, any orthogonal matrix (det ±1: it becomes B).
    Optimizers: "sgd", "rmsprop", "adam" (``projunn_core.optim``: torch's, non-finite
    gradients skipped). Real dtypes only (:data:`DTYPES`)."""

    DTYPES = REAL_DTYPES
    LIBRARY = "geotorch"

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        triv: str = "expm",
        update_base: int | None = None,
        init: str = "haar",
    ):
        super().__init__(n, dtype, device)
        _check_real(type(self).__name__, self.LIBRARY, self.dtype)
        if triv not in GEOTORCH_TRIVS:
            raise ValueError(f"triv must be one of {GEOTORCH_TRIVS}, got {triv!r}")
        K = update_base
        if K is not None and (isinstance(K, bool) or not isinstance(K, int) or K < 1):
            raise ValueError(f"update_base must be None or an integer >= 1, got {K!r}")
        self.triv, self.update_base, self._steps = triv, K, 0
        W = initial_unitary(init, self.n, self.dtype, self.device)
        geotorch = _require(self.LIBRARY, type(self).__name__)
        self.linear = nn.Linear(self.n, self.n, bias=False, dtype=self.dtype, device=self.device)
        geotorch.orthogonal(self.linear, "weight", triv=triv)
        with torch.no_grad():
            self.linear.weight = W  # geotorch's right_inverse: base <- W, parameter <- 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def matrix(self) -> torch.Tensor:
        return self.linear.weight

    def change_base(self) -> None:
        """geotorch's ``update_base``: the base becomes W and the parameter 0 (W kept)."""
        _require(self.LIBRARY, type(self).__name__).update_base(self.linear, "weight")

    def _after_step(self) -> None:
        self._steps += 1
        if self.update_base is not None and self._steps % self.update_base == 0:
            self.change_base()

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """A ``projunn_core.optim`` optimizer (torch's update, non-finite gradients skipped)
        on the unconstrained parameter; with ``update_base`` its step also changes base."""
        return projected_optimizer(name, self.parameters(), lr, self._after_step, **kw)

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}, triv={self.triv!r}, update_base={self.update_base}"


class GeotorchExpm(GeotorchOrthogonal):
    """:class:`GeotorchOrthogonal` with ``triv="expm"`` (the registry's ``geotorch_expm``)."""

    def __init__(self, n: int, dtype=torch.float32, device=None, **options):
        super().__init__(n, dtype, device, triv="expm", **options)


class GeotorchCayley(GeotorchOrthogonal):
    """:class:`GeotorchOrthogonal` with ``triv="cayley"`` (the registry's
    ``geotorch_cayley``)."""

    def __init__(self, n: int, dtype=torch.float32, device=None, **options):
        super().__init__(n, dtype, device, triv="cayley", **options)


# -- the registry --------------------------------------------------------------------

PEER_METHODS = {
    "geoopt_stiefel": GeooptStiefel,
    "geoopt_canonical": GeooptCanonical,
    "geotorch_expm": GeotorchExpm,
    "geotorch_cayley": GeotorchCayley,
    "landing": Landing,
}
"""Peer method name -> layer class ``(n, dtype, device, **options)``."""

PEER_UPDATES = {
    "geoopt_stiefel": geoopt_stiefel_step,
    "geoopt_canonical": geoopt_canonical_step,
    "landing": landing_step,
}
"""Peer method name -> functional in-place update ``(A, G, lr) -> A`` (update workload)."""

PEER_CONV_LAYERS = {"landing": LandingConv2d}
"""Peer method name -> convolution (only Landing: the others are real-only)."""

PEER_DTYPES = {
    "geoopt_stiefel": REAL_DTYPES,
    "geoopt_canonical": REAL_DTYPES,
    "geotorch_expm": REAL_DTYPES,
    "geotorch_cayley": REAL_DTYPES,
    "landing": SUPPORTED_DTYPES,
}
"""Peer method name -> the dtypes its layer (and update) accepts."""

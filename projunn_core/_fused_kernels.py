"""Triton kernels of the fused sync-free step (:mod:`projunn_core.fused`; math: docs/design.md,
section 7.1).

This file is loaded by :func:`projunn_core.fused.kernels`, never imported directly: the loader
sets the module global ``INTERPRET`` before running it, so that the same source gives compiled
kernels (``JITFunction``) or kernels for Triton's CPU interpreter (``InterpretedFunction``),
whatever ``TRITON_INTERPRET`` said when this file was read.

Conventions of every kernel:

* everything small is float64; a complex matrix is its real embedding with interleaved real and
  imaginary parts (entry ``z = x + iy`` becomes the block ``[[x, -y], [y, x]]``), so a complex
  ``m x m`` problem is a real ``2m x 2m`` one. Products, Cholesky factors, inverses and
  polynomials of embeddings are embeddings, so the kernels never need complex arithmetic;
* a small matrix lives in one register tile of ``P x P`` (``P`` a power of two >= 16, the
  smallest ``tl.dot`` shape); its active part is the leading ``NE x NE`` block, the padding is
  the identity where a factorization needs it and zero otherwise;
* matrix products are ``tl.dot(..., input_precision="ieee")``: exact IEEE float64, never TF32;
* float64 constants that are not dyadic are never written as literals (Triton would round a
  literal to float32): scalars arrive as int64 bit patterns (``_f64``), the Taylor coefficients
  as a float64 tensor.
"""

import triton.language as tl

INTERPRET = globals().get("INTERPRET", False)


def _jit(fn=None, **kwargs):
    """``triton.jit`` that obeys the loader's ``INTERPRET`` instead of the environment."""

    def wrap(f):
        if INTERPRET:
            from triton.runtime.interpreter import InterpretedFunction

            return InterpretedFunction(f, **kwargs)
        from triton.runtime.jit import JITFunction

        return JITFunction(f, **kwargs)

    return wrap if fn is None else wrap(fn)


# -- small helpers ---------------------------------------------------------------------------


@_jit
def _dot(a, b):
    return tl.dot(a, b, input_precision="ieee")


@_jit
def _f64(bits):
    """The float64 whose bit pattern is the integer ``bits``."""
    return bits.to(tl.int64).to(tl.float64, bitcast=True)


@_jit
def _eye(P: tl.constexpr):
    r = tl.arange(0, P)
    return tl.where(r[:, None] == r[None, :], 1.0, 0.0).to(tl.float64)


@_jit
def _col(A, j, P: tl.constexpr):
    """Column j of A (a vector over the rows)."""
    r = tl.arange(0, P)
    return tl.sum(tl.where(r[None, :] == j, A, 0.0), axis=1)


@_jit
def _row(A, i, P: tl.constexpr):
    """Row i of A (a vector over the columns)."""
    r = tl.arange(0, P)
    return tl.sum(tl.where(r[:, None] == i, A, 0.0), axis=0)


@_jit
def _at(v, i, P: tl.constexpr):
    r = tl.arange(0, P)
    return tl.sum(tl.where(r == i, v, 0.0))


@_jit
def _finite(A):
    """Whether every entry of A is finite (NaN and inf fail ``|x| <= max``)."""
    big = tl.max(tl.max(tl.where(tl.abs(A) <= 1.7976931348623157e308, 0.0, 1.0), axis=1), axis=0)
    return big == 0.0


@_jit
def _frob2(A):
    return tl.sum(tl.sum(A * A, axis=1), axis=0)


@_jit
def _load_gram(
    ptr,
    s_chunk,
    s_part,
    s_row,
    n_chunks,
    first,
    nrows,
    CPLX: tl.constexpr,
    P: tl.constexpr,
    PAD_EYE: tl.constexpr,
):
    """The embedded ``nrows x nrows`` diagonal block starting at row/column ``first`` of a Gram
    matrix given as partial sums over column chunks (``ptr`` at this matrix's first chunk),
    padded to ``P x P`` (identity padding if PAD_EYE, else zero)."""
    r = tl.arange(0, P)
    if CPLX:
        i = r // 2
        p = r % 2
    else:
        i = r
        p = r * 0
    ii = i[:, None]
    jj = i[None, :]
    pp = p[:, None]
    qq = p[None, :]
    act = (ii < nrows) & (jj < nrows)
    off = (first + ii) * s_row + (first + jj)
    if CPLX:
        off = off + (pp != qq).to(tl.int32) * s_part
    acc = tl.zeros((P, P), dtype=tl.float64)
    for c in range(n_chunks):
        acc += tl.load(ptr + c * s_chunk + off, mask=act, other=0.0)
    if CPLX:
        acc = tl.where((pp == 0) & (qq == 1), -acc, acc)
    if PAD_EYE:
        acc = tl.where((ii == jj) & (ii >= nrows), 1.0, acc)
    return acc


@_jit
def _store_small(ptr, s_row, s_col, A, n, CPLX: tl.constexpr, P: tl.constexpr):
    """Store the embedded P x P tile A as the n x n matrix it embeds (real: as is; complex:
    the complex-linear part, so that even a non-embedding A gives the operator it stands for,
    as real and imaginary planes at ``ptr`` and ``ptr + 1``)."""
    if CPLX:
        H: tl.constexpr = P // 2
        a4 = tl.permute(tl.reshape(A, (H, 2, H, 2)), (0, 2, 1, 3))
        q0, q1 = tl.split(a4)  # a4[i, j, p, q] = A[2i + p, 2j + q]
        a00, a10 = tl.split(q0)
        a01, a11 = tl.split(q1)
        r = tl.arange(0, H)
        mask = (r[:, None] < n) & (r[None, :] < n)
        off = r[:, None] * s_row + r[None, :] * s_col
        tl.store(ptr + off, (0.5 * (a00 + a11)).to(ptr.dtype.element_ty), mask=mask)
        tl.store(ptr + off + 1, (0.5 * (a10 - a01)).to(ptr.dtype.element_ty), mask=mask)
    else:
        r = tl.arange(0, P)
        mask = (r[:, None] < n) & (r[None, :] < n)
        tl.store(
            ptr + r[:, None] * s_row + r[None, :] * s_col, A.to(ptr.dtype.element_ty), mask=mask
        )


# -- factorizations --------------------------------------------------------------------------


@_jit
def _chol_inv(A, NE, P: tl.constexpr):
    """Cholesky factor L of the leading NE x NE block of A and its inverse, both with identity
    padding, and whether every pivot was positive (right-looking; the inverse accumulates the
    elementary factors: L = M_0 ... M_{NE-1}, M_j = I + (l_j - e_j) e_j^T)."""
    r = tl.arange(0, P)
    L = _eye(P)
    Li = _eye(P)
    ok = tl.full((), 1, tl.int1)
    for j in range(NE):
        col = _col(A, j, P)
        d = _at(col, j, P)
        ok = ok & (d > 0.0)
        piv = tl.sqrt(tl.where(d > 0.0, d, 1.0))
        lj = tl.where(r >= j, col / piv, 0.0)
        L = tl.where(r[None, :] == j, lj[:, None], L)
        A = A - lj[:, None] * lj[None, :]
        u = tl.where(r == j, lj - 1.0, lj) / piv
        Li = Li - u[:, None] * _row(Li, j, P)[None, :]
    return L, Li, ok


@_jit
def _inverse(B, NE, P: tl.constexpr):
    """Inverse of the leading NE x NE block of B (identity padding elsewhere) by Gauss-Jordan
    elimination with partial pivoting on the tile ``[B, I]`` (columns interleaved), and whether
    every pivot was nonzero and finite. Rows are not swapped: B ends as the permutation matrix
    of the pivot rows (exactly: each pivot column is set to a unit vector), which then orders
    the inverse."""
    r = tl.arange(0, P)
    c2 = tl.arange(0, 2 * P)
    aug = tl.reshape(tl.join(B, _eye(P)), (P, 2 * P))  # aug[i, 2j] = B[i, j], [i, 2j + 1] = I
    used = r >= NE
    ok = tl.full((), 1, tl.int1)
    for j in range(NE):
        col = tl.sum(tl.where(c2[None, :] == 2 * j, aug, 0.0), axis=1)
        p = tl.argmax(tl.where(used, -1.0, tl.abs(col)), axis=0)
        pv = _at(col, p, P)
        ok = ok & (tl.abs(pv) > 0.0) & (tl.abs(pv) <= 1.7976931348623157e308)
        prow = tl.sum(tl.where(r[:, None] == p, aug, 0.0), axis=0) / tl.where(pv != 0.0, pv, 1.0)
        f = tl.where(r == p, 0.0, col)
        aug = tl.where(r[:, None] == p, prow[None, :], aug - f[:, None] * prow[None, :])
        used = used | (r == p)
    perm, inv = tl.split(tl.reshape(aug, (P, P, 2)))
    return _dot(tl.trans(perm), inv), ok


@_jit
def _regularized(W, NE, s, P: tl.constexpr):
    """``W / (1 + s)`` off the diagonal, unit diagonal, identity padding: the shifted Gram
    matrix of rows scaled to unit length (a zero row gets a unit pivot of its own)."""
    r = tl.arange(0, P)
    diag = r[:, None] == r[None, :]
    act = (r[:, None] < NE) & (r[None, :] < NE)
    return tl.where(diag, 1.0, tl.where(act, W / (1.0 + s), 0.0))


@_jit
def _balance(W, P: tl.constexpr):
    """Row norms w of the Gram matrix W (zero rows: 0), the divisors (zero rows: 1) and the
    Gram matrix of the rows scaled to unit length."""
    r = tl.arange(0, P)
    d = tl.sum(tl.where(r[:, None] == r[None, :], W, 0.0), axis=1)
    w = tl.sqrt(tl.maximum(d, 0.0))
    wd = tl.where(w > 0.0, w, 1.0)
    return w, wd, W / (wd[:, None] * wd[None, :])


# -- the Gram kernel ---------------------------------------------------------------------


@_jit
def gram_kernel(
    x0,
    s0b,
    s0r,
    s0c,
    n0,
    c0,
    x1,
    s1b,
    s1r,
    s1c,
    n1,
    c1,
    out,
    so_b,
    so_c,
    so_p,
    N,
    CHUNK,
    R: tl.constexpr,
    CPLX: tl.constexpr,
    TWO: tl.constexpr,
    BN: tl.constexpr,
):
    """Partial Gram matrices ``X X^H`` over one chunk of columns of the rows ``X`` = the n0 rows
    at x0 followed by the n1 rows at x1 (if TWO), accumulated in float64 and stored at
    ``out[b, chunk]`` (real part, then the imaginary part at ``+ so_p`` if CPLX). Strides are in
    real elements; complex inputs are their real views, ``c0``/``c1`` = -1 conjugates a block."""
    b = tl.program_id(0)
    chunk = tl.program_id(1)
    r = tl.arange(0, R)
    in0 = r < n0
    in1 = (r >= n0) & (r < n0 + n1)
    r1 = tl.where(in1, r - n0, 0)
    acc_r = tl.zeros((R, R), dtype=tl.float64)
    acc_i = tl.zeros((R, R), dtype=tl.float64)
    start = chunk * CHUNK
    stop = tl.minimum(start + CHUNK, N)
    for c_start in range(start, stop, BN):
        cols = c_start + tl.arange(0, BN)
        cm = cols < stop
        p0 = x0 + b * s0b + r[:, None] * s0r + cols[None, :] * s0c
        m0 = in0[:, None] & cm[None, :]
        xr = tl.load(p0, mask=m0, other=0.0).to(tl.float64)
        if TWO:
            p1 = x1 + b * s1b + r1[:, None] * s1r + cols[None, :] * s1c
            m1 = in1[:, None] & cm[None, :]
            xr += tl.load(p1, mask=m1, other=0.0).to(tl.float64)
        if CPLX:
            xi = tl.load(p0 + 1, mask=m0, other=0.0).to(tl.float64) * c0
            if TWO:
                xi += tl.load(p1 + 1, mask=m1, other=0.0).to(tl.float64) * c1
            acc_r += _dot(xr, tl.trans(xr)) + _dot(xi, tl.trans(xi))
            acc_i += _dot(xi, tl.trans(xr)) - _dot(xr, tl.trans(xi))
        else:
            acc_r += _dot(xr, tl.trans(xr))
    o = out + b * so_b + chunk * so_c + r[:, None] * R + r[None, :]
    tl.store(o, acc_r)
    if CPLX:
        tl.store(o + so_p, acc_i)


# -- the small problems ------------------------------------------------------------------


@_jit
def _pinv(Ga, PS: tl.constexpr):
    """Inverse of the Gram matrix ``Ga`` of nearly orthonormal vectors on their span, and ~0 on
    the directions where they vanish (5 Newton-Schulz steps ``X <- X (2I - Ga X)`` from
    ``X = alpha Ga``, ``alpha`` small enough for convergence)."""
    ninf = tl.max(tl.sum(tl.abs(Ga), axis=1), axis=0)
    Xp = Ga / tl.maximum(ninf * ninf, 1.0)
    two = 2.0 * _eye(PS)
    for _ in tl.static_range(5):
        Xp = _dot(Xp, two - _dot(Ga, Xp))
    return Xp


@_jit
def _expm_alg(M, G, coef, U: tl.constexpr, P: tl.constexpr):
    """H with ``exp(Q M Q^H) - I = Q H Q^H`` for a frame Q with Gram matrix G: the degree-25
    Taylor polynomial ``phi(Z G) Z`` of ``Z = M / 2^s`` (Paterson-Stockmeyer, ``phi(x) =
    sum x^(n-1) / n!``), then s squarings ``H <- H (G H + 2I)``; ``s`` is the smallest number
    <= 7 with ``|Z|_F <= 2.7``. Also whether ``|M|_F <= 2.7 * 2^7`` (in range). U = 2 for a
    complex M (its real embedding has twice the squared Frobenius norm)."""
    nrm = tl.sqrt(_frob2(M) / U)
    in_range = nrm <= 345.6
    M = tl.where(in_range, M, 0.0)  # out of range: skipped, computed on zeros
    nrm = tl.where(in_range, nrm, 0.0)
    ns = tl.full((), 0, tl.int32)
    fac = tl.full((), 1.0, tl.float64)
    t = nrm
    while (t > 2.7) & (ns < 7):
        t = t * 0.5
        fac = fac * 0.5
        ns += 1
    Z = M * fac
    X1 = _dot(Z, G)
    X2 = _dot(X1, X1)
    X3 = _dot(X2, X1)
    X4 = _dot(X3, X1)
    X5 = _dot(X4, X1)
    eye = _eye(P)
    Pm = (
        tl.load(coef + 20) * eye
        + tl.load(coef + 21) * X1
        + tl.load(coef + 22) * X2
        + tl.load(coef + 23) * X3
        + tl.load(coef + 24) * X4
    )
    for i in tl.static_range(3, -1, -1):
        q = (
            tl.load(coef + 5 * i) * eye
            + tl.load(coef + 5 * i + 1) * X1
            + tl.load(coef + 5 * i + 2) * X2
            + tl.load(coef + 5 * i + 3) * X3
            + tl.load(coef + 5 * i + 4) * X4
        )
        Pm = q + _dot(X5, Pm)
    H = _dot(Pm, Z)
    two = 2.0 * eye
    i = tl.full((), 0, tl.int32)
    while i < ns:
        H = _dot(H, _dot(G, H) + two)
        i += 1
    return H, in_range


@_jit
def _gram_defect(H, c, G):
    """``F`` with ``U^H U - I = (c^2 - 1) I + Q F Q^H`` for ``U = c I + Q H Q^H``, and ``F G``."""
    F = c * (H + tl.trans(H)) + _dot(tl.trans(H), _dot(G, H))
    return F, _dot(F, G)


@_jit
def _defect(H, c, G, U: tl.constexpr):
    """F, F G and the defect ``|G^(1/2) F G^(1/2)|_F + |c^2 - 1|`` of ``U^H U - I`` (U = 2
    for a complex problem: its real embedding doubles the squared Frobenius norm)."""
    F, FG = _gram_defect(H, c, G)
    e = tl.sqrt(tl.maximum(tl.sum(tl.sum(FG * tl.trans(FG), axis=1), axis=0), 0.0) / U)
    return F, FG, e + tl.abs(c * c - 1.0)


@_jit
def _polar_alg(K, G, NE, U: tl.constexpr, P: tl.constexpr):
    """H with ``polar(I + Q K Q^H) - I = Q H Q^H`` for a frame Q with Gram matrix G, and whether
    the iteration converged. The iterate ``U = c I + Q H Q^H`` takes scaled Newton steps
    ``U <- (z U + (z U)^-H) / 2`` (the inverse through Gauss-Jordan on the small matrix
    ``c I + H G``) while its defect e (``|U^H U - I|_F`` on span Q) is >= 0.9, then
    Newton-Schulz steps ``U <- U (3I - U^H U) / 2``, which converge from e < 1 (every singular
    value is then in (0, sqrt 2)) and map e to at most ``3/4 e^2 (1 + e/3)``: as many as that
    bound needs to reach 1e-16, without measuring e in between. Converged: e <= 1e-10."""
    r = tl.arange(0, P)
    act = (r[:, None] < NE) & (r[None, :] < NE)
    eye = _eye(P)
    c = tl.full((), 1.0, tl.float64)
    H = K
    F, FG, e = _defect(H, c, G, U)
    good = e == e
    it = tl.full((), 0, tl.int32)
    while (e >= 0.9) & (it < 40) & good:
        B = c * eye + _dot(H, G)
        Bi, inv_ok = _inverse(B, NE, P)
        good = good & inv_ok
        nb = tl.sum(tl.sum(tl.where(act, B * B, 0.0), axis=1), axis=0)
        ni = tl.sum(tl.sum(tl.where(act, Bi * Bi, 0.0), axis=1), axis=0)
        z = tl.sqrt(tl.sqrt(ni / nb))
        H = 0.5 * (z * H - tl.trans(_dot(Bi, H)) / (z * c))
        c = 0.5 * (z * c + 1.0 / (z * c))
        F, FG, e = _defect(H, c, G, U)
        it += 1
    steps = tl.full((), 0, tl.int32)
    t = tl.where(good & (e < 0.9), e, 0.0)
    while (t > 1e-16) & (steps < 40):
        t = 0.75 * t * t * (1.0 + t / 3.0)
        steps += 1
    i = tl.full((), 0, tl.int32)
    while i < steps:
        if i > 0:
            F, FG = _gram_defect(H, c, G)
        H = 0.5 * ((3.0 - c * c) * H - c * F - _dot(H, tl.trans(FG)))
        c = 0.5 * c * (3.0 - c * c)
        i += 1
    F, FG, e = _defect(H, c, G, U)
    return H, good & (e <= 1e-10)


@_jit
def sketch_kernel(
    g,
    sg_b,
    sg_c,
    sg_p,
    sg_r,
    n_chunks,
    out,
    so_b,
    so_r,
    so_c,
    N,
    K: tl.constexpr,
    CPLX: tl.constexpr,
    PS: tl.constexpr,
):
    """T (K x K) such that ``Y T`` is nearly orthonormal, from the Gram matrix ``Y^H Y`` of the
    range finder's sketch Y: two passes of shifted CholeskyQR done on the small Gram matrix,
    the second one with a shift per row that covers the rounding of the first (section 7.1).
    The main kernel corrects what is left with the exact Gram matrix of ``Y T``."""
    b = tl.program_id(0)
    U: tl.constexpr = 2 if CPLX else 1
    KE: tl.constexpr = U * K
    r = tl.arange(0, PS)
    eye = r[:, None] == r[None, :]
    act = (r[:, None] < KE) & (r[None, :] < KE)
    S = _load_gram(g + b * sg_b, sg_c, sg_p, sg_r, n_chunks, 0, K, CPLX, PS, True)
    s = ((U * N + KE + 1) * KE).to(tl.float64) * 2.220446049250313e-16
    w, wd, Sb = _balance(S, PS)
    h0 = tl.where(w > 0.0, 1.0, 0.0)
    L1, Li, ok1 = _chol_inv(_regularized(Sb, KE, s, PS), KE, PS)
    W2 = _dot(_dot(Li, Sb), tl.trans(Li))
    W2 = 0.5 * (W2 + tl.trans(W2))
    h = tl.sum(tl.abs(Li) * h0[None, :], axis=1)
    dv = tl.sum(tl.where(eye, W2, 0.0), axis=1)
    d = tl.maximum(dv, s * h * h)
    d = tl.where(d > 0.0, d, 1.0)
    c = 1.0 / tl.sqrt(1.0 + s * tl.maximum(dv, h * h) / d)
    W2 = tl.where(
        eye,
        tl.where(r[:, None] < KE, d[:, None], 1.0),
        tl.where(act, W2 * c[:, None] * c[None, :], 0.0),
    )
    L2, Li2, ok2 = _chol_inv(W2, KE, PS)
    T = tl.trans(_dot(Li2, Li)) / wd[:, None]
    _store_small(out + b * so_b, so_r, so_c, T, K, CPLX, PS)


@_jit(do_not_specialize=["scale_bits", "limit_bits"])
def small_kernel(
    g,
    sg_b,
    sg_c,
    sg_p,
    sg_r,
    n_chunks,
    coef,
    x,
    sx_b,
    sx_r,
    sx_c,
    out,
    so_b,
    so_r,
    so_c,
    valid,
    skipped,
    scale_bits,
    limit_bits,
    N,
    K: tl.constexpr,
    CPLX: tl.constexpr,
    POLAR: tl.constexpr,
    STEP: tl.constexpr,
    GUARD: tl.constexpr,
    HAS_VALID: tl.constexpr,
    HAS_SKIPPED: tl.constexpr,
    P: tl.constexpr,
    PS: tl.constexpr,
    BN: tl.constexpr,
):
    """Everything between the Gram matrix of the rows ``X = [b^H; (A^H a)^H]`` and the update
    ``A += (A X^H) C X``, for one matrix of the batch: writes C (2K x 2K).

    STEP: the Gram matrix also holds the rows ``a^H`` of the sketch basis after X, and the
    update is for ``a (a^H a)^+ a^H (scale G)`` (the projection on span a). ``POLAR``: projUNN-D,
    else projUNN-T. ``GUARD``: a step that is not finite, out of range or not converged (or
    whose ``valid`` entry is false, or with a row of X longer than ``limit``, for which
    ``A X^H`` could overflow) gets C = 0 and zero rows X, and counts into ``skipped``."""
    b = tl.program_id(0)
    U: tl.constexpr = 2 if CPLX else 1
    KE: tl.constexpr = U * K
    NE: tl.constexpr = 2 * KE
    r = tl.arange(0, P)
    rows = r[:, None]
    cols = r[None, :]
    gb = g + b * sg_b
    W = _load_gram(gb, sg_c, sg_p, sg_r, n_chunks, 0, 2 * K, CPLX, P, True)
    ok = _finite(W)
    W = tl.where(ok, W, 0.0)  # a skipped step computes on zeros: no NaN, no overflow
    if STEP:
        Ga = _load_gram(gb, sg_c, sg_p, sg_r, n_chunks, 2 * K, K, CPLX, PS, False)
        ok = ok & _finite(Ga)
        Ga = tl.where(ok, Ga, 0.0)
        Gh = _pinv(Ga, PS)
        t = tl.arange(0, PS)[None, :]
        E1 = tl.where((rows == t + KE) & (t < KE), 1.0, 0.0).to(tl.float64)
        E0 = tl.where((rows == t) & (t < KE), 1.0, 0.0).to(tl.float64)
        Pc = _dot(_dot(E1, Gh), tl.trans(E0))
    else:
        Pc = tl.where((rows == cols + KE) & (cols < KE), 1.0, 0.0).to(tl.float64)
    w, wd, Wb = _balance(W, P)
    # |(A X^H)_il| <= |row l of X| (A unitary): rows that long would overflow A's dtype
    ok = ok & (tl.max(w, axis=0) <= _f64(limit_bits))
    Pb = Pc * w[:, None] * w[None, :]
    s = ((U * N + NE + 1) * NE).to(tl.float64) * 2.220446049250313e-16
    L, Li, chol_ok = _chol_inv(_regularized(Wb, NE, s, P), NE, P)
    ok = ok & chol_ok
    G = _dot(_dot(Li, Wb), tl.trans(Li))
    G = 0.5 * (G + tl.trans(G))
    Kf = _f64(scale_bits) * _dot(tl.trans(L), _dot(Pb, L))
    if POLAR:
        H, conv = _polar_alg(Kf, G, NE, U, P)
    else:
        H, conv = _expm_alg(0.5 * (Kf - tl.trans(Kf)), G, coef, U, P)
    ok = ok & conv
    C = _dot(_dot(tl.trans(Li), H), Li) / (wd[:, None] * wd[None, :])
    ok = ok & _finite(C)
    if HAS_VALID:
        ok = ok & (tl.load(valid + b) != 0)
    if GUARD:
        C = tl.where(ok, C, 0.0)
        if ok == 0:
            RX: tl.constexpr = P // U
            ri = tl.arange(0, RX)
            zeros = tl.zeros((RX, BN), dtype=x.dtype.element_ty)
            for c0 in range(0, N, BN):
                cn = c0 + tl.arange(0, BN)
                m = (ri[:, None] < 2 * K) & (cn[None, :] < N)
                px = x + b * sx_b + ri[:, None] * sx_r + cn[None, :] * sx_c
                tl.store(px, zeros, mask=m)
                if CPLX:
                    tl.store(px + 1, zeros, mask=m)
            if HAS_SKIPPED:
                tl.atomic_add(skipped, tl.full((), 1, tl.int64))
    _store_small(out + b * so_b, so_r, so_c, C, 2 * K, CPLX, P)

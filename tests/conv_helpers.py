"""Helpers shared by the convolution tests: an independent spatial kernel, a direct
circular convolution, and a short training loop."""

import numpy as np
import torch


def full_spectrum(M: np.ndarray, width: int) -> np.ndarray:
    """Extend rfft2-layout frequency matrices (H, W//2+1, C, C) to all (H, W) frequencies
    by K(-u, -v) = conj(K(u, v)) (built here independently of the layer's layout)."""
    H, Wf = M.shape[:2]
    S = np.zeros((H, width, *M.shape[2:]), dtype=np.complex128)
    S[:, :Wf] = M
    for v in range(Wf, width):
        for u in range(H):
            S[u, v] = np.conj(M[(-u) % H, width - v])
    return S


def spatial_kernel(conv) -> np.ndarray:
    """The (C_out, C_in, H, W) kernel whose circular convolution the layer computes."""
    M = conv.matrix().detach().to(torch.complex128).numpy()
    K = np.fft.ifft2(full_spectrum(M, conv.width), axes=(0, 1))
    assert np.abs(K.imag).max() < 1e-12 * max(1.0, np.abs(K).max()), "kernel is not real"
    return K.real.transpose(2, 3, 0, 1)


def direct_circular_conv(K: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y[b, o, i, j] = sum_{c, p, q} K[o, c, p, q] x[b, c, i - p, j - q] (indices mod H, W)."""
    y = np.zeros((x.shape[0], K.shape[0], *x.shape[2:]))
    for p in range(K.shape[2]):
        for q in range(K.shape[3]):
            y += np.einsum("oc,bchw->bohw", K[:, :, p, q], np.roll(x, (p, q), axis=(2, 3)))
    return y


def train(conv, steps, name="adam", lr=5e-2, **kw):
    opt = conv.optimizer(name, lr=lr, **kw)
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(4, conv.channels, conv.height, conv.width, dtype=conv.dtype, generator=gen)
    target = torch.randn(x.shape, dtype=conv.dtype, generator=gen)
    device = next(conv.parameters()).device
    x, target = x.to(device), target.to(device)
    for _ in range(steps):
        opt.zero_grad()
        (conv(x) - target).square().mean().backward()
        opt.step()
    return opt


def relative_norm_error(conv, x):
    with torch.no_grad():
        y = conv(x)
    dims = (1, 2, 3)
    norm = torch.linalg.vector_norm
    return ((norm(y, dim=dims) / norm(x, dim=dims)) - 1).abs().max().item()

"""Cost and accuracy of the baseline unitary layers (CPU or CUDA, float32 by default).

For every baseline: the median time of one training step (forward + backward + RMSprop
step, batch 128) at each size, the median time of the functional update ``(A, G, lr)``
where there is one, and the unitarity error ``||W^H W - I||_F / sqrt(n)`` after ``--steps``
training steps at ``--unitarity-n``.

    python scripts/bench_baselines.py                      # n = 256, 1024; 1000 steps at 256
    python scripts/bench_baselines.py --sizes 64 --steps 50 --unitarity-n 64   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from baselines import (
    EUNN,
    UPDATES,
    CayleyUnitary,
    ExpmUnitary,
    SVDProjection,
    TorchOrthogonal,
    Unconstrained,
    haar_unitary,
)
from projunn_core.protocol import unitarity_error
from suite.timing import measure

# label -> (constructor(n, dtype, device), functional update key or None)
CASES = {
    "eunn (capacity 4)": (lambda n, dt, dev: EUNN(n, dt, dev, capacity=4), None),
    "eunn (fft)": (lambda n, dt, dev: EUNN(n, dt, dev, fft=True), None),
    "svd projection": (lambda n, dt, dev: SVDProjection(n, dt, dev), "svd"),
    "expm (expRNN)": (lambda n, dt, dev: ExpmUnitary(n, dt, dev), "expm"),
    "cayley (scoRNN)": (lambda n, dt, dev: CayleyUnitary(n, dt, dev), "cayley"),
    "torch orthogonal matrix_exp": (
        lambda n, dt, dev: TorchOrthogonal(n, dt, dev, orthogonal_map="matrix_exp"),
        None,
    ),
    "torch orthogonal cayley": (
        lambda n, dt, dev: TorchOrthogonal(n, dt, dev, orthogonal_map="cayley"),
        None,
    ),
    "torch orthogonal householder": (
        lambda n, dt, dev: TorchOrthogonal(n, dt, dev, orthogonal_map="householder"),
        None,
    ),
    "unconstrained": (lambda n, dt, dev: Unconstrained(n, dt, dev), "unconstrained"),
}


def _problem(m, n, batch, dtype, device):
    x = torch.randn(batch, n, dtype=dtype, device=device)
    target = x @ haar_unitary(n, dtype, device).mT
    return x, target


def train_step_fn(m, opt, x, target):
    def step():
        opt.zero_grad()
        loss = (m(x) - target).abs().pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    return step


def time_train_step(make, n, args, dtype, device):
    torch.manual_seed(0)
    m = make(n, dtype, device)
    opt = m.optimizer("rmsprop", lr=args.lr)
    x, target = _problem(m, n, args.batch, dtype, device)
    t = measure(
        train_step_fn(m, opt, x, target),
        repeat=args.repeat,
        warmup=2,
        device=device,
        max_time=args.max_time,
    )
    return t


def time_update(key, n, args, dtype, device):
    torch.manual_seed(0)
    A = haar_unitary(n, dtype, device)
    G = torch.randn(n, n, dtype=dtype, device=device)
    fn = UPDATES[key]
    return measure(
        lambda: fn(A, G, 1e-3),
        repeat=args.repeat,
        warmup=2,
        device=device,
        max_time=args.max_time,
    )


def unitarity_after(make, n, steps, args, dtype, device):
    torch.manual_seed(1)
    m = make(n, dtype, device)
    opt = m.optimizer("rmsprop", lr=args.lr)
    x, target = _problem(m, n, args.batch, dtype, device)
    step = train_step_fn(m, opt, x, target)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    with torch.no_grad():
        err = unitarity_error(m.matrix())
    return err, float(loss.detach()), time.perf_counter() - start


def _ms(t):
    return f"{1e3 * t.median:.2f} ms" if t is not None else "–"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--max-time", type=float, default=3.0, help="seconds of samples per case")
    p.add_argument("--steps", type=int, default=1000, help="training steps before unitarity")
    p.add_argument("--unitarity-n", type=int, default=256)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (1 gives stable numbers on a shared, loaded machine)",
    )
    p.add_argument("--only", nargs="*", help="substrings of case labels to run")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    cases = {k: v for k, v in CASES.items() if not args.only or any(s in k for s in args.only)}
    print(
        f"# torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, "
        f"{args.dtype}, batch {args.batch}, RMSprop lr {args.lr}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for label, (make, key) in cases.items():
        row = {"method": label}
        for n in args.sizes:
            if "fft" in label and n & (n - 1):
                continue
            t = time_train_step(make, n, args, dtype, device)
            row[f"train_step_{n}"] = t.median
            u = time_update(key, n, args, dtype, device) if key else None
            row[f"update_{n}"] = u.median if u else None
            print(f"{label:30s} n={n:5d} train step {_ms(t)}  update {_ms(u)}", flush=True)
        if args.steps > 0:
            err, loss, secs = unitarity_after(
                make, args.unitarity_n, args.steps, args, dtype, device
            )
            row["unitarity"] = err
            row["final_loss"] = loss
            print(
                f"{label:30s} n={args.unitarity_n} after {args.steps} steps: "
                f"unitarity {err:.2e} loss {loss:.4f} ({secs:.1f} s)",
                flush=True,
            )
        rows.append(row)

    head = ["method"]
    for n in args.sizes:
        head += [f"train step n={n}", f"update n={n}"]
    head.append(f"unitarity after {args.steps} steps (n={args.unitarity_n})")
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["method"]]
        for n in args.sizes:
            tr, up = row.get(f"train_step_{n}"), row.get(f"update_{n}")
            cells.append(f"{1e3 * tr:.2f} ms" if tr is not None else "–")
            cells.append(f"{1e3 * up:.2f} ms" if up is not None else "–")
        cells.append(f"{row['unitarity']:.1e}" if "unitarity" in row else "–")
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

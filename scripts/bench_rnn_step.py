"""Train-step time of the unitary RNN: W built once per sequence vs once per time step.

One training step = forward over the whole sequence, cross-entropy at every step,
backward, RMSprop step. Two forwards are timed side by side in one process, alternating
samples so that both see the same machine load:

* ``per_step``: the recurrent layer is called at every time step (``cell(x_t, h)``), so a
  parametrized method rebuilds W = f(parameters) T times per forward (how
  ``UnitaryRNN`` worked before W was built once);
* ``model``: ``UnitaryRNN.forward`` as it is now (W once per sequence forward).

    python scripts/bench_rnn_step.py                       # hidden 128, T = 100, expm cayley
    python scripts/bench_rnn_step.py --methods expm cayley projunn_t --repeat 9 --threads 1
    python scripts/bench_rnn_step.py --device cuda --T 784 --hidden 512
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from suite.commands._args import add_threads_argument, apply_threads, positive_int
from suite.measure.cases import device_available
from suite.measure.methods import METHODS
from suite.measure.timing import timer


def per_step_forward(rnn, x):
    """The sequence forward calling the recurrent layer itself at every step."""
    h = torch.zeros(x.shape[0], rnn.cell.hidden_size, dtype=rnn.cell.dtype, device=x.device)
    states = []
    for t in range(x.shape[1]):
        h = rnn.cell(x[:, t], h)
        states.append(h)
    return rnn.readout(torch.stack(states, dim=1))


def train_step_fn(rnn, opt, x, y, forward):
    def step():
        opt.zero_grad(set_to_none=True)
        out = forward(rnn, x)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()

    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["expm", "cayley"], choices=sorted(METHODS))
    p.add_argument("--hidden", type=positive_int, default=128)
    p.add_argument("--T", type=positive_int, default=100)
    p.add_argument("--batch", type=positive_int, default=32)
    p.add_argument("--repeat", type=positive_int, default=7)
    add_threads_argument(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = p.parse_args(argv)
    apply_threads(args)
    import projunn_core as pc

    torch.manual_seed(0)
    dev = torch.device(args.device)
    if reason := device_available(args.device):
        p.error(f"--device {args.device}: {reason}")
    x = torch.randn(args.batch, args.T, 10, device=dev)
    y = torch.randint(0, 9, (args.batch, args.T), device=dev)
    where = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    print(
        f"train step (forward + backward + RMSprop), hidden {args.hidden}, T = {args.T}, "
        f"batch {args.batch}, float32, {where}; median of {args.repeat} alternating "
        "samples\n"
    )
    print("| method | W per time step | W once per sequence | speed-up |")
    print("|---|---|---|---|")
    for name in args.methods:
        spec = METHODS[name]
        layer = spec(args.hidden, device=dev, **({"rank": 1} if spec.ranked else {}))
        rnn = pc.nn.UnitaryRNN(10, args.hidden, 9, layer, device=dev)
        opt = rnn.optimizer("rmsprop", lr=1e-4)
        fns = {
            "per_step": train_step_fn(rnn, opt, x, y, per_step_forward),
            "model": train_step_fn(rnn, opt, x, y, lambda m, inp: m(inp)),
        }
        samples = {k: [] for k in fns}
        for fn in fns.values():  # warm-up
            fn()
        for _ in range(args.repeat):
            for key, fn in fns.items():
                start = timer(dev)
                fn()
                samples[key].append(timer(dev) - start)
        old, new = (statistics.median(samples[k]) * 1e3 for k in ("per_step", "model"))
        print(f"| {name} | {old:.1f} ms | {new:.1f} ms | {old / new:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

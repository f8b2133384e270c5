"""``projunn-bench list``: the method registry (with options), workloads, grids and caps.

>>> from suite.cli import main
>>> main(["list", "--grid", "tiny"])  # doctest: +ELLIPSIS
methods:
...
0
"""

from __future__ import annotations

import argparse
import textwrap

from ..measure import cases as cases_mod
from ..measure.methods import METHODS
from ..measure.workloads import TRAIN_OPTIMIZER as WORKLOAD_OPTIMIZER
from ..measure.workloads import WORKLOADS

NAME = "list"

EPILOG = """\
examples:
  projunn-bench list
  projunn-bench list --grid full"""


HELP = "show the methods, workloads and grids"
DESCRIPTION = "Show the method registry (with options), workloads, grids and skip caps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", choices=sorted(cases_mod.GRIDS), help="show only this grid")


def _peer_notes(m) -> list[str]:
    """The lines of a method's restrictions (dtypes, library, optimizer, tolerance)."""
    lines = []
    if m.dtypes is not None:
        lines.append(f"dtypes: {', '.join(m.dtypes)} only")
    if m.requires is not None:
        lines.append(f"needs {m.requires}: " + (m.unavailable() or "installed"))
    for asked in sorted({WORKLOAD_OPTIMIZER} - set(m.optimizers)):
        lines.append(f"optimizers: {', '.join(m.optimizers)}; {m.optimizer_note(asked)}")
    if m.approximate:
        lines.append(
            f"near-unitary by design: ||W W^H - I||_F <= {m.tolerance_option} "
            f"(default {m.defaults[m.tolerance_option]})"
        )
    return lines


def main(args, parser) -> int:
    print("methods:")
    for m in METHODS.values():
        opts = dict(m.defaults)
        if m.ranked:
            opts = {"rank": "k", **opts}
        flags = [f for f, on in (("O(N^3)", m.cubic), ("n power of 2", m.pow2)) if on]
        opt_text = ", ".join(f"{k}={v}" for k, v in opts.items()) or "-"
        print(f"  {m.name:<17} options: {opt_text}" + (f"  [{'; '.join(flags)}]" if flags else ""))
        if m.conv is not None:
            conv_opts = ", ".join(f"{k}={v}" for k, v in m.conv_defaults.items()) or "-"
            print(" " * 19 + f"conv layer options: {conv_opts}")
        print(textwrap.indent(m.description, " " * 19))
        print(" " * 19 + "workloads: " + ", ".join(m.workloads))
        for line in _peer_notes(m):
            print(" " * 19 + line)
    print("\nworkloads: " + ", ".join(WORKLOADS))
    print("\ngrids (select with --grid/--quick/--full or $" + cases_mod.GRID_ENV + "):")
    for name, g in cases_mod.GRIDS.items():
        if args.grid and name != args.grid:
            continue
        print(f"  {name}: {g.description}")
        st = g.settings
        print(f"    sizes={list(g.sizes)} ranks={list(g.ranks)} dtypes={list(g.dtypes)}")
        print(f"    conv: channels={list(g.channels)} x spatial (H = W)={list(g.spatial)}")
        print(
            f"    timing {st.min_time}-{st.max_time}s per case, warmup={st.warmup}, "
            f"accuracy_steps={st.accuracy_steps}, batch={st.batch}"
        )
    caps = ", ".join(f"{d}: N<={c}" for d, c in cases_mod.CUBIC_CAP.items())
    print(f"\nO(N^3) size caps: {caps}")
    return 0

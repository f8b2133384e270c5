"""One script for a GPU machine: CUDA tests, host-sync check of every method, the sweep.

Runs in one go, within ``--budget`` seconds, and writes as it goes into a new folder
``OUT/YYYYmmdd-HHMMSS/``: ``results.csv`` (the ``projunn-bench`` table,
``suite.output.COLUMNS``), ``machine.json``, ``tests.txt`` (pytest's output) and
``summary.md``; a short summary table is printed last. Parts:

* ``tests``   -- ``pytest -m cuda`` (the CUDA tests; all skip without CUDA);
* ``syncs``   -- every method's update and optimizer step under
  ``torch.cuda.set_sync_debug_mode("warn")``: host syncs per step and where they happen
  (``host_syncs_per_step``; the sync-free path must show 0);
* ``sweep``   -- the update workload at every N and k: eager projUNN-T (``check=False``),
  the sync-free graphed projUNN-T/-D, expm, Cayley and ``A.add_(G)``: wall time and CUDA
  event time (``time``, ``time_cuda_events``, medians) beside the byte floor
  ``6 N^2 4 / copy bandwidth`` (``byte_floor``, bandwidth measured first);
* ``profile`` -- kernels, device busy time and host syncs per step of eager vs graphed
  projUNN-T (``suite.profiling``).

Without CUDA the CPU-safe parts run on the CPU (graphed methods are skipped rows).
Every part and case is guarded: a failure is an "error" row, the run goes on; a watchdog
ends a hung process after the budget plus a grace period.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from suite import output  # noqa: E402
from suite.cases import Case, Settings  # noqa: E402
from suite.commands._args import output_dir, positive_float, positive_int  # noqa: E402
from suite.methods import METHODS  # noqa: E402
from suite.profiling import SYNC_NOTE, sync_sites  # noqa: E402
from suite.record import Recorder  # noqa: E402
from suite.runner import _release, rows_for  # noqa: E402
from suite.timing import measure, measure_events, synchronize  # noqa: E402
from suite.workloads import Measurement, prepare, train_state  # noqa: E402

PARTS = ("tests", "syncs", "sweep", "profile")
SIZES = (256, 1024, 8192, 128, 4096, 16384, 512, 2048)  # the targets first, should time run out
CPU_SIZES = (256, 1024, 128, 512)  # --device cpu without --sizes: what 2 cores do in minutes
RANKS = (1, 16)
SWEEP_METHODS = (
    "projunn_t_graphed",
    "projunn_t",
    "projunn_d_graphed",
    "unconstrained",
    "expm",
    "cayley",
)
PROFILE_SIZES = (1024, 8192)
BASES = ("cholesky", "householder")  # projunn_core.syncfree.BASIS values compared
SYNC_N, SYNC_K = 256, 4
SYNC_METRIC = "host_syncs_per_step"
NO_SYNCS = "host syncs are counted on CUDA only"
TIMING = Settings(warmup=2, min_time=0.05, max_time=0.3)
GRACE = 60.0  # seconds the watchdog waits beyond the budget before it ends the process

EPILOG = """\
examples:
  python scripts/gpu_check.py --out results/gpu                # everything, within --budget
  python scripts/gpu_check.py --out /tmp/g --parts syncs sweep --sizes 1024 8192 --ranks 1
  python scripts/gpu_check.py --out /tmp/g --device cpu      # the CPU-safe parts (~2 min)
  python scripts/gpu_check.py --out /tmp/g --budget 20 --sizes 64   # CPU smoke run

exit status: 0 every part ran and every test passed; 1 a part failed or a test failed;
2 bad usage; 130/143 interrupted/terminated (the rows so far are written)."""


class Budget:
    """Seconds left of the run's budget."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _row(workload, method, metric, value, unit, *, n, k=None, status="ok", reason=""):
    """A table row that belongs to no registry case (the byte floor)."""
    m = Measurement(metric, value, unit, status=status, reason=reason)
    return {
        **dict.fromkeys(output.COLUMNS),
        "workload": workload,
        "method": method,
        "n": n,
        "k": k,
        "dtype": "float32",
        "device": "",
        "options": "",
        **{f: getattr(m, f) for f in ("metric", "value", "unit", "status", "reason")},
    }


# -- tests ------------------------------------------------------------------------------


def part_tests(ctx) -> None:
    """``pytest -m cuda``; its output goes to tests.txt."""
    timeout = max(10.0, min(150.0, ctx.budget.left() - 60))
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "--benchmark-disable"]
    cmd += ["-p", "no:cacheprovider", str(ROOT / "tests")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        text, code = text + f"\n[gpu_check: pytest stopped after {timeout:.0f} s]\n", -1
    output.atomic_write_text(ctx.folder / "tests.txt", text)
    counts = {
        word: int(num) for num, word in re.findall(r"(\d+) (passed|failed|skipped|error)", text)
    }
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)))
    bad = code not in (0, 5) or counts.get("failed", 0) or counts.get("error", 0)
    ctx.failures += bool(bad)
    ctx.note("tests", {**counts, "exit_status": code, "failing": failed, "output": "tests.txt"})


# -- host syncs -------------------------------------------------------------------------


def _sync_sites(run) -> list[str]:
    """``file:line`` (relative to the checkout) of every host sync ``run()`` makes."""
    sites = []
    for filename, line in sync_sites(run):
        path = Path(filename)
        try:
            path = path.resolve().relative_to(ROOT)
        except ValueError:
            path = Path(*path.parts[-3:])
        sites.append(f"{path}:{line}")
    return sites


def _sync_row(case: Case, sites: list[str]) -> dict:
    counts = {s: sites.count(s) for s in dict.fromkeys(sites)}
    where = "; ".join(f"{s} (x{c})" if c > 1 else s for s, c in counts.items())
    m = Measurement(SYNC_METRIC, float(len(sites)), "1", reason=where or "sync-free")
    return rows_for(case, [m])[0]


def part_syncs(ctx) -> None:
    """Host syncs of every method's update and optimizer step (N=256, float32)."""
    for workload in ("update", "train_step"):
        for name, spec in METHODS.items():
            if workload not in spec.workloads:
                continue
            k = SYNC_K if spec.ranked else None
            case = Case(workload, name, SYNC_N, k, device=ctx.device)
            if ctx.device != "cuda":
                skip = Measurement(SYNC_METRIC, None, "1", status="skipped", reason=NO_SYNCS)
                ctx.add(rows_for(case, [skip]))
                continue
            ctx.add(_guarded(case, lambda c=case: [_sync_row(c, _syncs_of(c))], SYNC_METRIC))


def _syncs_of(case: Case) -> list[str]:
    if case.workload == "update":
        from suite.workloads import STEP_LR, make_gradient

        gen = torch.Generator(device="cuda").manual_seed(0)
        A = torch.linalg.qr(torch.randn(case.n, case.n, device="cuda", generator=gen))[0]
        G = make_gradient(case.n, torch.float32, "cuda", gen)
        update, opts = case.spec.update, case.method_options()
        update(A, G, STEP_LR, **opts)  # warm-up
        synchronize("cuda")
        return _sync_sites(lambda: update(A, G, STEP_LR, **opts))
    state = train_state(case)
    state["step"]()  # warm-up: optimizer state
    opt = state["optimizer"]
    opt.zero_grad(set_to_none=True)
    state["loss"]().backward()
    synchronize("cuda")
    return _sync_sites(opt.step)


def _guarded(case: Case, measure_case, metric: str = "") -> list[dict]:
    """``measure_case()`` (rows), or one skipped / error row of ``metric`` for ``case``;
    frees memory afterwards."""
    try:
        reason = case.skip_reason()
        if reason:
            return rows_for(case, [Measurement(metric, None, "", status="skipped", reason=reason)])
        return measure_case()
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"[:1000]
        return rows_for(case, [Measurement(metric, None, "", status="error", reason=msg)])
    finally:
        _release(case.device)


# -- sweep ------------------------------------------------------------------------------


def copy_bandwidth(device: str) -> float:
    """Bytes per second of a large device copy (read + write counted)."""
    n = (256 << 20) // 4  # 256 MiB: beyond any cache, so the bandwidth is memory's
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    if device == "cuda":
        t = measure_events(lambda: dst.copy_(src), device=device, blocks=5, block_time=0.05)
    else:
        t = measure(lambda: dst.copy_(src), min_time=0.2, max_time=0.5)
    return 2 * src.numel() * 4 / t.median


def _time_case(case: Case, timings: dict) -> list[Measurement]:
    """Wall time (and CUDA event time); the wall Timing is kept in ``timings[case]``."""
    work = prepare(case)
    try:
        wall = measure(
            work.step,
            min_time=TIMING.min_time,
            max_time=TIMING.max_time,
            warmup=TIMING.warmup,
            device=case.device,
        )
        timings[case] = wall  # the profile part reuses it
        out = [Measurement.timing("time", wall)]
        if case.device == "cuda":
            out.append(Measurement.timing("time_cuda_events", measure_events(work.step)))
        return out
    finally:
        del work


def _budget_spent() -> Measurement:
    return Measurement("", None, "", status="skipped", reason="gpu_check budget spent")


def part_sweep(ctx) -> None:
    """The update workload over N and k, with the byte floor."""
    bw = copy_bandwidth(ctx.device)
    note = f"6*N^2*4 bytes / copy bandwidth {bw / 1e9:.0f} GB/s ({ctx.device})"
    ctx.note("copy_bandwidth_bytes_per_s", bw)
    for n in ctx.sizes:
        ctx.add([_row("update", "byte_floor", "time", 6 * n * n * 4 / bw, "s", n=n, reason=note)])
        for name in SWEEP_METHODS:
            for k in ctx.ranks if METHODS[name].ranked else (None,):
                case = Case("update", name, n, k, device=ctx.device)
                if ctx.budget.left() < ctx.reserve:
                    ctx.add(rows_for(case, [_budget_spent()]))
                    continue
                ctx.add(_guarded(case, lambda c=case: rows_for(c, _time_case(c, ctx.timings))))


# -- profile ----------------------------------------------------------------------------


def part_profile(ctx) -> None:
    """Time, kernels and syncs per step: eager projUNN-T vs graphed projUNN-T with each
    basis of the sync-free path (rows of the second basis carry ``options`` basis=...)."""
    from projunn_core import syncfree
    from suite.profiling import profile_work

    sizes = [n for n in PROFILE_SIZES if n in ctx.sizes] or list(ctx.sizes[:1])
    runs = [("projunn_t", None)] + [("projunn_t_graphed", basis) for basis in BASES]
    default = syncfree.BASIS
    for n in sizes:
        for name, basis in runs:
            for k in ctx.ranks:
                case = Case("update", name, n, k, device=ctx.device)
                if ctx.budget.left() <= 0:
                    ctx.add(rows_for(case, [_budget_spent()]))
                    continue

                def run(c=case, basis=basis):
                    other = bool(basis) and basis != default  # the sweep timed the default
                    timed = None if other else ctx.timings.get(c)  # no second timing pass
                    syncfree.BASIS = basis or default
                    try:
                        p = profile_work(prepare(c), steps=10, settings=TIMING, timing=timed)
                    finally:
                        syncfree.BASIS = default
                    rows = rows_for(c, p.measurements(ops=False, timing=other))
                    if other:
                        for r in rows:
                            r["options"] = f"basis={basis}"
                    return rows

                ctx.add(_guarded(case, run))


# -- summary ----------------------------------------------------------------------------


def _value(rows, method, n, k=None, metric=("time_cuda_events", "time"), options=""):
    """The first ok value of ``method`` at (n, k) for the first metric found."""
    for m in metric:
        for r in rows:
            key = (r["method"], r["n"], r["k"], r["metric"], r["status"], r["options"] or "")
            if key == (method, n, k, m, "ok", options):
                return r["value"]
    return None


def summary(rows, device: str, ranks, notes=None) -> str:
    """Markdown: time per update by N (ms, CUDA events where measured) and the targets."""
    ms = lambda v: "–" if v is None else f"{v * 1e3:.3f}"  # noqa: E731
    timed = [r for r in rows if r["metric"] == "time" and r["status"] == "ok"]
    sizes = sorted({r["n"] for r in timed if r["workload"] == "update"})
    cols = [(f"graphed T k={k}", "projunn_t_graphed", k) for k in ranks]
    cols += [(f"eager T k={k}", "projunn_t", k) for k in ranks]
    cols += [(f"graphed D k={k}", "projunn_d_graphed", k) for k in ranks]
    cols += [("expm", "expm", None), ("Cayley", "cayley", None)]
    cols += [("A.add_(G)", "unconstrained", None), ("byte floor", "byte_floor", None)]
    lines = [
        f"# GPU check: one update, float32, ms per step ({device})",
        "",
        "| N | " + " | ".join(c[0] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for n in sizes:
        cells = [ms(_value(rows, method, n, k)) for _, method, k in cols]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    notes = notes or {}
    if "tests" in notes:
        t = notes["tests"]
        counts = ", ".join(f"{t.get(w, 0)} {w}" for w in ("passed", "failed", "skipped", "error"))
        failed = f" (failing: {', '.join(t['failing'])})" if t.get("failing") else ""
        lines += ["", f"pytest -m cuda: {counts}{failed}; output in tests.txt"]
    if "copy_bandwidth_bytes_per_s" in notes:
        bw = notes["copy_bandwidth_bytes_per_s"]
        lines += ["", f"copy bandwidth {bw / 1e9:.0f} GB/s (byte floor = 6 N^2 4 B / it)"]
    failures = [
        f"- part {k.removesuffix('_failed')} failed: {v}"
        for k, v in notes.items()
        if k.endswith("_failed")
    ]
    if failures:
        lines += ["", *failures]
    lines += ["", "## Targets (issue 11)", ""]
    small = [_value(rows, "projunn_t_graphed", n, k) for n in sizes if n <= 1024 for k in ranks]
    small = [v for v in small if v is not None]
    if small:
        verdict = "met" if max(small) < 1e-4 else "not met"
        lines.append(f"- N <= 1024, replayed step < 0.1 ms: {verdict} (max {ms(max(small))} ms)")
    step, floor = _value(rows, "projunn_t_graphed", 8192, 1), _value(rows, "byte_floor", 8192)
    if step and floor:
        lines.append(f"- N = 8192, k = 1 within 1.5x the byte floor: {step / floor:.2f}x")
    losses = []
    for n in (n for n in sizes if n >= 128):
        best = [v for k in ranks if (v := _value(rows, "projunn_t_graphed", n, k)) is not None]
        for other in ("expm", "cayley"):
            v = _value(rows, other, n)
            if best and v is not None and max(best) >= v:
                losses.append(f"{other} at N={n}")
    if any(_value(rows, "projunn_t_graphed", n, k) for n in sizes for k in ranks):
        verdict = "met" if not losses else "not met: " + ", ".join(losses)
        lines.append(
            f"- graphed projUNN-T faster than expm and Cayley at every N >= 128: {verdict}"
        )
    else:
        lines.append("- not measured: no graphed projUNN-T times (they need CUDA)")
    syncs = [r for r in rows if r["metric"] == SYNC_METRIC and r["status"] == "ok"]
    syncs = [r for r in syncs if r["n"] == SYNC_N and r["reason"] != SYNC_NOTE]
    if syncs:
        lines += ["", f"## Host syncs per step (N = {SYNC_N}, sync debug mode)", ""]
        lines += [
            f"- {r['workload']} {r['method']}: {r['value']:.0f} ({r['reason']})" for r in syncs
        ]
    kernels = [r for r in rows if r["metric"] == "kernels_per_step" and r["status"] == "ok"]
    if kernels:
        lines += ["", "## Kernels per step (update; time: wall ms)", ""]
        for r in kernels:
            opts = r["options"] or ""
            t = _value(rows, r["method"], r["n"], r["k"], ("time",), opts)
            extra = f" ({opts})" if opts else ""
            lines.append(
                f"- {r['method']}{extra} N={r['n']} k={r['k']}: {r['value']:.0f} kernels, "
                f"{ms(t)} ms"
            )
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------


class Context:
    def __init__(self, rec, args):
        self.rec, self.folder = rec, rec.folder
        self.device = args.device
        self.sizes, self.ranks = tuple(args.sizes), tuple(args.ranks)
        self.budget = Budget(args.budget)
        self.reserve = min(40.0, 0.15 * args.budget)  # kept for the profile part
        self.failures = 0
        self.timings = {}  # Case -> the sweep's wall Timing
        self.notes = rec.info.setdefault("gpu_check", {})  # written into machine.json

    def note(self, key: str, value) -> None:
        """A result that is not a case row (tests, bandwidth, a part's failure)."""
        self.notes[key] = value

    def add(self, rows) -> None:
        for r in rows:
            r.setdefault("device", self.device)
            r["device"] = r["device"] or self.device
        self.rec.add(rows)  # the Recorder flushes at every add (flush_every=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, type=output_dir, metavar="DIR", help="parent folder of the run"
    )
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)"
    )
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=270.0,
        metavar="S",
        help="seconds for the whole run (default 270); the sweep stops early to keep it",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        metavar="N",
        help=f"matrix sizes (default: {' '.join(map(str, SIZES))} on cuda, "
        f"{' '.join(map(str, CPU_SIZES))} on cpu)",
    )
    parser.add_argument("--ranks", nargs="+", type=positive_int, default=list(RANKS), metavar="K")
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="default: cuda when available",
    )
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.sizes = args.sizes or list(SIZES if args.device == "cuda" else CPU_SIZES)
    if min(args.sizes) < 2:
        parser.error("--sizes must be >= 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    faulthandler.dump_traceback_later(args.budget + GRACE, exit=True, file=sys.__stderr__)
    info = {"command": "scripts/gpu_check.py", "argv": sys.argv[1:] if argv is None else argv}
    started = time.monotonic()
    text = None  # stays None when Ctrl-C / SIGTERM ends the run before the summary
    try:
        with Recorder(args.out, info=info, flush_every=0) as rec:
            ctx = Context(rec, args)
            for part in args.parts:
                if ctx.budget.left() <= 0 and part != "tests":
                    print(f"gpu_check: {part} skipped, the budget is spent", file=sys.stderr)
                    ctx.note(f"{part}_skipped", "gpu_check budget spent")
                    continue
                print(f"gpu_check: {part} ({ctx.budget.left():.0f} s left)", file=sys.stderr)
                try:
                    PART_FUNCS[part](ctx)
                except Exception as e:
                    ctx.failures += 1
                    ctx.note(f"{part}_failed", f"{type(e).__name__}: {e}"[:1000])
            name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
            text = summary(rec.rows, name, ctx.ranks, ctx.notes)
            output.atomic_write_text(rec.folder / "summary.md", text)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if text is not None:
        print(text)
    print(f"results: {rec.folder} ({time.monotonic() - started:.0f} s)")
    if rec.exit_code:
        return rec.exit_code
    errors = sum(r["status"] == "error" for r in rec.rows)
    return 1 if ctx.failures or errors else 0


PART_FUNCS = {
    "tests": part_tests,
    "syncs": part_syncs,
    "sweep": part_sweep,
    "profile": part_profile,
}

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

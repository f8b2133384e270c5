"""Read benchmark results into one tidy pandas frame, as data only (JSON, CSV, Parquet).

Sources, in any mix (a folder is searched for them, one level of run folders deep):

* a ``projunn-bench run`` folder: ``results.csv`` or ``results.parquet`` + ``machine.json``;
* a results table ``X.csv`` / ``X.parquet`` with its ``X.machine.json`` beside it (the
  layout of ``results/data/``);
* asv results: the results folder (``.asv/results``), one machine's folder in it, or one
  result file ``<commit>-<env>.json`` (asv 0.6 format, ``"version": 2``);
* pytest-benchmark JSON (``--benchmark-json``).

Every row has the columns of :data:`suite.measure.rows.COLUMNS` plus :data:`EXTRA_COLUMNS`:
``run`` (a label of its source), ``platform`` (``"CPU: <model>, <cores> cores"`` or
``"GPU: <name>"``), ``commit``, ``date``, ``source`` (the file read) and, for asv
timings, ``ci_low``/``ci_high`` (asv's 99 % confidence interval of the median).

>>> platform_label("cuda:0", {"gpu_name": "NVIDIA H100 80GB HBM3"})
'GPU: NVIDIA H100 80GB HBM3'
>>> platform_label("cpu", {"cpu_model": "AMD EPYC", "cpu_logical_cores": 2})
'CPU: AMD EPYC, 2 cores'
"""

from __future__ import annotations

import ast
import datetime as _dt
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure.rows import COLUMNS

__all__ = [
    "EXTRA_COLUMNS",
    "FRAME_COLUMNS",
    "InputError",
    "Loaded",
    "SkippedInput",
    "Source",
    "discover",
    "load",
    "load_one",
    "platform_label",
]

EXTRA_COLUMNS = ("run", "platform", "commit", "date", "source", "ci_low", "ci_high")
FRAME_COLUMNS = COLUMNS + EXTRA_COLUMNS
STATUSES = ("ok", "skipped", "error")
_INT_COLUMNS = ("n", "k", "repeat", "step")
_FLOAT_COLUMNS = ("value", "iqr", "cpu_share")
_BOOL_COLUMNS = ("contended",)
_OPTIONAL_COLUMNS = ("step", "samples", "cpu_share", "contended")  # older tables lack them
TABLE_SUFFIXES = (".csv", ".parquet")
RUN_TABLES = ("results.csv", "results.parquet")


class InputError(ValueError):
    """An input that cannot be used; the message starts with the file it is about."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class SkippedInput(InputError):
    """An input deliberately left out (a run still marked "running")."""


@dataclass
class Source:
    """One source of rows: ``kind`` is "run", "table", "asv" or "pytest-benchmark";
    ``machine`` its machine description as stored; ``status`` the run's final status
    ("complete", "interrupted", "terminated", ... or "" when the source does not say)."""

    path: Path
    kind: str
    label: str
    machine: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    commit: str = ""
    date: str = ""
    rows: int = 0


@dataclass
class Loaded:
    """Everything :func:`load` read: the tidy ``frame``, its ``sources`` and the
    ``warnings`` about inputs it could not use (each naming the file)."""

    frame: Any
    sources: list[Source]
    warnings: list[str]


def platform_label(device: str, machine: dict[str, Any]) -> str:
    """The hardware a row ran on, as a short label (panels of the report)."""
    if str(device).startswith("cuda"):
        name = machine.get("gpu_name") or "CUDA device"
        return f"GPU: {name}"
    cpu = machine.get("cpu_model") or "unknown"
    cores = machine.get("cpu_logical_cores")
    return f"CPU: {cpu}, {cores} cores" if cores else f"CPU: {cpu}"


# --------------------------------------------------------------------------- discovery


JsonCache = dict[Path, Any]
"""Parsed JSON by path, kept for one :func:`load` / :func:`load_one` call, so that a file
read to classify it (or shared by several result files) is parsed once."""


def _read_json(path: Path, cache: JsonCache | None = None) -> Any:
    if cache is not None and path in cache:
        return cache[path]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InputError(path, "is not UTF-8 text (corrupt?)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problem = f"is not valid JSON ({e.msg}, line {e.lineno}): corrupt or partial?"
        raise InputError(path, problem) from None
    if cache is not None:
        cache[path] = data
    return data


def _json_kind(data: Any) -> str | None:
    """ "asv", "pytest-benchmark", "machine" (a description, not results) or ``None``."""
    if not isinstance(data, dict):
        return None
    if "result_columns" in data and "commit_hash" in data:
        return "asv"
    if isinstance(data.get("benchmarks"), list) and "machine_info" in data:
        return "pytest-benchmark"
    if "cpu_model" in data or "run" in data or ("machine" in data and "arch" in data):
        return "machine"
    if data.get("version") == 2 and all(isinstance(v, dict) for v in data.values() if v != 2):
        return "machine"  # asv's benchmarks.json: benchmark metadata, no results
    return None


def _is_asv_dir(path: Path, cache: JsonCache | None = None) -> bool:
    if (path / "benchmarks.json").is_file():
        return True
    m = path / "machine.json"
    if not m.is_file():
        return False
    try:
        data = _read_json(m, cache)
    except InputError:
        return False
    return isinstance(data, dict) and "machine" in data and "arch" in data


def discover(
    path: str | Path, depth: int = 2, *, cache: JsonCache | None = None
) -> list[tuple[str, Path]]:
    """The loadable units under ``path`` as ``(kind, path)`` pairs, kind one of "run",
    "table", "asv" (one result file) and "pytest-benchmark".

    Plain folders are searched ``depth`` levels deep (``results/`` finds
    ``results/data/*.csv`` and ``results/runs/*/``); folders holding a ``report.md``
    (reports, which carry a copy of their data) are not. Raises :class:`InputError` for
    a missing path or one holding no results. ``cache`` keeps the JSON parsed here for
    the reading that follows.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file():
        if path.name in RUN_TABLES and (path.parent / "machine.json").is_file():
            return [("run", path.parent)]
        if path.suffix in TABLE_SUFFIXES:
            return [("table", path)]
        if path.suffix == ".json":
            kind = _json_kind(_read_json(path, cache))
            if kind in ("asv", "pytest-benchmark"):
                return [(kind, path)]
            if kind == "machine":
                raise InputError(path, "is a machine description, not results: pass its folder")
            raise InputError(path, "is JSON but neither asv results nor pytest-benchmark output")
        raise InputError(path, "unknown file type (expected .csv, .parquet or .json)")
    if any((path / t).is_file() for t in RUN_TABLES):
        return [("run", path)]
    if _is_asv_dir(path, cache):
        skip = ("machine.json", "benchmarks.json")
        found = [("asv", p) for p in sorted(path.rglob("*.json")) if p.name not in skip]
        if not found:
            raise InputError(path, "asv results folder without result files")
        return found
    found: list[tuple[str, Path]] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if (child / "report.md").exists() or depth < 1:
                continue
            try:
                found += discover(child, depth - 1, cache=cache)
            except InputError:
                continue  # a folder without results among others
        elif child.suffix in TABLE_SUFFIXES:
            found.append(("table", child))
        elif child.suffix == ".json":
            try:
                kind = _json_kind(_read_json(child, cache))
            except InputError:
                found.append(("json", child))  # reported as unreadable when loaded
                continue
            if kind in ("asv", "pytest-benchmark"):
                found.append((kind, child))
    if not found:
        raise InputError(
            path, "holds no results (run folders, results tables, asv or pytest-benchmark files)"
        )
    return found


# --------------------------------------------------------------------------- tidy rows


def _line_error(path: Path, index: int, problem: str) -> InputError:
    return InputError(path, f"row {index + 2}: {problem} (a partial or corrupt file?)")


def _coerce(df, path: Path):
    """Check the table columns and convert them to their types (errors name the row)."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in df.columns and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise InputError(path, f"is not a projunn-bench results table: missing columns {missing}")
    df = df.copy()
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    df = df[list(COLUMNS)].astype(object)
    df = df.where(df.notna(), "")
    text = df.map(lambda v: v if isinstance(v, str) else ("" if v is None else str(v)))
    out = pd.DataFrame(index=df.index)
    for c in COLUMNS:
        col = text[c].str.strip()
        if c in _INT_COLUMNS or c in _FLOAT_COLUMNS:
            num = pd.to_numeric(col.replace("", None), errors="coerce")
            bad = num.isna() & col.ne("") & ~col.str.lower().isin(["nan", "none"])
            if c in _INT_COLUMNS:
                bad |= num.notna() & (num.round() != num)
            if bad.any():
                i = int(bad.to_numpy().nonzero()[0][0])
                raise _line_error(path, i, f"{c}={col.iloc[i]!r} is not a number")
            out[c] = num.astype("Int64") if c in _INT_COLUMNS else num.astype(float)
        elif c in _BOOL_COLUMNS:  # "True" / "False"; empty where not measured
            low = col.str.lower()
            bad = ~low.isin(["true", "false", ""])
            if bad.any():
                i = int(bad.to_numpy().nonzero()[0][0])
                raise _line_error(path, i, f"{c}={col.iloc[i]!r} is not True or False")
            out[c] = low.eq("true")
        else:
            out[c] = col.astype(object)
    bad_status = ~out["status"].isin(STATUSES)
    if bad_status.any():
        i = int(bad_status.to_numpy().nonzero()[0][0])
        raise _line_error(path, i, f"status {out['status'].iloc[i]!r} is not one of {STATUSES}")
    no_n = out["n"].isna() | out["workload"].eq("") | out["method"].eq("")
    if no_n.any():
        i = int(no_n.to_numpy().nonzero()[0][0])
        raise _line_error(path, i, "workload, method or n is empty")
    no_value = out["status"].eq("ok") & (out["metric"].eq("") | out["value"].isna())
    if no_value.any():
        i = int(no_value.to_numpy().nonzero()[0][0])
        raise _line_error(path, i, "an 'ok' row without metric or value")
    return out.reset_index(drop=True)


def _records_frame(records: Iterable[dict[str, Any]], path: Path):
    """Rows built from dicts (asv, pytest-benchmark), with the asv interval if given."""
    import pandas as pd

    records = list(records)
    df = _coerce(pd.DataFrame(records, columns=list(COLUMNS)), path)
    for c in ("ci_low", "ci_high"):
        df[c] = [float(r.get(c, math.nan)) for r in records]
    return df


def _check_complete(path: Path) -> None:
    """A CSV table ends with a newline (every row does); one that does not was cut off."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return
        f.seek(-1, 2)
        if f.read(1) != b"\n":
            raise InputError(path, "ends in the middle of a row: a partial file")


def _read_table(path: Path):
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            from ..measure.output import have_parquet

            if not have_parquet():
                raise InputError(path, "reading Parquet needs pyarrow (pip install pyarrow)")
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
            _check_complete(path)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "does not exist") from None
    except pd.errors.EmptyDataError:
        raise InputError(path, "is empty") from None
    except UnicodeDecodeError:
        raise InputError(path, "is not UTF-8 text (corrupt?)") from None
    except Exception as e:  # pandas / pyarrow parser errors
        raise InputError(path, f"cannot be parsed ({type(e).__name__}: {e})") from None
    return _coerce(df, path)


def _short_commit(commit: str) -> str:
    commit = str(commit or "")
    base, plus, rest = commit.partition("+")
    return base[:8] + plus + rest


def _machine_status(machine: dict[str, Any]) -> str:
    run = machine.get("run")
    return str(run.get("status", "")) if isinstance(run, dict) else ""


def _check_not_running(path: Path, machine: dict[str, Any]) -> None:
    if _machine_status(machine) == "running":
        raise SkippedInput(
            path,
            'machine.json says "running": the run never finished (killed, or still going); skipped',
        )


def _ours(
    path: Path, kind: str, table: Path, machine_path: Path, cache: JsonCache
) -> tuple[Source, Any]:
    machine: dict[str, Any] = {}
    if machine_path.is_file():
        data = _read_json(machine_path, cache)
        if not isinstance(data, dict):
            raise InputError(machine_path, "is not a machine description (a JSON object)")
        machine = data
    elif kind == "run":
        raise InputError(machine_path, "is missing (every run folder has one)")
    _check_not_running(machine_path, machine)
    df = _read_table(table)
    run = machine.get("run") if isinstance(machine.get("run"), dict) else {}
    label = path.name if kind == "run" else path.stem
    source = Source(
        path=path,
        kind=kind,
        label=label,
        machine=machine,
        status=_machine_status(machine),
        commit=_short_commit(machine.get("git_commit", "")),
        date=str(run.get("started") or machine.get("timestamp") or ""),
    )
    df["platform"] = [platform_label(d, machine) for d in df["device"]]
    return source, df


# --------------------------------------------------------------------------- asv


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _asv_metric(bench: str, kind: str) -> tuple[str, str, str]:
    """``(workload, metric, unit)`` of an asv benchmark name like
    ``benchmarks.Update.time_update`` or ``benchmarks.UpdateCudaMemory.track_cuda_peak_memory``."""
    from ..measure.workloads import WORKLOADS

    parts = bench.split(".")
    func = parts[-1]
    cls = _snake(parts[-2]) if len(parts) > 1 else ""
    prefix, _, rest = func.partition("_")
    if prefix == "time" or kind == "time":
        metric, unit, workload = "time", "s", rest
    elif prefix == "peakmem" or kind == "peakmemory":
        metric, unit, workload = "host_peak_rss", "bytes", rest
    else:
        metric = rest if prefix == "track" else func
        unit = "bytes" if "memory" in metric else "1"
        workload = cls
    if workload not in WORKLOADS:
        by_class = [w for w in WORKLOADS if cls.startswith(w)]
        if by_class:
            workload = by_class[0]
        elif metric.startswith(("unitarity", "dist_to_exact")):
            workload = "accuracy"
    return workload, metric, unit


def _literal(text: Any) -> Any:
    try:
        return ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError):
        return text


_ASV_PARAMS = {
    4: ["method", "n", "dtype", "device"],
    5: ["method", "channels", "spatial", "dtype", "device"],
}
"""The parameters of the suite's asv benchmarks by count, for result files read without
their ``benchmarks.json`` (``suite/benchmarks.py``: dense and convolution classes)."""


def _asv_rows(path: Path, data: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    from ..measure.cases import parse_method_label

    columns = data.get("result_columns")
    results = data.get("results")
    if not isinstance(columns, list) or not isinstance(results, dict):
        raise InputError(path, "asv result file without result_columns / results")
    rows = []
    for bench, values in results.items():
        if not isinstance(values, list):
            raise InputError(path, f"benchmark {bench!r}: malformed entry")
        entry = dict(zip(columns, values, strict=False))  # trailing Nones are dropped
        info = meta.get(bench, {}) if isinstance(meta.get(bench), dict) else {}
        workload, metric, unit = _asv_metric(bench, info.get("type", ""))
        params = entry.get("params") or []
        names = info.get("param_names") or _ASV_PARAMS.get(len(params), ["method"])
        combos = list(itertools.product(*params)) if params else [()]
        result = entry.get("result")
        if not isinstance(result, list) or len(result) != len(combos):
            problem = f"benchmark {bench!r}: results do not match its {len(combos)} parameter sets"
            raise InputError(path, problem)

        def stat(key, j, entry=entry):
            v = entry.get(key)
            return v[j] if isinstance(v, list) and j < len(v) else None

        for j, combo in enumerate(combos):
            p = {name: _literal(v) for name, v in zip(names, combo, strict=True)}
            method, k = parse_method_label(str(p.pop("method", bench)))
            if "channels" in p:  # a convolution: n is C, the grid leads the options
                p["n"] = p.pop("channels")
                side = p.pop("spatial", None)
                grid = {"height": side, "width": side} if side is not None else {}
                p = {**grid, **p}
            try:
                n = int(p.pop("n", 0))
            except (TypeError, ValueError):
                problem = f"benchmark {bench!r}: n in {combo!r} is not an integer"
                raise InputError(path, problem) from None
            row: dict[str, Any] = {
                "workload": workload,
                "method": method,
                "n": n,
                "k": k,
                "dtype": str(p.pop("dtype", "")),
                "device": str(p.pop("device", "cpu")),
                "options": ";".join(f"{a}={b}" for a, b in p.items()),
                "metric": metric,
                "unit": unit,
                "status": "ok",
            }
            value = result[j]
            if value is None:
                row.update(status="error", reason="asv: the benchmark failed", metric="")
            elif isinstance(value, float) and math.isnan(value):
                row.update(status="skipped", reason="asv: skipped (NotImplementedError)", metric="")
            else:
                row["value"] = float(value)
                q25, q75 = stat("stats_q_25", j), stat("stats_q_75", j)
                if q25 is not None and q75 is not None:
                    row["iqr"] = float(q75) - float(q25)
                row["repeat"] = stat("stats_repeat", j)
                samples = stat("samples", j)
                if samples:
                    row["samples"] = ";".join(repr(float(s)) for s in samples)
                lo, hi = stat("stats_ci_99_a", j), stat("stats_ci_99_b", j)
                if lo is not None and hi is not None:
                    row["ci_low"], row["ci_high"] = float(lo), float(hi)
            rows.append(row)
    return rows


def _asv(path: Path, cache: JsonCache) -> tuple[Source, Any]:
    data = _read_json(path, cache)
    if _json_kind(data) != "asv":
        raise InputError(path, "is not an asv result file")
    machine: dict[str, Any] = {}
    mpath = path.parent / "machine.json"
    if mpath.is_file():
        m = _read_json(mpath, cache)
        machine = m if isinstance(m, dict) else {}
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    machine = {**params, **machine}
    meta: dict[str, Any] = {}
    bpath = path.parent.parent / "benchmarks.json"
    if bpath.is_file():
        b = _read_json(bpath, cache)
        meta = b if isinstance(b, dict) else {}
    ours = {
        "hostname": machine.get("machine", ""),
        "cpu_model": machine.get("cpu", ""),
        "cpu_logical_cores": machine.get("num_cpu", ""),
        "gpu_name": "",
    }
    df = _records_frame(_asv_rows(path, data, meta), path)
    date = data.get("date")
    when = (
        _dt.datetime.fromtimestamp(date / 1000, _dt.timezone.utc).isoformat(timespec="seconds")
        if isinstance(date, (int, float))
        else ""
    )
    commit = str(data.get("commit_hash", ""))
    source = Source(
        path=path,
        kind="asv",
        label=f"asv {machine.get('machine', '?')} {commit[:8]}",
        machine={"asv_machine": machine, **ours},
        commit=commit[:8],
        date=when,
    )
    name = machine.get("machine", "?")
    df["platform"] = [
        f"GPU on asv machine {name}" if d.startswith("cuda") else platform_label(d, ours)
        for d in df["device"]
    ]
    return source, df


# --------------------------------------------------------------------------- pytest-benchmark


def _pytest_benchmark(path: Path, cache: JsonCache) -> tuple[Source, Any]:
    data = _read_json(path, cache)
    if _json_kind(data) != "pytest-benchmark":
        raise InputError(path, "is not pytest-benchmark JSON")
    info = data.get("machine_info") or {}
    cpu = info.get("cpu") or {}
    machine = {
        "hostname": info.get("node", ""),
        "cpu_model": cpu.get("brand_raw") or info.get("processor", ""),
        "cpu_logical_cores": cpu.get("count", ""),
        "python": info.get("python_version", ""),
        "pytest_benchmark_machine_info": info,
    }
    rows, gpu = [], {}
    for b in data["benchmarks"]:
        extra = b.get("extra_info") or {}
        if not {"workload", "method", "n"} <= set(extra):
            continue  # not one of the suite's benchmarks
        base = {c: extra.get(c) for c in ("workload", "method", "n", "k", "dtype", "device")}
        base["options"] = extra.get("options") or ""
        gpu[str(base["device"])] = extra.get("gpu_name", "")
        stats = b.get("stats") or {}
        if base["workload"] == "accuracy":
            for key, value in extra.items():
                if key.startswith(("unitarity", "dist_to_exact")) and value is not None:
                    row = {**base, "metric": key, "value": value, "unit": "1", "status": "ok"}
                    rows.append(row)
            continue
        if stats.get("median") is None:
            continue
        samples = stats.get("data")
        rows.append(
            {
                **base,
                "metric": "time",
                "value": stats["median"],
                "unit": "s",
                "iqr": stats.get("iqr"),
                "repeat": stats.get("rounds"),
                "status": "ok",
                "samples": ";".join(repr(float(s)) for s in samples) if samples else "",
            }
        )
    if not rows:
        raise InputError(path, "pytest-benchmark JSON without projunn-bench cases (extra_info)")
    df = _records_frame(rows, path)
    commit_info = data.get("commit_info") or {}
    commit = str(commit_info.get("id", ""))[:8] + ("+dirty" if commit_info.get("dirty") else "")
    source = Source(
        path=path,
        kind="pytest-benchmark",
        label=path.stem,
        machine=machine,
        commit=commit,
        date=str(data.get("datetime", "")),
    )
    df["platform"] = [
        platform_label(d, {**machine, "gpu_name": gpu.get(d, "")}) for d in df["device"]
    ]
    return source, df


# --------------------------------------------------------------------------- entry points


def _read_unit(kind: str, path: Path, cache: JsonCache) -> tuple[Source, Any]:
    if kind == "run":
        table = next(path / t for t in RUN_TABLES if (path / t).is_file())
        return _ours(path, "run", table, path / "machine.json", cache)
    if kind == "table":
        return _ours(path, "table", path, path.with_suffix(".machine.json"), cache)
    if kind == "asv":
        return _asv(path, cache)
    if kind == "pytest-benchmark":
        return _pytest_benchmark(path, cache)
    _read_json(path)  # unreadable JSON found in a folder scan: raises, saying why
    raise InputError(path, "is not a results file")


def _finish(source: Source, df):
    for c in ("ci_low", "ci_high"):
        if c not in df.columns:
            df[c] = math.nan
    df["run"] = source.label
    df["commit"] = source.commit
    df["date"] = source.date
    df["source"] = str(source.path)
    source.rows = len(df)
    return df


def load_one(path: str | Path) -> tuple[Source, Any]:
    """One source (a run folder, table, asv result file or pytest-benchmark JSON) and its
    rows; raises :class:`InputError` (or :class:`SkippedInput`) naming the file."""
    cache: JsonCache = {}
    units = discover(path, cache=cache)
    if len(units) != 1:
        raise InputError(path, f"holds {len(units)} result sources; name one of them")
    source, df = _read_unit(*units[0], cache)
    return source, _finish(source, df)


def load(paths: Sequence[str | Path]) -> Loaded:
    """Read every source under ``paths`` into one frame (:data:`FRAME_COLUMNS`).

    An input that cannot be used becomes a warning naming it, and the others are still
    read; runs whose ``machine.json`` still says "running" are skipped with a warning.
    Run labels are made unique (``label#2``).
    """
    import pandas as pd

    frames, sources, warnings = [], [], []
    seen: dict[str, int] = {}
    cache: JsonCache = {}
    for path in paths:
        try:
            units = discover(path, cache=cache)
        except InputError as e:
            warnings.append(str(e))
            continue
        for kind, unit in units:
            try:
                source, df = _read_unit(kind, unit, cache)
            except InputError as e:
                warnings.append(str(e))
                continue
            count = seen.get(source.label, 0) + 1
            seen[source.label] = count
            if count > 1:
                source.label = f"{source.label}#{count}"
            sources.append(source)
            frames.append(_finish(source, df))
    if frames:
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in FRAME_COLUMNS})
    return Loaded(frame[list(FRAME_COLUMNS)], sources, warnings)

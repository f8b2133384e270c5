"""The process :func:`suite.measure.callgrind.count_cases` runs under callgrind.

``python -m suite.measure._callgrind_child SPEC.json``: counts the cases of the spec (see
:mod:`suite.measure.callgrind` for how) and appends one JSON line per case to the spec's
status file (after a first line with the import time and where ``projunn_core`` came
from), with the compute operators of one more, uncollected step
(:func:`suite.measure.opcount.count_ops`). Outside valgrind it runs the same steps
uncounted (a dry run of the cases).
"""

from __future__ import annotations

import gc
import json
import sys
import time


def _line(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def main(spec_path: str) -> int:
    start = time.monotonic()
    import torch

    import projunn_core

    from .callgrind import controller
    from .cases import Case, Skip
    from .opcount import count_ops
    from .settings import Settings
    from .workloads import prepare

    with open(spec_path) as f:
        spec = json.load(f)
    torch.set_num_threads(1)
    settings = Settings(**spec["settings"])
    steps, status = int(spec["steps"]), spec["status"]
    ctl = controller(spec.get("shim"))
    modules = {"projunn_core": projunn_core.__file__, "torch": torch.__version__}
    code = spec.get("code")
    if code and not projunn_core.__file__.startswith(code):
        print(f"projunn_core comes from {projunn_core.__file__}, not {code}", file=sys.stderr)
        return 3
    _line(status, {"import_s": time.monotonic() - start, "modules": modules, "mode": ctl.mode})

    def seeded(step):
        torch.manual_seed(settings.seed)  # the sketch draws the same vectors every step
        return step()

    # light_n: cases up to this N (convolutions: all) are set up with instrumentation left
    # on (switching it on again retranslates every function the step runs: seconds a
    # case); larger ones are set up with it off (a Haar QR instrumented costs a minute).
    light_n = spec.get("light_n")
    instrumented = False
    for record in spec["cases"]:
        record = {**record, "options": tuple(tuple(o) for o in record["options"])}
        case = Case(**record)
        out = {"case": case.id, "status": "ok", "dumped": False}
        light = light_n is not None and (case.spatial is not None or case.n <= light_n)
        t0 = time.monotonic()
        try:
            if instrumented and not light:
                ctl.stop()
                instrumented = False
            work = prepare(case, settings)
            for _ in range(settings.warmup):
                seeded(work.step)
            ops = count_ops(seeded, work.step)  # uncollected: a Python dispatch mode
            out.update(operations=ops.total, ops=dict(sorted(ops.ops.items())))
            out["setup_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            # The cyclic collector runs when allocations since its last pass reach a
            # threshold, a point set by everything the process did before (imports,
            # setup): left on, a change anywhere in the code moves a pass into or out of
            # the counted steps. timeit turns it off for the same reason.
            gc.collect()
            gc.disable()
            if instrumented:
                ctl.zero()
            else:
                ctl.start()
                instrumented = True
            seeded(work.step)  # warms the simulated caches; not collected
            for _ in range(steps):
                torch.manual_seed(settings.seed)
                ctl.toggle()
                work.step()
                ctl.toggle()
            ctl.dump(case.id)
            out["dumped"] = True
            out["measured_s"] = time.monotonic() - t1
        except Skip as e:
            out.update(status="skipped", reason=str(e))
        except Exception as e:  # one failing case does not stop the others
            out.update(status="error", reason=f"{type(e).__name__}: {e}"[:1000])
        finally:
            gc.enable()
            if instrumented and (light_n is None or not out["dumped"]):
                ctl.stop()  # one case at a time (or after a failure: a clean start)
                instrumented = False
        _line(status, out)
        work = None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

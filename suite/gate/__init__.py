"""The pull-request gate: does a change make a benchmarked step slower?

* :mod:`~suite.gate.asv` — what the gate times: the ``gate`` grid's asv benchmarks, one
  thread, CPU time, and the ``asv continuous`` command line;
* :mod:`~suite.gate.run` — ``projunn-bench gate BASE [HEAD]``: runs it, writes
  ``gate.log`` and ``compare.md`` (the pull-request comment), exit 1 on a slowdown;
* :mod:`~suite.gate.noise` — ``projunn-bench gate-noise``: the gate's false alarms in
  A/A runs and the slowdowns it catches, measured in a throwaway clone;
* :mod:`~suite.gate.counts` — the instruction counts the gate judges first: each
  commit's cases in one callgrind process, the verdict, where the instructions went;
* :mod:`~suite.gate.plants` — ``projunn-bench gate-noise --counts``: the counts' A/A
  spread, the threshold it supports and the reference plants.
"""

"""Reports and comparisons of benchmark results (``projunn-bench report`` and ``compare``).

One job per module, in the order the data flows:

* :mod:`~suite.report.load`: read run folders, result tables, asv results and
  pytest-benchmark JSON into one tidy pandas frame (data formats only, never pickle);
* :mod:`~suite.report.analysis`: the numbers (times, scaling exponents, speed-ups and
  crossovers, memory, accuracy, learning curves);
* :mod:`~suite.report.figures`: the seaborn figures (PNG);
* :mod:`~suite.report.render`: report blocks as markdown and as one self-contained HTML page;
* :mod:`~suite.report.build`: the whole report, written atomically into a folder;
* :mod:`~suite.report.compare`: noise-aware comparison of two runs;
* :mod:`~suite.report.summary`: the end-of-run summary of ``projunn-bench run`` (plain
  Python, no pandas needed).

pandas, matplotlib, seaborn and scipy.stats are imported inside the functions that use
them: asv imports every module under ``suite/`` when it looks for benchmarks, so importing
these modules stays cheap, and ``projunn-bench run`` works without the ``report`` extra.
"""

INSTALL_HINT = 'pip install -e ".[report]"  (pandas, matplotlib, seaborn)'
"""How to install what reports need; printed where they are missing."""


def missing_report_packages() -> list[str]:
    """Names of the packages a report needs that cannot be imported here.

    >>> isinstance(missing_report_packages(), list)
    True
    """
    import importlib.util

    return [m for m in ("pandas", "matplotlib", "seaborn") if importlib.util.find_spec(m) is None]

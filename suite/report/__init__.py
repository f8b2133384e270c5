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

REPORT_PACKAGES = ("pandas", "matplotlib", "seaborn")


def missing_report_packages(needed: tuple[str, ...] | None = None) -> str | None:
    """``None`` when the ``needed`` packages (default :data:`REPORT_PACKAGES`) can be
    imported here, else a message naming the missing ones and how to install them.

    >>> missing_report_packages(("json",)) is None
    True
    >>> missing_report_packages(("no_such_package_xyz",))
    'no_such_package_xyz missing: pip install -e ".[report]"'
    """
    import importlib.util

    missing = [m for m in needed or REPORT_PACKAGES if importlib.util.find_spec(m) is None]
    return f'{", ".join(missing)} missing: pip install -e ".[report]"' if missing else None

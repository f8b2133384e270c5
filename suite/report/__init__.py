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


def series_label(method: str, k=None, options: str = "") -> str:
    """The label of a method at rank ``k`` (missing: none) with its options.

    >>> series_label("projunn_t", 4), series_label("svd", float("nan"), "")
    ('projunn_t-k4', 'svd')
    >>> series_label("eunn", "", "capacity=8")
    'eunn [capacity=8]'
    """
    from ..measure.cases import method_label

    try:
        rank = int(k)
    except (TypeError, ValueError):  # None, "", NaN, pandas NA
        rank = None
    text = method_label(method, rank)
    return f"{text} [{options}]" if options else text


def parse_series_label(label: str) -> tuple[str, int | None, str]:
    """Inverse of :func:`series_label`: ``(method, k, options)``.

    >>> parse_series_label("projunn_t-k4"), parse_series_label("eunn [capacity=8]")
    (('projunn_t', 4, ''), ('eunn', None, 'capacity=8'))
    """
    from ..measure.cases import parse_method_label

    text, _, options = label.partition(" [")
    method, k = parse_method_label(text)
    return method, k, options.removesuffix("]")


def label_order(label: str) -> tuple[int, int, str]:
    """Sort key of a :func:`series_label`: registry position, rank, then the text.

    >>> sorted(["projunn_t-k16", "svd", "projunn_t-k4"], key=label_order)
    ['projunn_t-k4', 'projunn_t-k16', 'svd']
    """
    from ..measure.methods import METHODS

    method, k, _ = parse_series_label(label)
    names = list(METHODS)
    return (names.index(method) if method in names else len(names), k or 0, label)

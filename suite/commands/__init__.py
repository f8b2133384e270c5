"""The commands of ``projunn-bench``, one module each (see :mod:`suite.cli`).

* :mod:`~suite.commands.run`: run a benchmark sweep into a new results folder;
* :mod:`~suite.commands.report`: a report (markdown, HTML, figures) from result sets;
* :mod:`~suite.commands.compare`: noise-aware comparison of two runs' timings;
* :mod:`~suite.commands.listing`: ``projunn-bench list``, the registry and the grids.

:mod:`~suite.commands._args` holds the argument types and checks they share.
"""

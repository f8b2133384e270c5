"""The commands of ``projunn-bench``, one module each (see :mod:`suite.cli`).

* :mod:`~suite.commands.run`: run a benchmark sweep into a new results folder;
* :mod:`~suite.commands.profile`: where the time and memory of a step go;
* :mod:`~suite.commands.task`: train methods on a task, write their learning curves;
* :mod:`~suite.commands.report`: a report (markdown, HTML, figures) from result sets;
* :mod:`~suite.commands.compare`: noise-aware comparison of two runs' timings;
* :mod:`~suite.commands.listing`: ``projunn-bench list``, the registry and the grids;
* :mod:`~suite.commands.gate`: the pull-request performance gate;
* :mod:`~suite.commands.gate_noise`: the gate's false alarms and what it catches;
* :mod:`~suite.commands.gpu_check`: everything a GPU machine should measure;
* :mod:`~suite.commands.drift`: float32 drift of projUNN updates and its repair;
* :mod:`~suite.commands.asv_offline`: an asv dashboard that works without network.

A command module defines ``NAME``, ``HELP``, ``DESCRIPTION``, ``EPILOG``,
``add_arguments(parser)`` and ``main(args, parser)`` (the exit status; :mod:`suite.cli`
makes the subparser); :mod:`~suite.commands._args` holds the argument types they share.
"""

"""Training tasks for ``projunn-bench task``: learning curves of every method.

``TASKS`` maps a task name to its :class:`~suite.tasks.base.Task`. Adding a task is one
module (a ``Task`` subclass with its presets and problem) plus one entry below. Importing
is cheap: data sets are read, and scikit-learn / torchvision imported, only when a run
starts.

>>> sorted(TASKS)
['adding', 'copy', 'digits-conv', 'pdigits', 'pmnist']
>>> TASKS["copy"].preset("quick").T
50
"""

from . import adding, copying, digits_conv, pdigits, pmnist
from .base import LSTM, Config, DataError, Problem, Target, Task

__all__ = ["LSTM", "TASKS", "Config", "DataError", "Problem", "Target", "Task"]

TASKS: dict[str, Task] = {
    t.name: t for t in (copying.TASK, adding.TASK, pdigits.TASK, pmnist.TASK, digits_conv.TASK)
}

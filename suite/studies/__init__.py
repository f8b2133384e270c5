"""Measurement campaigns built on :mod:`suite.measure`, each behind a ``projunn-bench``
command:

* :mod:`~suite.studies.gpu_check` — ``projunn-bench gpu-check``: CUDA tests, host syncs of
  every method, the update sweep to N = 16384 beside the byte floor, kernels per step;
* :mod:`~suite.studies.drift` — ``projunn-bench drift``: float32 drift of projUNN updates
  over 10^6 steps, with and without ``reorthogonalize``, and the repair's cost.
"""

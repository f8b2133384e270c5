"""Collection rules for the whole tree (``--doctest-modules`` imports every module of the
packages; fixtures live in tests/conftest.py).

Triton is in no extra (CUDA builds of torch bring their own; ``.ci/run`` installs it for
the interpreter tests), so without it the Triton kernels' source, which imports
``triton.language`` at its top, is left out of collection instead of failing it. The tests
of the fused step skip on their own (tests/fused_support.py)::

    pip install "triton==3.9.*"   # to run them on CPU tensors, as CI does
"""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("triton") is None:
    collect_ignore.append("projunn_core/_fused_kernels.py")

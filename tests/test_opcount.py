"""The operator counter (suite/measure/opcount.py): views and metadata-only operators count 0,
compute operators (in-place, out=, factories that fill memory, custom operators) count 1."""

import pytest
import torch

from suite.measure.opcount import METADATA_OPS, OpCount, classify, count_ops

X = torch.randn(4, 4)
Y = torch.randn(4, 4)
Z = torch.randn(2, 4, 4, dtype=torch.complex64)
SCRATCH = torch.zeros(4, 4)  # written in place by the tests


@torch.library.custom_op("opcount_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return (x * 2).add(0)  # two operators inside, one outside


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


VIEWS = {
    "t": lambda: X.t(),
    "view": lambda: X.view(16),
    "reshape (a view)": lambda: X.reshape(2, 8),
    "mH (transpose + conj bit)": lambda: Z.mH,
    "x[1]": lambda: X[1],
    "slice": lambda: X[:, 1:3],
    "detach": lambda: X.detach(),
    "unbind": lambda: X.unbind(),
    "view_as_real": lambda: torch.view_as_real(Z),
    "diagonal": lambda: X.diagonal(),
    "expand": lambda: X[:1].expand(3, 4),
}
ONE = {
    "x @ y": lambda: X @ Y,
    "x.add_(y)": lambda: SCRATCH.add_(Y),
    "torch.where, tensor operands": lambda: torch.where(X > 0, X, Y),
    "matmul out=": lambda: torch.matmul(X, Y, out=torch.empty(4, 4)),
    "zeros (fills memory)": lambda: torch.zeros(3),
    "randn": lambda: torch.randn(3),
    "clone": lambda: X.clone(),
    "a custom operator": lambda: _twice(X),
    "item (a host read)": lambda: X[0, 0].item(),
    "batched matmul through a reshape (_unsafe_view is a view)": lambda: Z @ Z[0],
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_views_count_zero(name):
    c = count_ops(VIEWS[name])
    assert c.total == 0 and sum(c.excluded.values()) >= 1, c


def test_each_compute_operator_counts_one():
    expected = {
        "x @ y": 1,
        "x.add_(y)": 1,
        "torch.where, tensor operands": 2,  # gt and where
        "matmul out=": 1,
        "zeros (fills memory)": 1,
        "randn": 1,
        "clone": 1,
        "a custom operator": 1,
        "item (a host read)": 1,
        "batched matmul through a reshape (_unsafe_view is a view)": 1,
    }
    got = {name: count_ops(fn).total for name, fn in ONE.items()}
    assert got == expected
    custom = count_ops(ONE["a custom operator"])
    assert dict(custom.ops) == {"opcount_test.twice.default": 1}  # its inside is not seen
    batched = count_ops(ONE["batched matmul through a reshape (_unsafe_view is a view)"])
    assert "aten._unsafe_view.default" in batched.excluded


def test_metadata_only_operators_count_zero():
    c = count_ops(lambda: (torch.empty(3), torch.empty_like(X), X.clone().t_(), X.new_empty(2)))
    assert c.total == 1 and dict(c.ops) == {"aten.clone.default": 1}  # t_ changes strides only
    assert c.excluded["aten.empty.memory_format"] >= 1
    w = count_ops(lambda: torch.where(X > 0, X, 0.0))  # the 0.0 becomes a host scalar tensor
    assert w.total == 2 and w.excluded["aten.scalar_tensor.default"] == 1
    assert "empty" in METADATA_OPS and "zeros" not in METADATA_OPS


def test_the_result_is_returned_and_counts_add_up():
    c = count_ops(lambda a, b=2: (a @ a) * b, X, b=3)
    assert isinstance(c, OpCount) and torch.allclose(c.result, (X @ X) * 3)
    assert c.total == sum(c.ops.values()) == 2


def test_views_of_meta_tensors_are_told_apart_by_storage():
    """Meta tensors have no data pointers: the storage test must not call every meta output a
    view of every meta input."""
    m = torch.empty(4, 4, device="meta")
    assert count_ops(lambda: m @ m).total == 1
    assert count_ops(lambda: (m.t(), m[0])).total == 0


def test_classify():
    aten = torch.ops.aten
    assert classify(aten.t.default, (X,), {}, X.t()) == "view"
    assert classify(aten.add_.Tensor, (X, X), {}, X) == "compute"
    assert classify(aten.empty.memory_format, ([2],), {}, torch.empty(2)) == "metadata"
    y = torch.empty(16)
    assert classify(aten._unsafe_view.default, (y, [4, 4]), {}, y.view(4, 4)) == "view"
    assert classify(aten._unsafe_view.default, (y, [4, 4]), {}, torch.empty(4, 4)) == "compute"

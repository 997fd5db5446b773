"""The simulated NPU's arithmetic, written in TE: exactly what each unit computes, in which dtype.

- matrix unit: products of the inputs as given (the claims admit only the unit's input
  dtypes), summed in the accumulator dtype in order along K, rounded once to the output dtype;
- vector unit: inputs widened to float32, the op computed in float32, rounded once;
- data movement: exact, in the tensor's own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from tvm import te, tirx, topi

from xpuport.errors import CompileError
from xpuport_npusim.claims import VECTOR_COMPUTE

Kernel = Callable[[Sequence[te.Tensor], Any, Any], te.Tensor]  # (args, call attrs, out type)


def matmul(a: te.Tensor, b: te.Tensor, accumulator: str, out_dtype: str) -> te.Tensor:
    """numpy-style batched matmul (ranks >= 2, batch dims broadcast) on the matrix unit."""
    batch_a, batch_b = list(a.shape[:-2]), list(b.shape[:-2])
    k = te.reduce_axis((0, a.shape[-1]), "k")

    def element(*index: Any) -> Any:
        *outer, i, j = index
        left = a[(*_source_index(batch_a, outer), i, k)].astype(accumulator)
        right = b[(*_source_index(batch_b, outer), k, j)].astype(accumulator)
        return te.sum(left * right, axis=k)

    batch = _broadcast_shape(batch_a, batch_b)
    accumulated = te.compute((*batch, a.shape[-2], b.shape[-1]), element, name="matrix_unit")
    return topi.cast(accumulated, out_dtype)


def _broadcast_shape(left: list[Any], right: list[Any]) -> list[int]:
    rank = max(len(left), len(right))
    padded = [[1] * (rank - len(shape)) + [int(d) for d in shape] for shape in (left, right)]
    return [max(pair) for pair in zip(*padded, strict=True)]


def _source_index(batch: list[Any], outer: list[Any]) -> list[Any]:
    """The index into a broadcast operand's batch dims (size-1 dims stay at 0)."""
    offset = len(outer) - len(batch)
    return [0 if int(dim) == 1 else outer[offset + i] for i, dim in enumerate(batch)]


def _widened(op: Callable[..., te.Tensor]) -> Kernel:
    """A vector-unit kernel: float32 in, `op`, rounded once to the output dtype."""

    def kernel(args: Sequence[te.Tensor], attrs: Any, out: Any) -> te.Tensor:
        wide = [topi.cast(t, VECTOR_COMPUTE) for t in args]
        return topi.cast(op(*wide, attrs=attrs), out.dtype)

    return kernel


def _unary(op: Callable[[te.Tensor], te.Tensor]) -> Kernel:
    return _widened(lambda x, attrs: op(x))


def _binary(op: Callable[[te.Tensor, te.Tensor], te.Tensor]) -> Kernel:
    return _widened(lambda x, y, attrs: op(x, y))


def _const(value: float) -> Any:
    return tirx.const(value, VECTOR_COMPUTE)


def _gelu(x: te.Tensor, attrs: Any) -> te.Tensor:
    """x/2 (1 + erf(x/sqrt 2))"""
    erf = topi.erf(topi.multiply(x, _const(0.5**0.5)))
    return topi.multiply(topi.multiply(x, _const(0.5)), topi.add(_const(1.0), erf))


def _gelu_tanh(x: te.Tensor, attrs: Any) -> te.Tensor:
    """x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"""
    cubic = topi.multiply(_const(0.044715), topi.multiply(x, topi.multiply(x, x)))
    inner = topi.multiply(_const(math.sqrt(2.0 / math.pi)), topi.add(x, cubic))
    return topi.multiply(topi.multiply(x, _const(0.5)), topi.add(_const(1.0), topi.tanh(inner)))


def _relu(x: te.Tensor) -> te.Tensor:
    """x < 0 ? 0 : x, so that NaN stays NaN (topi's max(x, 0) turns it into 0)."""
    return te.compute(x.shape, lambda *i: tirx.Select(x[i] < _const(0.0), _const(0.0), x[i]),
                      name="relu")


def _axes(attrs: Any) -> list[int] | None:
    return None if attrs.axis is None else [int(a) for a in attrs.axis]


def _mean(x: te.Tensor, attrs: Any) -> te.Tensor:
    total = topi.sum(x, axis=_axes(attrs), keepdims=bool(attrs.keepdims))
    count = 1
    for axis in _axes(attrs) or range(len(x.shape)):
        count *= int(x.shape[axis])
    return topi.divide(total, tirx.const(float(count), VECTOR_COMPUTE))


def _layer_norm(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor, attrs: Any) -> te.Tensor:
    axes = [int(a) for a in attrs.axes]
    return topi.nn.layer_norm(x, gamma, beta, axis=axes, epsilon=float(attrs.epsilon))


def _reshaped(args: Sequence[te.Tensor], attrs: Any, out: Any) -> te.Tensor:
    return topi.reshape(args[0], [int(d) for d in out.shape])


def _transposed(args: Sequence[te.Tensor], attrs: Any, out: Any) -> te.Tensor:
    axes = None if attrs.axes is None else [int(a) for a in attrs.axes]
    return topi.transpose(args[0], axes)


VECTOR_KERNELS: dict[str, Kernel] = {
    "relax.add": _binary(topi.add),
    "relax.subtract": _binary(topi.subtract),
    "relax.multiply": _binary(topi.multiply),
    "relax.divide": _binary(topi.divide),
    "relax.power": _binary(topi.power),
    "relax.nn.relu": _unary(_relu),
    "relax.nn.gelu": _widened(_gelu),
    "relax.nn.gelu_tanh": _widened(_gelu_tanh),
    "relax.sigmoid": _unary(topi.sigmoid),
    "relax.tanh": _unary(topi.tanh),
    "relax.exp": _unary(topi.exp),
    "relax.sqrt": _unary(topi.sqrt),
    "relax.erf": _unary(topi.erf),
    "relax.negative": _unary(topi.negative),
    "relax.abs": _unary(topi.abs),
    "relax.nn.softmax": _widened(lambda x, attrs: topi.nn.softmax(x, axis=int(attrs.axis))),
    "relax.nn.layer_norm": _widened(_layer_norm),
    "relax.sum": _widened(lambda x, attrs: topi.sum(x, _axes(attrs), bool(attrs.keepdims))),
    "relax.max": _widened(lambda x, attrs: topi.max(x, _axes(attrs), bool(attrs.keepdims))),
    "relax.mean": _widened(_mean),
}
MOVE_KERNELS: dict[str, Kernel] = {
    "relax.reshape": _reshaped,
    "relax.expand_dims": _reshaped,
    "relax.squeeze": _reshaped,
    "relax.permute_dims": _transposed,
}
RELAX_OPS = ("relax.matmul", *VECTOR_KERNELS, *MOVE_KERNELS)


def lower_op(op: str, args: Sequence[te.Tensor], attrs: Any, out: Any,
             accumulator: str) -> te.Tensor:
    """The TE tensor one Relax call computes on the NPU."""
    if op == "relax.matmul":
        return matmul(args[0], args[1], accumulator, out.dtype)
    kernel = VECTOR_KERNELS.get(op) or MOVE_KERNELS.get(op)
    if kernel is None:
        raise CompileError(f"npusim has no kernel for the Relax op {op}",
                           "report it: npusim's claims admitted a node it cannot lower")
    return kernel(args, attrs, out)

"""backends/host_conv.py: torch's conv kernels in both layouts, called as TVM calls them."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from xpuport.backends import host_conv

torch = pytest.importorskip("torch")
# strides (2), padding (top, left, bottom, right), dilation (2), groups
ATTRIBUTES = [(1, 1, 1, 1, 1, 1, 1, 1, 1), (2, 1, 1, 0, 2, 1, 1, 2, 1), (1, 2, 0, 1, 0, 1, 2, 1, 4)]


def _expected(x: np.ndarray, w: np.ndarray, attributes: tuple[int, ...]) -> np.ndarray:
    sh, sw, top, left, bottom, right, dh, dw, groups = attributes
    padded = torch.nn.functional.pad(torch.from_numpy(x), (left, right, top, bottom))
    return torch.nn.functional.conv2d(padded, torch.from_numpy(w), None, (sh, sw), 0,
                                      (dh, dw), groups).numpy()


@pytest.mark.parametrize("attributes", ATTRIBUTES)
def test_both_layouts_compute_the_same_convolution(attributes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 11, 13)).astype(np.float32)
    w = rng.standard_normal((8, 8 // attributes[-1], 3, 3)).astype(np.float32)
    want = _expected(x, w, attributes)

    nchw = host_conv.torch_conv2d(tvm.runtime.tensor(x), tvm.runtime.tensor(w), *attributes)
    nhwc = host_conv.conv2d_nhwc(tvm.runtime.tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1))),
                                 tvm.runtime.tensor(np.ascontiguousarray(w.transpose(0, 2, 3, 1))),
                                 *attributes)

    np.testing.assert_allclose(nchw.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(nhwc.numpy().transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attributes", ATTRIBUTES)
def test_the_fused_kernels_add_bias_residual_and_relu(attributes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 11, 13)).astype(np.float32)
    w = rng.standard_normal((8, 8 // attributes[-1], 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    conv = _expected(x, w, attributes)
    residual = rng.standard_normal(conv.shape).astype(np.float32)
    want = np.maximum(conv + b[:, None, None] + residual, 0)

    nchw = host_conv.conv2d_epilogue(*map(tvm.runtime.tensor, (x, w, b, residual)),
                                     *attributes, 1)
    nhwc = host_conv.conv2d_epilogue_nhwc(
        *(tvm.runtime.tensor(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
          for a in (x, w)), tvm.runtime.tensor(b),
        tvm.runtime.tensor(np.ascontiguousarray(residual.transpose(0, 2, 3, 1))), *attributes, 1)

    np.testing.assert_allclose(nchw.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(nhwc.numpy().transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)

"""Shape, parameter and cost rules against hand-worked cases and an independent count."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnspec.kinds import resolve_same, window_axis
from tests.conftest import check_text, net

# spec line(s), input, expected output shape, expected params: the textbook, one a line.
CASES = [
    ("conv 1 3x3", "1x6x6", (1, 4, 4), 10),  # 6x6 * 3x3 -> 4x4
    ("conv 1 3x3 bias=false", "1x6x6", (1, 4, 4), 9),
    ("conv 1 3x3 pad=same", "1x6x6", (1, 6, 6), 10),  # p = (f-1)/2
    ("conv 1 3x3 pad=1", "1x6x6", (1, 6, 6), 10),
    ("conv 1 5x5 pad=2", "1x6x6", (1, 6, 6), 26),
    ("conv 1 3x3 stride=2", "1x7x7", (1, 3, 3), 10),  # floor((7-3)/2)+1
    ("conv 1 3x3 stride=2 pad=1", "1x7x7", (1, 4, 4), 10),
    ("conv 1 3x3 stride=2", "1x8x8", (1, 3, 3), 10),  # floor(5/2)+1: a column is dropped
    ("conv 1 3x3", "3x6x6", (1, 4, 4), 28),  # a filter spans all channels: 3x3x3
    ("conv 2 3x3", "3x6x6", (2, 4, 4), 56),
    ("conv 10 3x3", "3x64x64", (10, 62, 62), 280),  # (27 + 1) * 10
    ("conv 4 3x1", "2x5x5", (4, 3, 5), 28),
    ("conv 4 3x3 pad=(0,1,2,3)", "1x5x5", (4, 4, 8), 40),  # per-side pads
    ("conv 4 3x3 pad=1x0", "1x5x5", (4, 5, 3), 40),
    ("conv 4 3x3 dilation=2", "1x9x9", (4, 5, 5), 40),  # extent 5
    ("conv 8 3x3 groups=2", "4x6x6", (8, 4, 4), 2 * 9 * 8 + 8),
    ("conv 4 3x3 groups=4 pad=same", "4x6x6", (4, 6, 6), 40),  # depthwise
    ("conv 4 3x3 stride=2 pad=same", "1x7x7", (4, 4, 4), 40),  # ceil(7/2)
    ("conv 4 2x2 pad=same", "1x5x5", (4, 5, 5), 20),  # even kernel: extra pad at the end
    ("pool max 2", "6x28x28", (6, 14, 14), 0),
    ("pool avg 3 stride=2", "1x7x7", (1, 3, 3), 0),
    ("pool max 2 ceil", "1x5x5", (1, 3, 3), 0),
    ("pool max 3 stride=2 ceil", "1x6x6", (1, 3, 3), 0),  # (6-3)/2 -> ceil 2 +1
    ("pool max 2 stride=2 pad=1 ceil", "1x4x4", (1, 3, 3), 0),  # last window starts in padding? no
    ("pool max 2 pad=same", "1x5x5", (1, 3, 3), 0),
    ("globalpool avg", "64x7x7", (64, 1, 1), 0),
    ("batchnorm", "16x8x8", (16, 8, 8), 64),
    ("flatten", "16x5x5", (400,), 0),
    ("flatten\ndense 120", "16x5x5", (120,), 48120),  # (400 + 1) * 120
    ("dense 10 bias=false", "84", (10,), 840),
    ("dropout 0.5", "84", (84,), 0),
    ("leakyrelu 0.2", "3x4x4", (3, 4, 4), 0),
    ("softmax", "10", (10,), 0),
    ("scale init=1e-6", "16x8x8", (16, 8, 8), 16),
    ("layernorm", "16x8x8", (16, 8, 8), 32),  # gamma and beta per channel, as Keras counts
    ("prelu", "16x8x8", (16, 8, 8), 16),  # nn.PReLU(16): a slope per channel
    ("prelu shared", "16x8x8", (16, 8, 8), 1),  # nn.PReLU(): one slope
    ("prelu", "84", (84,), 84),
]


@pytest.mark.parametrize("line, input_shape, output, params", CASES)
def test_output_shape_and_params(line, input_shape, output, params):
    result = check_text(net(line, input_shape))
    assert result.errors == []
    network = result.network()
    assert network.output_shape == output
    assert network.total_params == params


def test_batchnorm_counts_like_keras():
    network = check_text(net("batchnorm", "32x8x8")).network()
    assert (network.total_params, network.trainable_params, network.non_trainable_params) == (128, 64, 64)


def test_lenet5_macs_by_hand():
    network = check_text(
        net(
            "conv 6 5x5 relu\npool max 2\nconv 16 5x5 relu\npool max 2\nflatten\ndense 120 relu\n"
            "dense 84 relu\ndense 10 softmax"
        )
    ).network()
    expected = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert network.macs == expected == 416_520


def test_receptive_field_and_jump():
    # Two 3x3 convs see 5x5; a 2x2/2 pool then a 3x3 conv adds (3-1)*2.
    network = check_text(net("conv 1 3x3\nconv 1 3x3\npool max 2\nconv 1 3x3", "1x32x32")).network()
    assert [c.receptive_field for c in network.layers] == [(3, 3), (5, 5), (6, 6), (10, 10)]
    assert network.layers[-1].jump == (2, 2)


def test_dilated_receptive_field():
    network = check_text(net("conv 1 3x3 dilation=2\nconv 1 3x3 dilation=4", "1x32x32")).network()
    assert [c.receptive_field[0] for c in network.layers] == [5, 13]


def test_dense_equivalent_of_a_conv():
    layer = check_text(net("conv 10 3x3", "3x6x6")).network().layers[0]
    assert layer.dense_equivalent_params == (3 * 6 * 6 + 1) * (10 * 4 * 4)


def test_same_padding_puts_the_odd_pixel_at_the_end():
    assert resolve_same(5, 2, 1) == (0, 1)
    assert resolve_same(7, 3, 2) == (1, 1)
    assert resolve_same(6, 3, 2) == (0, 1)


def _count_windows(n, k, s, d, p0, p1, ceil):
    """Place windows one by one on the padded axis: the independent count.

    Floor mode keeps every window that fits. Ceil mode adds one partial window when the
    full ones leave the end of the padded axis uncovered, but (as ONNX Runtime and
    PyTorch do) only if it starts on a real pixel or in the left padding.
    """
    extent = d * (k - 1) + 1
    length = n + p0 + p1
    starts = []
    start = 0
    while start + extent <= length:
        starts.append(start)
        start += s
    covered = starts[-1] + extent if starts else 0
    if ceil and covered < length and start < n + p0:
        starts.append(start)
    return len(starts)


@given(
    n=st.integers(1, 64),
    k=st.integers(1, 9),
    s=st.integers(1, 5),
    d=st.integers(1, 3),
    p0=st.integers(0, 4),
    p1=st.integers(0, 4),
    ceil=st.booleans(),
)
def test_size_formula_matches_counting_windows(n, k, s, d, p0, p1, ceil):
    extent = d * (k - 1) + 1
    if extent > n + p0 + p1:
        return  # an error case, covered by the diagnostics tests
    if ceil and max(p0, p1) >= k:
        return  # pooling (the only ceil user) rejects pads as wide as the window
    result = window_axis(n, k, s, d, p0, p1, ceil)
    assert result.size == _count_windows(n, k, s, d, p0, p1, ceil)


def _edge_rows_lost(n, k, s, d, p0, p1):
    """Mark, row by row, what the floor-mode windows span; count the real rows at the end
    left unspanned, when that tail is wider than the rows every window already leaves
    between itself and the next (a window narrower than its stride skips rows by design)."""
    extent = d * (k - 1) + 1
    spanned = [False] * (n + p0 + p1)
    start = 0
    while start + extent <= len(spanned):
        for row in range(start, start + extent):
            spanned[row] = True
        start += s
    tail = len(spanned) - (max(i for i, on in enumerate(spanned) if on) + 1)
    real_tail = sum(1 for row in range(len(spanned) - tail, p0 + n) if row >= p0)
    return real_tail if tail > max(s - extent, 0) else 0


def test_dropped_rows_match_marking_the_windows():
    """Every input size to 24, kernel to 7, stride to 5, dilation to 3, pads to 4: all of
    them, not a sample (a sampled run once found the case of a left pad wider than the
    input, where the tail reaches into it)."""
    cases = 0
    for n, k, s, d, p0, p1 in itertools.product(
        range(1, 25), range(1, 8), range(1, 6), range(1, 4), range(5), range(5)
    ):
        if d * (k - 1) + 1 > n + p0 + p1:
            continue  # an error case, covered by the diagnostics tests
        result = window_axis(n, k, s, d, p0, p1, False)
        assert result.unused == _edge_rows_lost(n, k, s, d, p0, p1), (n, k, s, d, p0, p1)
        cases += 1
    assert cases > 50_000


@pytest.mark.parametrize(
    "line, input_shape, warned",
    [
        ("conv 8 1x1 stride=2", "4x56x56", False),  # ResNet's projection shortcut: every other row
        ("conv 8 1x1 stride=3", "4x10x10", False),
        ("conv 8 2x2 stride=3", "4x10x10", True),  # rows 8 and 9: wider than the 1-row gap
        ("conv 8 3x3 stride=2", "4x224x224", True),  # SqueezeNet 1.1's first conv loses its edge
        ("pool max 2", "4x7x7", True),
    ],
)
def test_dropped_pixels_only_where_an_edge_is_lost(line, input_shape, warned):
    codes = [d.code for d in check_text(net(line, input_shape)).diagnostics]
    assert ("dropped-pixels" in codes) is warned, codes


@given(n=st.integers(1, 200), k=st.integers(1, 11), s=st.integers(1, 6))
def test_same_gives_ceil_n_over_s(n, k, s):
    p0, p1 = resolve_same(n, k, s)
    assert p1 - p0 in (0, 1)
    assert window_axis(n, k, s, 1, p0, p1, False).size == math.ceil(n / s)

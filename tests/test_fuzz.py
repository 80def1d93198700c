"""Garbage and mutated specs: the only outcomes allowed are a result or cnnspec's own
positioned diagnostics. Never a traceback, never a hang (hypothesis' deadline)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from tests.conftest import SPECS
from tests.helpers import TOKENS

SEEDS = [p.read_text() for p in sorted(SPECS.glob("*.cnn")) if "use " not in p.read_text()]

fuzz = settings(max_examples=300, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])


def _outcome_is_clean(text: str) -> None:
    result = cnnspec.check_source(text, "fuzz.cnn")
    for d in result.diagnostics:
        assert d.code and d.message
        if d.span is not None:
            assert d.span.line >= 1 and d.span.column >= 1, d
    if result.ok:
        for network in result.networks:
            assert all(dim > 0 for layer in network.layers for dim in layer.output_shape)


@fuzz
@given(st.text(max_size=300))
def test_random_text(text):
    _outcome_is_clean(text)


@fuzz
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup(tokens):
    _outcome_is_clean(" ".join(tokens))


@fuzz
@given(
    seed=st.sampled_from(SEEDS),
    cuts=st.lists(
        st.tuples(st.integers(0, 2000), st.integers(0, 30), st.sampled_from(TOKENS)), min_size=1, max_size=4
    ),
)
def test_mutated_valid_specs(seed, cuts):
    text = seed
    for position, length, token in cuts:
        position %= len(text) + 1
        text = text[:position] + token + text[position + length :]
    _outcome_is_clean(text)


@fuzz
@given(
    n=st.integers(1, 40),
    layers=st.lists(
        st.sampled_from(
            [
                "conv 4 3x3",
                "conv 2 5x5 stride=2",
                "pool max 2",
                "pool avg 3 stride=2 ceil",
                "conv 4 3x3 dilation=3",
                "conv 4 2x2 pad=same",
                "flatten",
                "dense 5",
                "batchnorm",
                "globalpool max",
                "conv 4 3x3 groups=2",
                "dropout 0.5",
                "softmax",
            ]
        ),
        max_size=12,
    ),
)
def test_random_networks_never_crash(n, layers):
    body = "\n".join(f"  {line}" for line in layers)
    _outcome_is_clean(f"network g {{\n  input 2x{n}x{n}\n{body}\n}}\n")


# ---------------------------------------------------------------- hostile sizes
# Huge repeat counts, deep nesting, long lines and giant numbers, combined at random: a
# result or diagnostics within the deadline, and bounded memory (expansion is refused
# before it is done, not after it has filled memory).

HOSTILE_COUNTS = ["0", "1", "7", "1000", "65536", "1000000", "1000000000", "9" * 30, "-5", "2.5", "1e400"]


def _nest(depth: int, count: str, inner: str) -> str:
    return "repeat " + " {\nrepeat ".join([count] * depth) + " {\n" + inner + "\n" + "}\n" * depth


# The deadline covers the largest expansion allowed (MAX_EXPANSION layers, a few seconds).
@settings(max_examples=40, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow])
@given(
    depth=st.integers(1, 120),
    count=st.sampled_from(HOSTILE_COUNTS),
    inner=st.sampled_from(["", "relu", "conv 0 3x3", "e", "conv 2 1x1", "dense " + "7" * 25]),
    words=st.integers(0, 5000),
    number=st.sampled_from(HOSTILE_COUNTS),
)
def test_hostile_sizes_stay_bounded(depth, count, inner, words, number):
    spec = (
        "block e() {\n}\n"
        + "network h {\n  input 2x8x8\n"
        + _nest(depth, count, inner)
        + "conv 2 1x1"
        + " relu" * words
        + "\n"
        + f"pool max {number}\n}}\n"
    )
    _outcome_is_clean(spec)


def test_the_largest_expansion_allowed_stays_in_bounded_memory():
    """Just under the expansion budget (every repeat pass and layer is a step): measured
    in a fresh process, peak resident memory stays far below a laptop's."""
    import subprocess
    import sys

    from cnnspec.resolve import MAX_EXPANSION

    count = MAX_EXPANSION // 2 - 10
    script = (
        "import cnnspec\n"
        f"r = cnnspec.check_source('network h {{\\n input 2x8x8\\n repeat {count} {{\\n conv 2 1x1\\n }}\\n}}\\n')\n"
        # VmHWM: this process's peak; ru_maxrss would start from the forking pytest's size
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(len(r.network().layers), r.ok, hwm)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    layers, ok, peak_kib = out.stdout.split()
    assert (int(layers), ok) == (count, "True"), out.stderr
    assert int(peak_kib) < 1024 * 1024  # under 1 GiB

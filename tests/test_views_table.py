"""The table `check` prints: nothing cut when it goes to a file or a pipe, the spec text cut to
the terminal's width otherwise, `--depth` folding block instances, `--columns` adding columns."""

from __future__ import annotations

import cnnspec
from cnnspec.views.report import Layout, render_table
from tests.conftest import SPECS, net
from tests.helpers import cli, run_cli

LONG = "conv 64 7x7 stride=2 pad=3 dilation=2 groups=2 bias=false relu"


def _table(text: str, layout: Layout) -> str:
    return render_table(cnnspec.check_source(text, "t.cnn"), layout=layout)


def test_nothing_is_cut_when_the_table_is_not_on_a_terminal():
    table = _table(net(LONG, "4x224x224"), Layout(width=None))
    assert LONG in table and "…" not in table


def test_on_a_narrow_terminal_only_the_spec_text_is_cut_to_fit():
    table = _table(net(LONG + "\nconv 8 1x1", "4x224x224"), Layout(width=80))
    rows = table.splitlines()[1:6]
    assert all(len(row) <= 80 for row in rows), rows
    assert "…" in table and "64x109x109" in table and "6,272" in table  # shapes and numbers whole
    wide = _table(net(LONG, "4x224x224"), Layout(width=200))
    assert LONG in wide  # a wide terminal shows it whole


def test_depth_one_folds_every_block_instance_into_one_row():
    result = cnnspec.check(SPECS / "zoo" / "resnet.cnn", "resnet18")
    network = result.network("resnet18")
    table = render_table(result, layout=Layout(depth=1))
    rows = {line.split()[0]: line for line in table.splitlines()[3:17]}
    instance = [entry for entry in network.layers if entry.layer.block == "layer2_0"]
    assert f"{sum(e.params for e in instance):,}" in rows["layer2_0"]  # its parameters summed
    assert "basic_down 128" in rows["layer2_0"] and "128x28x28" in rows["layer2_0"]
    assert "conv5" not in table and "fc" in rows  # layers outside blocks keep their rows
    assert len(table.splitlines()) < 30 < len(render_table(result).splitlines())


def test_columns_add_the_input_the_kernel_the_share_and_the_jump():
    text = net("conv 8 3x3 stride=2 as a\nflatten\ndense 10 as b", "3x9x9")
    table = _table(text, Layout(columns=("input", "kernel", "params%", "jump")))
    a, b = (line.split() for line in table.splitlines()[3:6:2])
    # a: 8 x 3 x 3 x 3 + 8 = 224 of 224 + 1,290 parameters; its outputs 2 pixels apart
    assert a[:10] == ["a", "conv", "8", "3x3", "stride=2", "8x4x4", "3x9x9", "8x3x3x3", "14.8%", "2"]
    assert b[:8] == ["b", "dense", "10", "10", "128", "10x128", "85.2%", "8"]


def test_an_unknown_column_is_a_usage_error():
    done = run_cli("check", "specs/lenet5.cnn", "--columns", "kernel,size")
    assert (
        done.returncode == 2
        and "unknown column 'size' (columns: input, kernel, params%, jump)" in done.stderr
    )


def test_check_prints_the_whole_spec_text_into_a_pipe(capsys):
    code, out, _ = cli(capsys, "check", "specs/zoo/resnet.cnn", "--network", "resnet50", "--depth", "1")
    assert code == 0 and "bottleneck_down 128" in out and "…" not in out


def test_rows_after_a_shape_error_show_a_dash_and_the_totals_leave_them_out():
    text = net("conv 4 3x3 as a\ndense 10 as b\nrelu as c", "1x8x8")  # dense on a map: an error
    table = _table(text, Layout())
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:6]}
    assert rows["a"][-4:] == ["40", "1.296K", "3", "yes"]  # 4 x 6 x 6 x 9
    assert rows["b"][-3:] == ["-", "-", "-"] and rows["c"][-3:] == ["-", "-", "-"]
    assert "(from b on, 2 layers follow a shape error: shown as -, left out of the totals)" in table
    assert "params: 40 total" in table


def test_a_folded_instance_sums_its_memory_kept_for_backward():
    from cnnspec.cost import training_memory
    from cnnspec.views.report import Costing, nbytes

    result = cnnspec.check(SPECS / "zoo" / "resnet.cnn", "resnet18")
    network = result.network("resnet18")
    kept = {row.name: row.saved_per_image for row in training_memory(network, 1, "adam").layers}
    stem = sum(kept[e.name] for e in network.layers if e.layer.block == "stem1")
    table = render_table(result, costing=Costing(optimizer="adam"), layout=Layout(depth=1))
    row = next(line for line in table.splitlines() if line.startswith("stem1"))
    assert row.endswith(nbytes(stem)) and stem > max(
        kept[e.name] for e in network.layers if e.layer.block == "stem1"
    )

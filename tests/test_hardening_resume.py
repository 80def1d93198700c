"""Issue 24, rule 6: --resume means the same run. A changed seed, split, batch size,
learning rate, schedule, optimizer, data or spec is refused with what changed (the
checkpoint's value and the new one); nothing is taken from the checkpoint silently. The
cases the issue lists, then generated variants; that an unchanged resume ends exactly as
an uninterrupted run is tested in tests/test_training_recipes.py."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnspec.base.diagnostics import CnnspecError
from cnnspec.deploy.weights import build_weights
from cnnspec.training.train import SETTING_OPTIONS, Recipe, train
from tests.helpers import RECIPE_RUN, RECIPE_SPEC, recipe_network, toy_data, train_toy

pytestmark = pytest.mark.train


@pytest.mark.parametrize(
    "changed, named",
    [
        ({"lr": 1e-2}, "--lr"),
        ({"seed": 6}, "--seed"),
        ({"batch_size": 4}, "--batch-size"),
        ({"val_split": 0.5}, "--val-split"),
        ({"epochs": 6}, "--epochs"),
        ({"recipe": Recipe(optimizer="sgd")}, "--optimizer"),
    ],
)
def test_resume_refuses_a_changed_option_and_names_it(tmp_path, changed, named):
    part = tmp_path / "run.ckpt"
    train_toy(checkpoint=part, stop_after=1)
    with pytest.raises(CnnspecError, match=f"these changed: {named} \\(the checkpoint's run: "):
        train_toy(checkpoint=part, resume=part, **changed)


def test_resume_refuses_other_data(tmp_path):
    part = tmp_path / "run.ckpt"
    train_toy(checkpoint=part, stop_after=1)
    net = recipe_network()
    with pytest.raises(CnnspecError, match="these changed: --data"):
        train(net, build_weights(net, seed=2), toy_data(48, seed=1), epochs=4, lr=5e-2, batch_size=8,
              val_split=0.25, seed=5, progress=False, checkpoint=part, resume=part)  # fmt: skip


@pytest.mark.parametrize(
    "field, value", [("epoch", "x"), ("history", None), ("best_key", [1]), ("epoch", 7), ("waited", "w")]
)
def test_a_crafted_checkpoint_is_an_error_not_a_crash(tmp_path, field, value):
    import torch

    part = tmp_path / "run.ckpt"
    train_toy(checkpoint=part, stop_after=2)
    state = torch.load(part, weights_only=True)
    if value is None:
        del state[field]
    else:
        state[field] = value
    torch.save(state, part)
    with pytest.raises(CnnspecError, match="not a usable cnnspec checkpoint"):
        train_toy(checkpoint=part, resume=part)


# ------------------------------------------------------------------ generated variants


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """The checkpoint of a run stopped after its first epoch (made once: refusals never
    touch it, they come before anything is trained)."""
    folder = tmp_path_factory.mktemp("resume")
    part = folder / "run.ckpt"
    train_toy(checkpoint=part, stop_after=1)
    return str(part)


# Each option a run is made of, with other values it could be given.
_CHANGES = {
    "epochs": st.integers(1, 9).filter(lambda v: v != RECIPE_RUN["epochs"]),
    "lr": st.floats(1e-5, 1.0).filter(lambda v: v != RECIPE_RUN["lr"]),
    "batch_size": st.integers(1, 48).filter(lambda v: v != RECIPE_RUN["batch_size"]),
    "val_split": st.floats(0.05, 0.9).filter(lambda v: v != RECIPE_RUN["val_split"]),
    "seed": st.integers(0, 2**32 - 1).filter(lambda v: v != RECIPE_RUN["seed"]),
    "optimizer": st.sampled_from(["sgd", "adamw"]),
    "weight_decay": st.floats(1e-6, 0.1),
    "schedule": st.sampled_from(["cosine", "step"]),
    "patience": st.integers(1, 5),
    "data": st.integers(1, 2**16),  # another data set: toy_data's seed
    "spec": st.sampled_from(["dense 8 relu", "dense 16 relu", "dense 8 tanh"]).filter(
        lambda v: v != "dense 8 relu"
    ),
}
_RECIPE = {field.name for field in dataclasses.fields(Recipe)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.sampled_from(sorted(_CHANGES)), min_size=1).flatmap(
    lambda keys: st.fixed_dictionaries({key: _CHANGES[key] for key in keys})
))  # fmt: skip
def test_any_changed_option_is_refused_and_named(stopped_run, changes):
    """Whatever changed, and however many: refused before training, naming each option
    that changed and none that did not."""
    options = {**RECIPE_RUN}
    recipe = {k: v for k, v in changes.items() if k in _RECIPE}
    options.update({k: v for k, v in changes.items() if k in RECIPE_RUN})
    net = (
        recipe_network(RECIPE_SPEC.replace("dense 8 relu", changes["spec"]))
        if "spec" in changes
        else recipe_network()
    )
    data = toy_data(48, seed=changes["data"]) if "data" in changes else toy_data(48)
    with pytest.raises(CnnspecError) as caught:
        train(
            net, build_weights(net, seed=2), data, **options,
            recipe=Recipe(**recipe), checkpoint=stopped_run, resume=stopped_run,
        )  # fmt: skip
    message = caught.value.diagnostics[0].message
    assert "--resume continues the interrupted run, but these changed: " in message
    named = {key for key, option in SETTING_OPTIONS.items() if f"{option} (the checkpoint's run:" in message}
    assert named == set(changes), message


def test_an_unchanged_resume_is_accepted(stopped_run, tmp_path):
    """The other side of the rule: the same options continue the run (from a copy, since
    a finished run removes its checkpoint)."""
    part = tmp_path / "copy.ckpt"
    shutil.copy(stopped_run, part)
    result = train_toy(checkpoint=part, resume=part)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]

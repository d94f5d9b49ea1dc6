"""DEQ study configs are checked key by key (nested keys too) before anything trains."""

from __future__ import annotations

import re

import pytest

from analogtorch.deq.study import complete_config

_BASE = {"name": "s", "task": "mnist"}


def test_defaults_fill_in():
    config = complete_config(dict(_BASE))
    assert "task_options" not in config  # unset: the fingerprints of older configs stay
    assert config["model"]["solver"] == "anderson" and config["train"]["epochs"] == 3
    assert config["settings"] == [{"name": "nominal", "bits": None, "noise": None}]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 3}, "epochs=3: unknown key"),
        ({"model": {"widht": 8}}, "model.widht=8: unknown key; known keys: width, kind"),
        ({"model": {"solver": "newton"}}, "model.solver='newton'"),
        ({"model": {"tol": 0}}, "model.tol=0"),
        ({"train": {"lr": float("nan")}}, "train.lr=nan"),
        ({"settings": [{"name": "x", "bits": 1}]}, "settings.0.bits=1"),
        ({"settings": [{"name": "x", "noise": -0.1}]}, "settings.0.noise=-0.1"),
        ({"arms": ["physics-aware", "magic"]}, "arms.1='magic'"),
        ({"eval": {"chips": 0}}, "eval.chips=0"),
        ({"seeds": []}, "seeds=[]"),
        ({"task": "imagenet"}, "unknown task(s) ['imagenet']"),
        ({"profile": "pcmx"}, "pcmx"),
        ({"profile_changes": {"adc_bits": 40}}, "adc_bits=40"),
        ({"kind": "physics", "task": None}, "a physics study needs tasks"),
        ({"task": None}, "a classification study needs task"),
        (
            {"task": "nonlinear", "task_options": {"state_dimm": 4}},
            "task_options ['state_dimm'] are not options of task 'nonlinear'",
        ),
        (
            {
                "kind": "physics",
                "task": None,
                "tasks": ["heat", "linear"],
                "task_options": {"kappa": 2.0},
            },
            "task_options ['kappa'] are not options of task 'linear'",
        ),
        (
            {"task": "nonlinear", "task_options": {"state_dim": "wide"}},
            "task_options of task 'nonlinear': state_dim='wide'",
        ),
        (
            {"task": "nonlinear", "task_options": {"coupling": "unitary"}},
            "task_options of task 'nonlinear': coupling='unitary'",
        ),
    ],
)
def test_each_bad_value_of_a_deq_config_names_its_key(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        complete_config({**_BASE, **changes}, "s.yaml")


def test_task_options_reach_the_task_generator():
    config = complete_config(
        {"name": "s", "task": "nonlinear", "task_options": {"state_dim": 5, "input_dim": 3}}
    )
    assert config["task_options"] == {"state_dim": 5, "input_dim": 3}

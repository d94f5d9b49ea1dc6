"""Which hardware each layer runs on: one profile for the model, or rules per layer.

A plan is a :class:`HardwareProfile` (every convertible layer on it) or an ordered mapping of
rules ``{key: profile or None}``. A key is a glob pattern over qualified module names
(``fnmatch``: ``"features.*"``, ``"0"``, ``"*"``) or a torch layer type (``nn.Conv2d``,
matching its subclasses too); ``None`` keeps the layer digital. For each layer the first
rule that matches wins, so the default goes last under ``"*"``; a layer no rule matches stays
digital. A rule that matches no layer is an error (a typo must not silently leave the
hardware unchanged), except ``"*"``.

The YAML form (:func:`plan_from_config`) writes types as ``nn.Conv2d`` and profiles as a
preset name, ``null``, or ``{preset: NAME, FIELD: VALUE, ...}`` (the preset with changes)::

    layers:
      "0": null              # first layer digital
      nn.Conv2d: pcm
      "*": {preset: seed-4bit-10pct, weight_bits: 6}
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any, TypeAlias

from torch import nn

from ..hardware.profile import HardwareProfile

RuleKey: TypeAlias = str | type[nn.Module]
ProfileRules: TypeAlias = Mapping[RuleKey, HardwareProfile | None]
ProfilePlan: TypeAlias = HardwareProfile | ProfileRules


def _key_name(key: RuleKey) -> str:
    return key if isinstance(key, str) else f"nn.{key.__name__}"


def _check_rules(rules: ProfileRules) -> None:
    for key, value in rules.items():
        is_type = isinstance(key, type) and issubclass(key, nn.Module)
        if not (isinstance(key, str) or is_type):
            raise TypeError(
                f"profile rule key {key!r}: give a module-name pattern (str) or a torch "
                "layer type such as nn.Conv2d"
            )
        if value is not None and not isinstance(value, HardwareProfile):
            raise TypeError(
                f"profile rule {_key_name(key)!r}: {type(value).__name__} is not a "
                "HardwareProfile (or None to keep the layer digital)"
            )


def _matches(key: RuleKey, name: str, module: nn.Module) -> bool:
    if isinstance(key, str):
        return fnmatch.fnmatchcase(name, key)
    return isinstance(module, key)


def resolve_plan(plan: ProfilePlan, layers: Mapping[str, nn.Module]) -> dict[str, HardwareProfile]:
    """The profile of each layer of ``layers`` (qualified name -> digital module) that
    becomes analog under ``plan``; layers left out stay digital."""
    if isinstance(plan, HardwareProfile):
        return dict.fromkeys(layers, plan)
    if not isinstance(plan, Mapping):
        raise TypeError(
            f"profile must be a HardwareProfile or a mapping of rules, got "
            f"{type(plan).__name__}; e.g. HardwareProfile.preset('pcm') or "
            "{'0': None, '*': HardwareProfile.preset('pcm')}"
        )
    _check_rules(plan)
    used: set[RuleKey] = set()
    resolved: dict[str, HardwareProfile] = {}
    for name, module in layers.items():
        for key, profile in plan.items():
            if _matches(key, name, module):
                used.add(key)
                if profile is not None:
                    resolved[name] = profile
                break
    unused = [_key_name(k) for k in plan if k not in used and k != "*"]
    if unused:
        raise ValueError(
            f"profile rules {unused} match no convertible layer; the layers are "
            f"{sorted(layers) or 'none'}"
        )
    return resolved


def _profile_from_config(key: str, value: Any) -> HardwareProfile | None:
    if value is None:
        return None
    if isinstance(value, str):
        return HardwareProfile.preset(value)
    if isinstance(value, Mapping) and isinstance(value.get("preset"), str):
        changes = {k: v for k, v in value.items() if k != "preset"}
        return HardwareProfile.preset(value["preset"]).replace(**changes)
    raise ValueError(
        f"layers.{key}: {value!r} is not a profile; give a preset name, null (digital) or "
        "{preset: NAME, FIELD: VALUE, ...}"
    )


def plan_from_config(config: Mapping[str, Any]) -> dict[RuleKey, HardwareProfile | None]:
    """Rules from their YAML/JSON form (see the module docstring); keys ``nn.X`` name the
    torch layer type ``torch.nn.X``."""
    if not isinstance(config, Mapping):
        raise TypeError(f"layers: expected a mapping of rules, got {type(config).__name__}")
    rules: dict[RuleKey, HardwareProfile | None] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise TypeError(f"layers: rule key {key!r} must be a string")
        rule: RuleKey = key
        if key.startswith("nn."):
            layer_type = getattr(nn, key[3:], None)
            if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
                raise ValueError(f"layers: {key!r} is not a torch.nn layer type")
            rule = layer_type
        rules[rule] = _profile_from_config(key, value)
    return rules

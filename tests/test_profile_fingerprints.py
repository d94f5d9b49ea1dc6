"""Profile fingerprints are stable: the shipped presets keep the fingerprints that
checkpoints and run folders stored, and fields added later hash only when set."""

from __future__ import annotations

import pytest

import analogtorch as at
from analogtorch.hardware.profile import preset_names

# Computed before weight_quant / weight_rounding existed; they must never drift.
PINNED = {
    "ideal": "ca523239449e5dc5",
    "pcm": "0d928352b7169893",
    "rram": "d6ed0bbc37a01fae",
    "seed-4bit-10pct": "a7a15f50faa58e12",
    "sram-cim": "a04eb4645e1f7f52",
}
DEFAULT_PROFILE = "6ef11c60052ad2bb"  # HardwareProfile()
ADDED = {"weight_quant": "affine", "weight_rounding": "stochastic"}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_every_shipped_preset_keeps_its_pinned_fingerprint(name):
    assert at.HardwareProfile.preset(name).fingerprint == PINNED[name]


def test_every_shipped_preset_is_pinned():
    assert sorted(preset_names()) == sorted(PINNED)


def test_the_default_profile_keeps_its_fingerprint():
    assert at.HardwareProfile().fingerprint == DEFAULT_PROFILE


@pytest.mark.parametrize("field", sorted(ADDED))
def test_an_added_field_is_serialised_and_hashed_only_when_set(field, tmp_path):
    base = at.HardwareProfile.preset("rram")
    assert field not in base.model_dump() and field not in base.to_yaml()
    changed = base.replace(**{field: ADDED[field]})
    assert changed.model_dump()[field] == ADDED[field]
    assert changed.fingerprint != base.fingerprint
    path = tmp_path / "p.yaml"
    changed.to_yaml(path)
    assert at.HardwareProfile.from_yaml(path) == changed
    assert at.HardwareProfile.model_validate_json(changed.model_dump_json()) == changed
    assert (
        changed.replace(**{field: at.HardwareProfile.model_fields[field].default}).fingerprint
        == PINNED["rram"]
    )

"""The one way every configuration file is read: ``load_yaml_mapping``.

A configuration file (hardware profile, study, HIL, DEQ, AIS or energy config) must be YAML
that the safe loader accepts (no Python tags: nothing in a file can run code), and hold a
non-empty mapping with string keys. Anything else is a ``ValueError`` naming the file; the
callers then refuse unknown keys and check each value, naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path``; ``what`` names the kind of file in messages
    (e.g. ``"study config"``). Raises ``FileNotFoundError`` or ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "missing"
        raise FileNotFoundError(f"{what} {str(path)!r} is {kind}: give the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a valid {what} (safe YAML only): {reason}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file, so not a {what}") from None
    if data is None:
        raise ValueError(f"{path}: the {what} is empty; it needs a mapping of keys to values")
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a {what} must be a mapping of keys to values, got a "
            f"{type(data).__name__} ({str(data)[:40]!r})"
        )
    bad = [key for key in data if not isinstance(key, str)]
    if bad:
        raise ValueError(f"{path}: {what} keys must be names, got {bad}")
    return data

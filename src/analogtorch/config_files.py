"""The one way every configuration file is read: ``load_yaml_mapping``.

A configuration file (hardware profile, study, HIL, DEQ, AIS or energy config) must be YAML
that the safe loader accepts (no Python tags: nothing in a file can run code), and hold a
non-empty mapping with string keys. Anything else is a ``ValueError`` naming the file; the
callers then refuse unknown keys and check each value, naming the key.
"""

from __future__ import annotations

from importlib import resources
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


def shipped_configs() -> dict[str, Path]:
    """The experiment configs shipped inside the package, ``{"family/name": path}``."""
    root = Path(str(resources.files("analogtorch").joinpath("experiments")))
    return {f"{p.parent.name}/{p.stem}": p for p in sorted(root.glob("*/*.yaml"))}


def find_config(spec: str | Path, what: str = "study config") -> Path:
    """A config file from a YAML path, or from a name: ``./experiments/*/NAME.yaml`` (your
    own configs, looked up from the current folder) first, then the shipped ones."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{what} {str(spec)!r} does not exist")
        return path
    name = str(spec)
    local = sorted(Path("experiments").glob(f"*/{name}.yaml"))
    shipped = [p for key, p in shipped_configs().items() if key.split("/")[1] == name]
    matches = local or shipped
    if not matches:
        own = {p.stem for p in Path("experiments").glob("*/*.yaml")}
        known = sorted(own | {key.split("/")[1] for key in shipped_configs()})
        raise FileNotFoundError(
            f"no {what} named {name!r} in ./experiments/*/ or among the shipped ones "
            f"(analogtorch study --list); known: {', '.join(known)}"
        )
    if len(matches) > 1:
        raise ValueError(f"{what} name {name!r} is ambiguous: {[str(m) for m in matches]}")
    return matches[0]

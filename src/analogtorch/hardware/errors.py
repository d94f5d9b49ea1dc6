"""The error every invalid hardware description raises, and its one-line explanation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


class ProfileError(ValueError):
    """A hardware profile field has an invalid value (message names field, value, allowed).

    ``clauses`` holds one ``field=value: reason`` string per problem, so a profile that
    nests another validated model can report ``energy.adc_share=0: ...``.
    """

    def __init__(self, message: str, clauses: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.clauses = list(clauses)


def _fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model that holds location ``loc`` of ``schema`` (nested models,
    their lists and optionals followed; the top level's fields where the walk ends)."""
    model = schema
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        inner = [field.annotation, *get_args(field.annotation)]
        inner += [arg for kind in inner for arg in get_args(kind)]
        models = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not models:
            break
        model = models[0]
    return list(model.model_fields)


def explain(
    err: ValidationError, what: str, schema: type[BaseModel], noun: str = "field"
) -> ProfileError:
    """A :class:`ProfileError` with one clause per problem: field, value given, what is allowed
    (``noun`` is what the message calls a field: ``"key"`` for a study config; an unknown one
    lists the known fields of the model it was found in)."""
    clauses = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"])
        nested = problem.get("ctx", {}).get("error")
        if isinstance(nested, ProfileError) and nested.clauses:
            clauses += [f"{field}.{clause}" if field else clause for clause in nested.clauses]
            continue
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            known = _fields_at(schema, problem["loc"][:-1])
            message = f"unknown {noun}; known {noun}s: {', '.join(known)}"
        if problem["type"] == "missing":
            clauses.append(f"{field}: missing; a {what} needs it")
            continue
        clauses.append(f"{field or what}={problem.get('input')!r}: {message}")
    return ProfileError(f"invalid {what}: " + "; ".join(clauses), clauses)


def validated(schema: type[BaseModel], data: Any, source: str, what: str) -> dict[str, Any]:
    """``data`` checked against the pydantic ``schema``, defaults filled in, as plain data;
    every problem in one :class:`ProfileError` naming the key (``"{source}: invalid {what}:
    key=value: reason"``, unknown keys listing the known ones)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a {what} is a mapping, got {type(data).__name__}")
    try:
        return schema(**data).model_dump(mode="json")
    except ValidationError as err:
        error = explain(err, what, schema, noun="key")
        raise ProfileError(f"{source}: {error}", error.clauses) from None

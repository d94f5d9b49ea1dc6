"""The error every invalid hardware description raises, and its one-line explanation."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError


class ProfileError(ValueError):
    """A hardware profile field has an invalid value (message names field, value, allowed).

    ``clauses`` holds one ``field=value: reason`` string per problem, so a profile that
    nests another validated model can report ``energy.adc_share=0: ...``.
    """

    def __init__(self, message: str, clauses: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.clauses = list(clauses)


def explain(
    err: ValidationError, what: str, known_fields: Iterable[str], noun: str = "field"
) -> ProfileError:
    """A :class:`ProfileError` with one clause per problem: field, value given, what is allowed
    (``noun`` is what the message calls a field: ``"key"`` for a study config)."""
    known = list(known_fields)
    clauses = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"])
        nested = problem.get("ctx", {}).get("error")
        if isinstance(nested, ProfileError) and nested.clauses:
            clauses += [f"{field}.{clause}" if field else clause for clause in nested.clauses]
            continue
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = f"unknown {noun}; known {noun}s: {', '.join(known)}"
        clauses.append(f"{field or what}={problem.get('input')!r}: {message}")
    return ProfileError(f"invalid {what}: " + "; ".join(clauses), clauses)

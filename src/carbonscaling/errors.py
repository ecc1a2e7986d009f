"""Typed exceptions.

Every error a user can cause is a :class:`CarbonScalingError`. The CLI turns
one into a single line on stderr and exit status 2 (bad input) or 3 (a valid
request with no answer, such as a deadline no device count meets).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CarbonScalingError(Exception):
    """Base class of every error the package raises on purpose."""

    exit_code = 2


class CarbonScalingWarning(UserWarning):
    """Input that is valid but probably not what was meant (the CLI prints ``warning: ...``)."""


class InputError(CarbonScalingError, ValueError):
    """A field has a value outside its allowed range, or is missing/malformed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownNameError(InputError, KeyError):
    """A catalog lookup (model, device, region, preset) found nothing."""

    def __init__(self, field: str, name: str, choices: Iterable[str]):
        choices = sorted(choices)
        if not str(name).strip():  # '' must not fall back to a default or a "did you mean"
            self.name, self.choices = name, choices
            listing = f"{', '.join(choices[:12])}{' ...' if len(choices) > 12 else ''}"
            InputError.__init__(self, field, f"{field} name is empty; known: {listing}")
            return
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        if not close:
            low = name.lower()
            close = [c for c in choices if low in c.lower() or c.lower() in low][:3]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f"; known: {', '.join(choices[:12])}{' ...' if len(choices) > 12 else ''}"
        self.name = name
        self.choices = choices
        super().__init__(field, f"unknown {field} {name!r}{hint}{listing}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return f"{self.field}: {self.message}"


class InfeasibleError(CarbonScalingError):
    """A valid request that has no answer; ``reason`` names the binding constraint."""

    exit_code = 3

    def __init__(self, reason: str, constraint: str = "", details: dict | None = None):
        self.reason = reason
        self.constraint = constraint
        self.details = details or {}
        super().__init__(reason)


def from_validation(err, prefix: str = "", *, missing: str = "required field is missing",
                    extra: str = "unknown field", loc=None, known=()) -> InputError:
    """The first error of a pydantic ``ValidationError`` as one :class:`InputError` line.

    ``prefix`` is prepended to the field path; ``loc`` may rewrite the path (a tuple ->
    str function, e.g. to drop union tags); ``missing`` / ``extra`` word those two cases;
    an unknown key gets a "did you mean" from the missing keys and ``known`` (field names).
    """
    errors = err.errors()
    first = errors[0]
    # A misspelt key ('n_layer') also makes the key it meant missing: report the misspelling,
    # with the missing key it is closest to.
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    absent = [str(e["loc"][-1]) for e in errors if e.get("type") == "missing" and e.get("loc")]
    if unknown and absent and first.get("type") == "missing":
        first = unknown[0]
    path = tuple(first.get("loc", ()))
    field = loc(path) if loc else ".".join(str(p) for p in path)
    field = f"{prefix}.{field}" if prefix and field else (field or prefix)
    kind = first.get("type", "")
    if kind == "missing":
        return InputError(field, missing)
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(path[-1]), [*absent, *known], n=1, cutoff=0.6) if path else []
        if not close:
            return InputError(field, extra)
        head, sep, rest = extra.partition(" (")  # the hint before a long "(allowed: ...)" list
        return InputError(field, f"{head}; did you mean {close[0]!r}?{' (' + rest if sep else ''}")
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    inp = first.get("input")
    if not isinstance(inp, (dict, list)):
        shown = repr(inp)  # cut as the service cuts it: a 5,000-character value stays a short line
        if f"got {shown}" not in msg:  # a validator's own message may already say it
            msg = f"{msg} (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return InputError(field, msg)

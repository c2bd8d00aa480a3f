"""Lenient reading of numbers from JSON that Agora wrote: callbacks and REST answers send the same field as an
integer, a float or a string depending on the product and its version (``docs/agora.md`` §5)."""

from __future__ import annotations

#: Integers beyond 64 bits are refused in the NCS envelope and read as absent everywhere else.
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1


def as_int(value: object) -> int | None:
    """An integer, an integral float or a numeric string as int; anything else as None."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = int(value.strip())
        except ValueError:
            return None
    return number if number is not None and MIN_INT64 <= number <= MAX_INT64 else None

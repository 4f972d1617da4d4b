"""Parsing numbers people and other systems type.

`str.isdigit()` is true for characters `int()` refuses (superscripts such as "²") and `int()` accepts digits of
every script ("٣"), so neither alone decides what an ASCII whole number is: one function does, for every form
field, query parameter and metadata value read as a number.
"""
from __future__ import annotations


def whole_number(text: object, low: int = 0, high: int = 2**31 - 1) -> int | None:
    """`text` as an int when it is ASCII digits only and within [low, high]; otherwise None."""
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 12:
        return None
    value = int(text)
    return value if low <= value <= high else None

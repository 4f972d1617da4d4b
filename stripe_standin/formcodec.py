"""Decoder for Stripe's form encoding (``a[b][0][c]=1``, ``types[]=x``)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")

# Containers under these keys are hashes even when their keys look numeric.
_HASH_KEYS = frozenset({"metadata"})


class FormError(ValueError):
    """Raised for structurally invalid keys; carries the offending param."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class _Seq(dict):
    """Temporary list representation: index -> value."""


def _split(key: str) -> list[str]:
    m = _KEY_RE.match(key)
    if not m:
        raise FormError(f"Invalid parameter name: {key}", key)
    return [m.group(1)] + _SEGMENT_RE.findall(m.group(2))


def _container_for(name: str, next_segment: str) -> dict:
    if name not in _HASH_KEYS and (next_segment == "" or next_segment.isdigit()):
        return _Seq()
    return {}


def _slot(container: dict, segment: str):
    if isinstance(container, _Seq):
        if segment == "":
            return len(container)
        if not segment.isdigit():
            return None
        return int(segment)
    return segment


def decode_form(body: str) -> dict:
    """Decode a form/query string into nested dicts and lists of strings."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split(key)
        node = root
        name = parts[0]
        for depth, segment in enumerate(parts):
            slot = segment if depth == 0 else _slot(node, segment)
            if slot is None:
                raise FormError(f"Invalid array index in {key}", key)
            last = depth == len(parts) - 1
            if last:
                if slot in node and isinstance(node[slot], dict):
                    raise FormError(f"Invalid hash: {key}", key)
                node[slot] = value
                break
            child = node.get(slot)
            if child is None:
                child = _container_for(segment if depth else name, parts[depth + 1])
                node[slot] = child
            elif not isinstance(child, dict):
                raise FormError(f"Invalid hash: {key}", key)
            node = child
    return _finalize(root)


def _finalize(node):
    if isinstance(node, _Seq):
        return [_finalize(node[i]) for i in sorted(node)]
    if isinstance(node, dict):
        return {k: _finalize(v) for k, v in node.items()}
    return node

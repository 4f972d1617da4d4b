"""Stripe webhook signature checks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`.

HMAC-SHA256 of `"<t>.<raw body>"` with each configured secret (the first is active; the others are accepted
while a rotation is under way), then the timestamp within the tolerance either side of now. The result
carries a digest of the exact signed request for the replay guard.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SIGNATURE_CODES = ("signature_missing", "signature_malformed", "signature_invalid", "signature_stale",
                   "replay_blocked", "payload_invalid")


class SignatureError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class VerifiedSignature:
    timestamp: int
    secret_index: int   # 0 = the active secret; > 0 a rotated one
    digest: str         # identifies this exact signed request


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The header value Stripe would send (used by tests and tools)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise SignatureError("signature_malformed", "Stripe-Signature items must look like key=value")
        if key == "t":
            if not (value.isascii() and value.isdigit()):
                raise SignatureError("signature_malformed", "timestamp is not a number")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError("signature_malformed", "Stripe-Signature needs t= and at least one v1=")
    return timestamp, signatures


def verify(payload: bytes, header: str | None, secrets: tuple[str, ...], tolerance_sec: int,
           now_unix: float) -> VerifiedSignature:
    if not header or not header.strip():
        raise SignatureError("signature_missing", "Stripe-Signature header is missing")
    timestamp, signatures = _parse(header)
    if not secrets:
        raise SignatureError("signature_invalid", "no webhook signing secret is configured")
    signed = f"{timestamp}.".encode() + payload
    for index, secret in enumerate(secrets):
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in signatures:
            if hmac.compare_digest(expected, candidate):
                if abs(now_unix - timestamp) > tolerance_sec:
                    raise SignatureError("signature_stale",
                                         f"timestamp is more than {tolerance_sec}s away from now")
                digest = hashlib.sha256(f"{timestamp}:{candidate}".encode()).hexdigest()
                return VerifiedSignature(timestamp=timestamp, secret_index=index, digest=digest)
    raise SignatureError("signature_invalid", "no signature matches a configured secret")

"""Stripe-Signature verification on the raw body, with a precise reason for every refusal."""

import base64
import hashlib
import hmac

import stripe

from api.errors import ApiError


def _parse(header: str) -> tuple[int, list[str]]:
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise ValueError(f"item {item!r} is not key=value")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise ValueError("exactly one integer t= item is required")
    return int(timestamps[0]), signatures


def verify_stripe_signature(
    raw: bytes, header: str | None, *, secret: str, tolerance_s: int, now: float
) -> None:
    """Raise ApiError unless `header` signs `raw` with `secret` within tolerance, both ways."""
    if not secret:
        raise ApiError(
            503,
            "webhook_secret_not_configured",
            "CONCORD_STRIPE_WEBHOOK_SECRET is not set; nothing was stored, retry later",
        )
    if not header:
        raise ApiError(400, "signature_missing", "the Stripe-Signature header is missing")
    try:
        timestamp, signatures = _parse(header)
    except ValueError as exc:
        raise ApiError(400, "signature_malformed", f"Stripe-Signature is malformed: {exc}") from exc
    if not signatures:
        raise ApiError(400, "signature_malformed", "Stripe-Signature has no v1 signature")
    try:
        # The SDK compares every v1 value in constant time; the clock is checked below, both ways.
        stripe.WebhookSignature.verify_header(raw, header, secret, tolerance=None)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from exc
    except stripe.SignatureVerificationError as exc:
        raise ApiError(
            400, "signature_mismatch", "no v1 signature matches the body and secret"
        ) from exc
    if timestamp < now - tolerance_s:
        raise ApiError(
            400,
            "timestamp_expired",
            f"the signature timestamp is more than {tolerance_s}s old",
            details={"timestamp": timestamp, "tolerance_s": tolerance_s},
        )
    if timestamp > now + tolerance_s:
        raise ApiError(
            400,
            "timestamp_in_future",
            f"the signature timestamp is more than {tolerance_s}s ahead",
            details={"timestamp": timestamp, "tolerance_s": tolerance_s},
        )


def verify_hubspot_signature(
    raw: bytes,
    *,
    method: str,
    uri: str,
    signature: str | None,
    timestamp: str | None,
    secret: str,
    tolerance_s: int,
    now: float,
) -> None:
    """X-HubSpot-Signature-v3: base64 HMAC-SHA256 of method + uri + body + timestamp (ms)."""
    if not secret:
        raise ApiError(
            503,
            "webhook_secret_not_configured",
            "CONCORD_HUBSPOT_CLIENT_SECRET is not set; nothing was stored, retry later",
        )
    if not signature or not timestamp:
        raise ApiError(
            400,
            "signature_missing",
            "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required",
        )
    if not timestamp.isdigit():
        raise ApiError(
            400,
            "signature_malformed",
            "X-HubSpot-Request-Timestamp is not milliseconds since the epoch",
        )
    source = method.encode() + uri.encode() + raw + timestamp.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.encode()):
        raise ApiError(400, "signature_mismatch", "X-HubSpot-Signature-v3 does not match")
    sent_s = int(timestamp) / 1000
    if sent_s < now - tolerance_s:
        raise ApiError(
            400, "timestamp_expired", f"the request timestamp is more than {tolerance_s}s old"
        )
    if sent_s > now + tolerance_s:
        raise ApiError(
            400, "timestamp_in_future", f"the request timestamp is more than {tolerance_s}s ahead"
        )

"""HubSpot's v3 request signature, as HubSpot signs webhook requests to an app.

base64(HMAC-SHA256(key=client secret, msg=method + uri + body + timestamp)), where uri is the
full request URL and timestamp the X-HubSpot-Request-Timestamp value (milliseconds since the
epoch). See ../shared/fixtures/hubspot/webhook_signature.md.
"""

import base64
import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"


def v3_signature(secret: str, *, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    source = method.encode() + uri.encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_headers(
    secret: str, *, uri: str, body: bytes, timestamp_ms: int | None = None
) -> dict[str, str]:
    """The headers HubSpot sends with a POST of `body` to `uri`."""
    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    signature = v3_signature(secret, method="POST", uri=uri, body=body, timestamp_ms=stamp)
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: str(stamp)}

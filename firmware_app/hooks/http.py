"""HTTP hook: POST the event JSON; the receiver verifies the HMAC and de-duplicates by event id.

Headers:
    Content-Type: application/json
    X-Facedepth-Event-Id: <event id>
    X-Facedepth-Signature: sha256=<hex HMAC-SHA256(secret, body)>    (when a secret is configured)

2xx = delivered. 408, 429 and 5xx, timeouts and connection errors are retried with backoff; any
other 4xx means the receiver refuses this event, which is logged and skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from firmware_app.config import HttpHookConfig
from firmware_app.hooks import Hook, HookError

SIGNATURE_HEADER = "X-Facedepth-Signature"
EVENT_ID_HEADER = "X-Facedepth-Event-Id"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """For receivers: constant-time check of the signature header."""
    return hmac.compare_digest(sign(secret, body), header or "")


class HttpHook(Hook):
    def __init__(self, cfg: HttpHookConfig):
        self.name, self.only, self.url, self.secret, self.timeout_s = (
            cfg.name,
            cfg.only,
            cfg.url,
            cfg.secret,
            cfg.timeout_s,
        )

    def deliver(self, event: dict) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: str(event.get("id", "")),
            "User-Agent": "facedepth",
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(1 << 16)  # the answer is not used; a hostile receiver cannot fill memory
        except urllib.error.HTTPError as e:
            permanent = 400 <= e.code < 500 and e.code not in (408, 429)
            raise HookError(f"{self.url} answered {e.code} {e.reason}", permanent=permanent) from None
        except (urllib.error.URLError, OSError) as e:
            raise HookError(f"{self.url}: {getattr(e, 'reason', e)}") from None

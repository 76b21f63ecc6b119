"""Ed25519 signatures of what the device runs: the bundle's manifest.json and a release's RELEASE.json.

sha256 in a manifest protects against corruption; only a signature protects against someone who rewrites
the files and their hashes together. The operator signs with a private key that never leaves the
workstation (`make keys`, convert/sign.py); the device holds only public keys, in its config
(`depth.trusted_keys`), and refuses anything unsigned or signed by a key it does not hold.

    FILE.sig = {"schema": "facedepth-signature/1", "key": "ed25519:<base64 raw 32-byte public key>",
                "signature": "<base64 64-byte Ed25519 signature over FILE's exact bytes>"}

A public key is written `ed25519:<base64>` everywhere (configs, .pub files, messages). The signature
itself is checked by the `cryptography` package (OpenSSL), never by code of ours.

    python -m firmware_app.signing FILE --config C        check FILE.sig against C's depth.trusted_keys
                                                           (install.sh: a new RELEASE.json against the
                                                           running release's keys); exit 0 ok, 2 refused
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

SIG_SUFFIX = ".sig"
SIG_SCHEMA = "facedepth-signature/1"
KEY_PREFIX = "ed25519:"
MAX_SIG_BYTES = 4096


class SignatureError(ValueError):
    """Not signed by a trusted key; the message names the file and the fix."""


def parse_public_key(text: str) -> bytes:
    """'ed25519:<base64>' → the raw 32-byte key; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise ValueError(f"{str(text)[:40]!r} is not a public key (expected {KEY_PREFIX}<base64>, as "
                         "`make keys` prints it)")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX):].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text[:40]!r}: the part after {KEY_PREFIX} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{text[:40]!r}: an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


def key_text(raw: bytes) -> str:
    return KEY_PREFIX + base64.b64encode(raw).decode()


def key_id(raw: bytes) -> str:
    """A short name for messages: the first 12 hex digits of the key's sha256."""
    return hashlib.sha256(raw).hexdigest()[:12]


def read_keys(values: Sequence[str]) -> list[str]:
    """Command-line keys: each an `ed25519:...` text or a file (.pub) with one key per line."""
    keys = []
    for v in values:
        if v.startswith(KEY_PREFIX):
            keys.append(v)
            continue
        try:
            lines = Path(v).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{v}: not a public key and not a readable key file ({e})") from None
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for k in keys:
        parse_public_key(k)
    return keys


def sig_path(path: Path) -> Path:
    return path.with_name(path.name + SIG_SUFFIX)


def _read_sig(sig: Path, fix: str) -> tuple[bytes, bytes]:
    try:
        if sig.stat().st_size > MAX_SIG_BYTES:
            raise SignatureError(f"{sig}: {sig.stat().st_size} bytes, not a signature file; {fix}")
        d = json.loads(sig.read_bytes())
    except FileNotFoundError:
        raise SignatureError(f"{sig.with_suffix('')}: unsigned (no {sig.name}); {fix}") from None
    except (OSError, ValueError) as e:
        raise SignatureError(f"{sig}: unreadable signature ({e}); {fix}") from None
    if not isinstance(d, dict) or d.get("schema") != SIG_SCHEMA:
        raise SignatureError(f"{sig}: not a {SIG_SCHEMA} file; {fix}")
    try:
        key = parse_public_key(d.get("key"))
        signature = base64.b64decode(str(d.get("signature")), validate=True)
    except (ValueError, binascii.Error) as e:
        raise SignatureError(f"{sig}: {e}; {fix}") from None
    return key, signature


def verify_bytes(data: bytes, path: Path, trusted: Sequence[str], fix: str) -> str:
    """Check path's signature (path.sig) over `data` (path's bytes, read once by the caller).

    Returns the signing key's id; SignatureError when there are no trusted keys, no or a malformed
    signature, a key not in `trusted`, or a signature that does not match (the file was altered).
    """
    path = Path(path)
    keys = {}
    for text in trusted:
        try:
            keys[parse_public_key(text)] = text
        except ValueError as e:
            raise SignatureError(f"trusted key {e}") from None
    if not keys:
        raise SignatureError(f"{path}: no trusted public keys configured, so nothing can be verified; add "
                             "the operator's key (keys/<name>.pub, `make keys`) to depth.trusted_keys")
    key, signature = _read_sig(sig_path(path), fix)
    if key not in keys:
        known = ", ".join(key_id(k) for k in keys)
        raise SignatureError(f"{path}: signed by key {key_id(key)}, which this device does not trust "
                             f"(trusted: {known}); re-sign with a trusted key or add its public key to "
                             "depth.trusted_keys")
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise SignatureError(f"{path}: cannot check its signature: the `cryptography` package is missing "
                             "(pip install -r requirements/device.txt)") from None
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, data)
    except InvalidSignature:
        raise SignatureError(f"{path}: signature by key {key_id(key)} does not match the file (altered after "
                             f"signing); {fix}") from None
    return key_id(key)


def verify_file(path: Path, trusted: Sequence[str], fix: str) -> tuple[bytes, str]:
    """Read `path` once, verify its signature; (the verified bytes, key id)."""
    data = Path(path).read_bytes()
    return data, verify_bytes(data, path, trusted, fix)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m firmware_app.signing", description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path, help="the signed file (FILE.sig beside it)")
    p.add_argument("--config", type=Path, required=True, help="device config whose depth.trusted_keys to use")
    a = p.parse_args(argv)
    from firmware_app.config import ConfigError, load_config

    try:
        keys = load_config(a.config).depth.trusted_keys
        _, kid = verify_file(a.file, keys, "sign it with the operator's key (`make deploy` does)")
    except (ConfigError, SignatureError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"refused: {a.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{a.file}: signature OK (key {kid})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

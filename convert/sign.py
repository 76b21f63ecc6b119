"""The operator's signing key: make one, sign a bundle or a release (workstation only; the device verifies
with firmware_app/signing.py).

    python -m convert.sign BUNDLE_DIR [--key K]   sign BUNDLE_DIR/manifest.json → manifest.json.sig
                                                  (make sign-bundle BUNDLE=...)
    python -m convert.sign --file F [--key K]     sign any file F → F.sig
    python -m convert.sign --keygen DIR [--force] new key pair DIR/signing.key (0600) + DIR/signing.pub
                                                  (make keys KEYS=DIR)

The key K is, in order: --key, $FACEDEPTH_SIGNING_KEY, keys/dev/signing.key — the DEVELOPMENT key
committed to this repository. Its private half is public: anything it signs is trusted only by configs
that list its public key (the quick start and the examples). A real device trusts only your own key.
Exit status: 0 signed, 2 bad input (no key, no bundle).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from firmware_app.bundle import MANIFEST, BundleError
from firmware_app.signing import SIG_SCHEMA, key_id, key_text, sig_path

REPO = Path(__file__).resolve().parents[1]
DEV_KEY = REPO / "keys" / "dev" / "signing.key"


class SignError(BundleError):
    """A key or file that cannot be used for signing (a BundleError, so `python -m convert` reports it)."""


def default_key() -> Path:
    return Path(os.environ.get("FACEDEPTH_SIGNING_KEY") or DEV_KEY)


def load_private_key(path: Path | None = None):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = Path(path or default_key())
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SignError(f"{path}: no such signing key; make one with `make keys` (or set "
                        "FACEDEPTH_SIGNING_KEY)") from None
    except (OSError, ValueError, TypeError) as e:
        raise SignError(f"{path}: not an unencrypted PEM private key ({e}); make one with `make keys`"
                        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignError(f"{path}: not an Ed25519 key; make one with `make keys`")
    return key


def public_text(key) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key_text(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_file(path: Path, key_path: Path | None = None) -> Path:
    """Sign path's exact bytes; writes path.sig (atomically) and returns it."""
    key = load_private_key(key_path)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SignError(f"{path}: cannot read ({e.strerror or e})") from None
    doc = {"schema": SIG_SCHEMA, "key": public_text(key),
           "signature": base64.b64encode(key.sign(data)).decode()}
    out = sig_path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.chmod(tmp, 0o644)
    tmp.replace(out)
    return out


def sign_bundle(bundle: Path, key_path: Path | None = None) -> Path:
    manifest = Path(bundle) / MANIFEST
    if not manifest.is_file():
        raise SignError(f"{bundle}: not a release bundle (no {MANIFEST}); make convert BUNDLE={bundle}")
    return sign_file(manifest, key_path)


def keygen(directory: Path, force: bool = False) -> tuple[Path, str]:
    """A new Ed25519 pair: directory/signing.key (PEM, 0600) and signing.pub (ed25519:<base64>)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    directory = Path(directory)
    private = directory / "signing.key"
    if private.exists() and not force:
        raise SignError(f"{private} exists; keep it, or rotate with --force (KEYS_FORCE=1) after saving it")
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = directory / ".signing.key.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    tmp.replace(private)
    pub = public_text(key)
    (directory / "signing.pub").write_text(pub + "\n")
    return private, pub


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m convert.sign", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("bundle", nargs="?", type=Path, help="bundle directory whose manifest.json to sign")
    p.add_argument("--file", type=Path, help="sign this file instead")
    p.add_argument("--key", type=Path, help="private key (default: $FACEDEPTH_SIGNING_KEY, else the dev key)")
    p.add_argument("--keygen", type=Path, metavar="DIR", help="make a new key pair in DIR")
    p.add_argument("--force", action="store_true", help="--keygen: replace an existing key (rotation)")
    a = p.parse_args(argv)
    try:
        if a.keygen:
            private, pub = keygen(a.keygen, a.force)
            print(f"wrote {private} (private: keep it off devices and out of git) and "
                  f"{private.with_suffix('.pub')}")
            print(f"public key, for depth.trusted_keys in every device config:\n  {pub}")
            return 0
        if bool(a.bundle) == bool(a.file):
            p.error("give a bundle directory or --file F (or --keygen DIR)")
        out = sign_bundle(a.bundle, a.key) if a.bundle else sign_file(a.file, a.key)
    except SignError as e:
        print(f"sign: {e}", file=sys.stderr)
        return 2
    key = load_private_key(a.key)
    from firmware_app.signing import parse_public_key

    is_dev = Path(a.key or default_key()).resolve() == DEV_KEY.resolve()
    dev = " (the DEVELOPMENT key: trusted only by the example configs)" if is_dev else ""
    print(f"wrote {out}: key {key_id(parse_public_key(public_text(key)))}{dev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Assemble a deploy release: `python -m deploy.build_artifact --bundle B --config C --out DIR`.

    DIR/<version>/
      RELEASE.json              version, bundle version, sha256 of every other file (checked on the device)
      RELEASE.json.sig          its Ed25519 signature by the operator's key (convert/sign.py): install.sh
                                accepts the release only when a key of the running release's config
                                (depth.trusted_keys; on a first install, this release's own) signed it
      install.sh                the idempotent on-device installer (deploy/install.sh)
      facedepth.service         the systemd unit (deploy/facedepth.service)
      config.yaml               the device config C
      requirements/device.txt   what the device venv needs (no TensorFlow)
      requirements/device-fallback.txt  the same with tflite-runtime, where ai-edge-litert has no wheel
      bundle/                   the release bundle B (manifest.json + .tflite files)
      firmware_app/             the daemon's code (no __pycache__)

version = <bundle version>-<first 10 hex of sha256 over the sorted "path sha256" lines>: it changes iff
some file's content (or name) changes. The config is validated before anything is written, with the
daemon's own `run --config C --validate-config`, against the staged release (so depth.bundle written as
`${FACEDEPTH_RELEASE:-/opt/facedepth/current}/bundle` resolves to the bundle being shipped, and its
hashes and signature are checked too), then the signed RELEASE.json is checked against the config's
trusted keys the same way the device will. The signing key is $FACEDEPTH_SIGNING_KEY, else the
DEVELOPMENT key keys/dev/signing.key. Prints the release directory on stdout; exit 2 bad config, 3 bad
bundle or signature.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from convert.sign import SignError, sign_file
from firmware_app.integrity import sha256_file
from firmware_app.signing import sig_path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
RELEASE_JSON = "RELEASE.json"
RELEASE_SIG = RELEASE_JSON + ".sig"
SCHEMA = "facedepth-release/1"


class BuildError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _ignore(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def stage(bundle: Path, config: Path, dest: Path) -> None:
    """Copy every release file into dest (which must not exist)."""
    if not (bundle / "manifest.json").is_file():
        raise BuildError(f"{bundle}: not a release bundle (no manifest.json); make convert BUNDLE={bundle}",
                         3)
    if not config.is_file():
        raise BuildError(f"{config}: no such device config (see deploy/device.example.yaml)", 2)
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "firmware_app", dest / "firmware_app", ignore=_ignore)
    shutil.copytree(bundle, dest / "bundle", ignore=_ignore)
    (dest / "requirements").mkdir()
    for name in ("device.txt", "device-fallback.txt"):  # the fallback: install.sh, where no ai-edge-litert
        shutil.copy2(REPO / "requirements" / name, dest / "requirements" / name)
    shutil.copy2(config, dest / "config.yaml")
    shutil.copy2(DEPLOY / "facedepth.service", dest / "facedepth.service")
    shutil.copy2(DEPLOY / "install.sh", dest / "install.sh")
    os.chmod(dest / "install.sh", 0o755)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in (RELEASE_JSON, RELEASE_SIG)
    }


def tree_hash(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{p} {h}\n" for p, h in sorted(files.items())).encode()).hexdigest()


def validate(release: Path, python: str = sys.executable) -> str:
    """The daemon's own --validate-config on the staged release; returns its one-line summary."""
    env = dict(os.environ, FACEDEPTH_RELEASE=str(release), PYTHONPATH=str(release))
    r = subprocess.run(
        [python, "-m", "firmware_app", "run", "--config", str(release / "config.yaml"), "--validate-config"],
        capture_output=True, text=True, env=env, cwd=release,
    )
    if r.returncode != 0:
        raise BuildError(f"config/bundle refused: {(r.stderr or r.stdout).strip()}", r.returncode)
    return r.stdout.strip()


def check_signature(release: Path, python: str = sys.executable) -> None:
    """The device's check of RELEASE.json.sig against the release config's trusted keys."""
    env = dict(os.environ, FACEDEPTH_RELEASE=str(release), PYTHONPATH=str(release))
    r = subprocess.run(
        [python, "-m", "firmware_app.signing", str(release / RELEASE_JSON), "--config",
         str(release / "config.yaml")],
        capture_output=True, text=True, env=env, cwd=release,
    )
    if r.returncode != 0:
        raise BuildError(f"release signature refused: {(r.stderr or r.stdout).strip()} (sign with a key "
                         "whose public half is in the config's depth.trusted_keys)", 3)


def bundle_version(bundle: Path) -> str:
    version = str(json.loads((bundle / "manifest.json").read_text()).get("version") or "bundle")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", version)[:60]


def build(bundle: Path, config: Path, out: Path, signing_key: Path | None = None) -> Path:
    """Stage, validate, hash, sign; the release ends at out/<version> (reused as-is if already there)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        stage(bundle, config, tmp / "r")
        try:
            summary = validate(tmp / "r")
        except BuildError as e:  # name the user's files, not the staging copy
            msg = str(e).replace(str(tmp / "r" / "bundle"), str(bundle))
            raise BuildError(msg.replace(str(tmp / "r" / "config.yaml"), str(config)), e.code) from None
        files = file_hashes(tmp / "r")
        version = f"{bundle_version(bundle)}-{tree_hash(files)[:10]}"
        release = {"schema": SCHEMA, "version": version, "bundle_version": bundle_version(bundle),
                   "validated": summary, "files": files}
        (tmp / "r" / RELEASE_JSON).write_text(json.dumps(release, indent=1, sort_keys=True) + "\n")
        try:
            sign_file(tmp / "r" / RELEASE_JSON, signing_key)
        except SignError as e:
            raise BuildError(f"cannot sign the release: {e}", 3) from None
        try:
            check_signature(tmp / "r")
        except BuildError as e:
            raise BuildError(str(e).replace(str(tmp / "r" / "config.yaml"), str(config)), e.code) from None
        final = out / version
        if (final / RELEASE_JSON).is_file() and sig_path(final / RELEASE_JSON).read_bytes() != \
                sig_path(tmp / "r" / RELEASE_JSON).read_bytes():  # same content, another key: re-sign
            shutil.copy2(sig_path(tmp / "r" / RELEASE_JSON), sig_path(final / RELEASE_JSON))
        if not (final / RELEASE_JSON).is_file():
            shutil.rmtree(final, ignore_errors=True)
            (tmp / "r").rename(final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.build_artifact", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="release bundle directory")
    p.add_argument("--config", type=Path, required=True, help="device config YAML")
    p.add_argument("--out", type=Path, default=REPO / "out" / "deploy", help="releases are written here")
    args = p.parse_args(argv)
    try:
        release = build(args.bundle, args.config, args.out)
    except BuildError as e:
        print(f"build_artifact: {e}", file=sys.stderr)
        return e.code
    print(release)
    return 0


if __name__ == "__main__":
    sys.exit(main())

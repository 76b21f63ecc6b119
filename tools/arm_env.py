"""The aarch64 environments `make arm-check` runs the device code in (tools/arm_check.py compares them).

1. qemu-aarch64 10 or newer (bookworm's qemu-user-static 7.2 segfaults in ai-edge-litert's
   allocate_tensors; bookworm-backports has 10). The interpreter is started through qemu explicitly
   (`qemu-aarch64-static -L ROOTFS`), so no binfmt registration is needed, nor can a stale one get in
   the way; the quick start's hook (python3) then runs natively, as a door controller would.
2. An arm64 Debian bookworm rootfs with Python 3.11, cached in OUT/rootfs: `debootstrap --foreign`
   downloads the packages and this unpacks them with dpkg-deb (no emulated second stage: ~1 min, not ~10).
3. Each environment's requirements as aarch64 cp311 wheels, installed by the host's pip with --platform
   into OUT/site-<env>-<hash> (no emulated pip): "main" is requirements/device.txt (+ constraints),
   "fallback" requirements/device-fallback.txt (tflite-runtime 2.14, numpy 1.x), what deploy/install.sh
   installs where ai-edge-litert has no wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY_VERSION = "3.11"
# pip matches each platform tag exactly (TOOLCHAIN.md): list the manylinux tags a bookworm (glibc 2.36) takes.
PLATFORMS = [f"manylinux_2_{m}_aarch64" for m in range(36, 16, -1)] + ["manylinux2014_aarch64"]
DEBIAN_PACKAGES = "python3.11-minimal,libpython3.11-stdlib,libstdc++6,zlib1g,libexpat1,libffi8,libssl3"
MIRROR = "http://deb.debian.org/debian"
QEMU_MIN = 10


class ArmCheckError(RuntimeError):
    """A step failed; the message says which and what to do."""


def step(msg: str) -> float:
    print(f"arm-check: {msg}", flush=True)
    return time.monotonic()


def pip_target_args() -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PY_VERSION, "--implementation", "cp", "--abi", "cp311"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


# The device's two environments: the requirement files each installs (the fallback pins exactly, and its
# numpy 1.x would clash with the workstation constraints).
ENVIRONMENTS = {"main": ("device.txt", "constraints.txt"), "fallback": ("device-fallback.txt",)}


def requirements(env: str = "main") -> list[str]:
    first, *constraints = ENVIRONMENTS[env]
    return ["-r", str(REPO / "requirements" / first),
            *(a for c in constraints for a in ("-c", str(REPO / "requirements" / c)))]


def resolve_wheels(report: Path, env: str = "main") -> dict:
    """The aarch64 wheels pip would install for the device (metadata only, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
           "--disable-pip-version-check", "--target", str(report.parent / "unused"), "--report", str(report),
           *pip_target_args(), *requirements(env)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ArmCheckError(f"requirements/{ENVIRONMENTS[env][0]} does not resolve to aarch64 cp311 wheels:"
                            f"\n    {tail}")
    items = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): (i["metadata"]["version"], i["download_info"]["url"])
            for i in items}  # fmt: skip


def find_qemu() -> str:
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        path = shutil.which(name)
        if not path:
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"version (\d+)\.", out)
        if m and int(m.group(1)) >= QEMU_MIN:
            return path
    raise ArmCheckError(
        f"needs qemu-aarch64 {QEMU_MIN} or newer (bookworm's 7.2 segfaults in ai-edge-litert). On Debian "
        "bookworm: add the bookworm-backports suite to /etc/apt/sources.list.d/ and run "
        "apt-get install -t bookworm-backports qemu-user-static"
    )


def ensure_rootfs(out: Path) -> Path:
    root = out / "rootfs"
    ready = root / ".facedepth-ready"
    if ready.is_file() and ready.read_text().strip() == DEBIAN_PACKAGES:
        return root
    if not shutil.which("debootstrap") or not shutil.which("dpkg-deb"):
        raise ArmCheckError("needs debootstrap and dpkg-deb: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ArmCheckError("debootstrap must run as root (sudo make arm-check), once; the rootfs is cached")
    t = step(f"building an arm64 bookworm rootfs in {root} (debootstrap --foreign, then unpack)")
    archives = root / "var/cache/apt/archives"
    if not (root / "debootstrap/required").is_file() or not any(archives.glob("*.deb")):
        shutil.rmtree(root, ignore_errors=True)  # an earlier download that did not finish
        cmd = ["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
               f"--include={DEBIAN_PACKAGES}", "bookworm", str(root), MIRROR]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise ArmCheckError(f"debootstrap failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    debs = sorted(archives.glob("*.deb"))
    for deb in debs:  # what the emulated second stage would unpack; no maintainer scripts needed here
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
    if not (root / "usr/bin/python3.11").is_file():
        raise ArmCheckError(f"{root}: no usr/bin/python3.11 after unpacking {len(debs)} packages")
    ready.write_text(DEBIAN_PACKAGES + "\n")
    print(f"  {len(debs)} packages in {time.monotonic() - t:.0f} s", flush=True)
    return root


def ensure_site(out: Path, env: str = "main") -> Path:
    pins = b"".join((REPO / "requirements" / n).read_bytes() for n in ENVIRONMENTS[env])
    digest = hashlib.sha256(pins).hexdigest()[:12]
    site = out / f"site-{env}-{digest}"
    if (site / ".facedepth-ready").is_file():
        return site
    for old in out.glob(f"site-{env}-*"):
        shutil.rmtree(old, ignore_errors=True)
    t = step(f"installing requirements/{ENVIRONMENTS[env][0]} as aarch64 cp311 wheels into {site}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
           str(site), *pip_target_args(), *requirements(env)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise ArmCheckError(f"pip could not install the aarch64 wheels: {(proc.stderr or proc.stdout)[-800:]}"
                            )  # fmt: skip
    (site / ".facedepth-ready").write_text(digest + "\n")
    print(f"  done in {time.monotonic() - t:.0f} s", flush=True)
    return site


class Runner:
    """Runs `python -c/-m ...` on the host or under qemu with the aarch64 rootfs and wheels."""

    def __init__(self, qemu: str | None = None, rootfs: Path | None = None, site: Path | None = None,
                 name: str = "", python: str = sys.executable):
        self.qemu, self.rootfs, self.site, self.python = qemu, rootfs, site, python  # python: x86 only
        self.name = name or ("aarch64" if qemu else "x86_64")

    def __call__(self, args: list[str], env: dict | None = None, timeout: int = 3600) -> str:
        e = {**os.environ, **(env or {})}
        if self.qemu:
            cmd = [self.qemu, "-L", str(self.rootfs), str(self.rootfs / "usr/bin/python3.11"), *args]
            e["PYTHONPATH"] = os.pathsep.join([str(REPO), str(self.site)])
            e["PYTHONNOUSERSITE"] = "1"
        else:
            cmd = [self.python, *args]
            e["PYTHONPATH"] = str(REPO)
        proc = subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            what = " ".join(args[:3])
            raise ArmCheckError(f"{self.name}: python {what} … exited {proc.returncode}:\n    {tail}")
        return proc.stdout

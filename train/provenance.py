"""Where an artifact came from: the source commit stamped into datasets, runs and bundles, and the CPU a
benchmark ran on (int8 and float kernels rank differently from one CPU to another)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_commit(repo: Path = REPO) -> str:
    """HEAD's sha, '-dirty' if the tree differs from it (untracked, not ignored files count: they may be
    code the artifact was made with); 'unknown' outside a git checkout. Read-only git commands."""
    try:
        sha, dirty = (
            subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20, check=True)
            .stdout.strip()
            for args in (("rev-parse", "HEAD"), ("status", "--porcelain"))
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name and whether it has int8 dot-product instructions (VNNI), e.g.
    "AMD EPYC (avx512_vnni, avx_vnni)": the ratio of our int8 latency to a float peer's depends on both."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "flags" not in fields:
        return name
    vnni = [f for f in ("avx512_vnni", "avx_vnni") if f in fields["flags"].split()]
    return f"{name} ({', '.join(vnni) or 'no VNNI'})"

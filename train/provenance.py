"""Where an artifact came from: the source commit stamped into datasets, runs and bundles."""

from __future__ import annotations

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

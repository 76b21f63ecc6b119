"""Ship a release to one device or a fleet over ssh (`make deploy`), and look after it.

    python -m deploy.deploy deploy   --devices "pi@door1 pi@door2" [--port 22] --bundle B --config C
    python -m deploy.deploy deploy   --devices root@host --release out/deploy/<version>   (no build)
    python -m deploy.deploy status   --devices ...      current release and /healthz of each device
    python -m deploy.deploy logs     --devices ...      last 100 log lines (journald or daemon.log)
    python -m deploy.deploy rollback --devices ...      switch back to <app>/previous, restart, health check

deploy = build the artifact (deploy.build_artifact), `mkdir` over ssh, rsync (scp when rsync is
missing) into <app>/releases/<version>, then `sh install.sh` there (it verifies the hashes, switches,
restarts, checks health and rolls back). Several devices run in parallel; a table follows.

ssh always runs with BatchMode=yes (no password prompts) and ConnectTimeout=--timeout (default 10 s):
an unreachable device fails within that time with a clear message. Extra ssh options (a key, a
known_hosts file) come from FACEDEPTH_SSH_OPTS. Every other FACEDEPTH_* variable of this environment is
passed to install.sh on the device (FACEDEPTH_ROOT, FACEDEPTH_VENV, FACEDEPTH_HEALTH_TIMEOUT, ...).
A user other than root runs the remote side with `sudo -n` (passwordless sudo needed).
Exit status: 0 when every device succeeded, else 1 (2 for a bad config, 3 for a bad bundle).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deploy.build_artifact import REPO, BuildError, build

APP = "/opt/facedepth"


@dataclass(frozen=True)
class Target:
    host: str  # user@host
    port: int
    timeout: float

    @property
    def sudo(self) -> str:
        user = self.host.split("@")[0] if "@" in self.host else os.environ.get("USER", "")
        return "" if user == "root" else "sudo -n "

    def ssh_argv(self) -> list[str]:
        return [
            "ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.timeout)}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "ServerAliveInterval=5",
            *shlex.split(os.environ.get("FACEDEPTH_SSH_OPTS", "")),
        ]


@dataclass(frozen=True)
class Result:
    host: str
    version: str
    result: str
    seconds: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("installed", "unchanged", "rolled-back-ok", "ok")


class RemoteError(Exception):
    pass


def remote_app() -> str:
    root = os.environ.get("FACEDEPTH_ROOT", "")
    return f"{root}{APP}" if root else APP


def remote_env() -> str:
    workstation_only = ("FACEDEPTH_SSH_OPTS", "FACEDEPTH_SIGNING_KEY")
    keep = {k: v for k, v in os.environ.items() if k.startswith("FACEDEPTH_") and k not in workstation_only}
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(keep.items()))


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"timed out after {timeout:.0f} s: {shlex.join(argv[:1])}") from None


def ssh(t: Target, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    r = run([*t.ssh_argv(), t.host, command], timeout)
    if r.returncode == 255:  # ssh's own failure: no connection, auth refused, ...
        raise RemoteError(
            f"cannot reach {t.host} port {t.port} over ssh within {t.timeout:.0f} s: "
            f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'ssh failed'} "
            "(is the device on, sshd running, your key in its authorized_keys?)"
        )
    return r


def upload(t: Target, release: Path, dest: str) -> None:
    ssh_cmd = shlex.join(t.ssh_argv())
    if shutil.which("rsync"):
        argv = ["rsync", "-rlc", "--delete", "-e", ssh_cmd, f"--rsync-path={t.sudo}rsync",
                f"{release}/", f"{t.host}:{dest}/"]
    else:
        argv = ["scp", "-q", "-r", "-P", str(t.port), *t.ssh_argv()[3:], f"{release}/.", f"{t.host}:{dest}/"]
    r = run(argv, 600)
    if r.returncode != 0:
        raise RemoteError(f"upload to {t.host}:{dest} failed: {r.stderr.strip()}")


def deploy_one(t: Target, release: Path) -> Result:
    t0 = time.monotonic()
    version = release.name
    try:
        dest = f"{remote_app()}/releases/{version}"
        r = ssh(t, f"{t.sudo}mkdir -p {shlex.quote(dest)}", timeout=t.timeout + 30)
        if r.returncode != 0:
            raise RemoteError(f"mkdir {dest} on {t.host}: {r.stderr.strip()}")
        upload(t, release, dest)
        r = ssh(t, f"{t.sudo}env {remote_env()} sh {shlex.quote(dest)}/install.sh --install")
        out = (r.stdout.strip().splitlines() or ["?"])[-1].split()
        detail = r.stderr.strip()
        if r.returncode == 0:
            return Result(t.host, version, out[0], time.monotonic() - t0, detail)
        result = {1: "rolled-back" if out[0] == "rolled-back" else "failed", 2: "refused"}.get(
            r.returncode, "failed")
        return Result(t.host, version, result, time.monotonic() - t0, detail)
    except RemoteError as e:
        return Result(t.host, version, "unreachable" if "cannot reach" in str(e) else "failed",
                      time.monotonic() - t0, str(e))


def action_one(t: Target, action: str) -> Result:
    t0 = time.monotonic()
    try:
        r = ssh(t, f"{t.sudo}env {remote_env()} sh {remote_app()}/current/install.sh --{action}")
    except RemoteError as e:
        return Result(t.host, "?", "unreachable", time.monotonic() - t0, str(e))
    if action == "logs":
        print(f"==> {t.host} <==\n{r.stdout}{r.stderr}", end="")
    words = (r.stdout.strip().splitlines() or ["? ? ?"])[-1].split()
    version = words[1] if len(words) > 1 else "?"
    result = "ok" if r.returncode == 0 else "failed"
    if action == "status":
        result = words[-1] if r.returncode == 0 else "failed"
    return Result(t.host, version, result, time.monotonic() - t0, r.stderr.strip() if r.returncode else "")


def table(results: list[Result]) -> str:
    lines = [f"{'host':28s} | {'version':32s} | {'result':12s} | seconds"]
    lines += [f"{r.host:28s} | {r.version:32s} | {r.result:12s} | {r.seconds:7.1f}" for r in results]
    for r in results:
        if not r.ok and r.detail:
            lines += [f"{r.host}: {line}" for line in r.detail.splitlines()[-6:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.deploy", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("action", choices=("deploy", "status", "logs", "rollback"))
    p.add_argument("--devices", required=True, help="space-separated user@host list")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--timeout", type=float, default=10.0, help="ssh connect timeout, seconds")
    p.add_argument("--bundle", type=Path, default=REPO / "bundle" / "default")
    p.add_argument("--config", type=Path, default=REPO / "deploy" / "device.example.yaml")
    p.add_argument("--release", type=Path, help="an already built release directory (skips the build)")
    p.add_argument("--out", type=Path, default=REPO / "out" / "deploy")
    args = p.parse_args(argv)
    targets = [Target(h, args.port, args.timeout) for h in args.devices.split()]
    if not targets:
        p.error("no devices: make deploy DEVICE=user@host (or DEVICES=\"a b c\")")
    if args.action == "deploy":
        try:
            release = args.release or build(args.bundle, args.config, args.out)
        except BuildError as e:
            print(f"deploy: {e}", file=sys.stderr)
            return e.code
        print(f"release {release.name} ({release})", file=sys.stderr)
        job = lambda t: deploy_one(t, release.resolve())  # noqa: E731
    else:
        job = lambda t: action_one(t, args.action)  # noqa: E731
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        results = list(pool.map(job, targets))
    if args.action != "logs":
        print(table(results))
    return 0 if all(r.ok or r.result == "healthy" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`make deploy` against a REAL OpenSSH server on loopback (Debian's openssh-server; CI installs it).

sshd runs as the current user on a free port with a throwaway host key and user key in tmp. The
"device" is this machine: FACEDEPTH_ROOT=tmp/device (paths), FACEDEPTH_VENV=this repo's .venv (no
pip, nothing downloaded), FACEDEPTH_SUPERVISOR=1 (no systemd: pidfile + nohup, see deploy/install.sh).
The daemon runs the tiny test bundle (tests/test_fw_fixtures.py) on a looping replay of synthetic frames.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from convert.sign import keygen
from deploy import deploy as dp
from deploy.build_artifact import RELEASE_JSON, REPO, BuildError, build, file_hashes
from tests.test_fw_fixtures import DEV_PUB, free_port, synthetic_frames, tiny_bundle

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(SSHD).exists(), reason="no sshd (apt-get install openssh-server)"),
    pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client"),
]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"sshd did not listen on {port}")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    os.chmod(tmp / "authorized_keys", 0o600)
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    log = open(tmp / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-f", str(tmp / "sshd_config"), "-D", "-e"], stdout=log, stderr=log)
    try:
        _wait_port(port)
        yield {"port": port, "host": f"{getpass.getuser()}@127.0.0.1",
               "opts": f"-i {tmp}/user_key -o UserKnownHostsFile={tmp}/known_hosts "
                       "-o StrictHostKeyChecking=no -o LogLevel=ERROR"}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture()
def device(tmp_path, sshd, monkeypatch):
    """FACEDEPTH_* for the fake device under tmp_path/device; stops the daemon afterwards."""
    root = tmp_path / "device"
    monkeypatch.setenv("FACEDEPTH_ROOT", str(root))
    monkeypatch.setenv("FACEDEPTH_VENV", str(Path(sys.executable).parent.parent))
    monkeypatch.setenv("FACEDEPTH_SUPERVISOR", "1")
    monkeypatch.setenv("FACEDEPTH_HEALTH_TIMEOUT", "30")
    monkeypatch.setenv("FACEDEPTH_SSH_OPTS", sshd["opts"])
    yield root
    pidfile = root / "var/lib/facedepth/facedepth.pid"
    if pidfile.is_file():
        try:
            os.kill(int(pidfile.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass


TOKEN = "s3cret-status-token"


def _config(path: Path, http_port: int, source: Path, level: str = "INFO", keys=(DEV_PUB,),
            token: str = "") -> Path:
    path.write_text(
        f"camera: {{type: replay, source: {source}, loop: true, fps: 5}}\n"
        "depth: {bundle: '${FACEDEPTH_RELEASE:-/opt/facedepth/current}/bundle', "
        f"trusted_keys: [{', '.join(keys)}]}}\n"
        "outbox: {dir: '${FACEDEPTH_STATE:-/var/lib/facedepth}/outbox', fsync: false}\n"
        f"http: {{enabled: true, host: 127.0.0.1, port: {http_port}, token: '{token}'}}\n"
        f"logging: {{level: {level}}}\n"
    )
    return path


def _forge(release: Path, dest: Path) -> Path:
    """An attacker's release: a file changed and RELEASE.json's hashes rewritten to match, old signature."""
    forged = shutil.copytree(release, dest)
    (forged / "firmware_app" / "injected.py").write_text("print('pwned')\n")
    doc = json.loads((forged / RELEASE_JSON).read_text())
    doc["files"] = file_hashes(forged)
    (forged / RELEASE_JSON).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return forged


def _deploy(sshd, *extra) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "deploy.deploy", *extra, "--devices", sshd["host"],
         "--port", str(sshd["port"]), "--timeout", "5"],
        capture_output=True, text=True, cwd=REPO, timeout=180,
    )
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def _healthz(port: int, token: str = TOKEN) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(req, timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _daemon(root: Path) -> tuple[int, Path]:
    pid = int((root / "var/lib/facedepth/facedepth.pid").read_text())
    return pid, Path(os.readlink(f"/proc/{pid}/cwd"))


def test_deploy_idempotent_refuse_rollback(tmp_path, sshd, device, monkeypatch):
    bundle, frames, port = tiny_bundle(), synthetic_frames(), free_port()
    out = tmp_path / "releases"
    good = build(bundle, _config(tmp_path / "good.yaml", port, frames, token=TOKEN), out)
    app = device / "opt/facedepth"

    # 1. a fresh device, a config with http.token: installed and stays (the health check sends the token)
    code, text, _ = _deploy(sshd, "deploy", "--release", str(good))
    assert code == 0, text
    assert "installed" in text
    assert (app / "current").resolve() == (app / "releases" / good.name).resolve()
    pid, cwd = _daemon(device)
    assert cwd == (app / "releases" / good.name).resolve()
    assert _healthz(port) == 200 and _healthz(port, "wrong") == 401
    assert (device / "var/lib/facedepth/outbox").is_dir()

    # 2. the same version again: nothing changes (same daemon, same link)
    link_mtime = os.lstat(app / "current").st_mtime_ns
    code, text, _ = _deploy(sshd, "deploy", "--release", str(good))
    assert code == 0 and "unchanged" in text, text
    assert _daemon(device)[0] == pid and os.lstat(app / "current").st_mtime_ns == link_mtime

    # 3. a release whose bundle no longer matches RELEASE.json: refused on the device, nothing switched
    bad = build(bundle, _config(tmp_path / "bad.yaml", port, frames, level="DEBUG"), out)
    with open(bad / "bundle" / "depth.tflite", "ab") as f:
        f.write(b"\0")
    code, text, _ = _deploy(sshd, "deploy", "--release", str(bad))
    assert code == 1 and "refused" in text and "sha256 mismatch" in text, text
    assert (app / "current").resolve() == (app / "releases" / good.name).resolve()
    assert _daemon(device)[0] == pid and _healthz(port) == 200

    # 3b. files and RELEASE.json rewritten together (hashes match): the signature does not, refused
    forged = _forge(good, tmp_path / "forged" / f"{good.name}-x")
    code, text, _ = _deploy(sshd, "deploy", "--release", str(forged))
    assert code == 1 and "refused" in text and "not signed by a key" in text, text
    # 3c. signed by another key, with a config that trusts it: the RUNNING release decides, refused
    keygen(tmp_path / "attacker")
    monkeypatch.setenv("FACEDEPTH_SIGNING_KEY", str(tmp_path / "attacker" / "signing.key"))
    evil_keys = ((tmp_path / "attacker" / "signing.pub").read_text().strip(),)
    evil = build(bundle, _config(tmp_path / "evil.yaml", port, frames, keys=evil_keys + (DEV_PUB,),
                                 token=TOKEN), tmp_path / "evil")
    monkeypatch.delenv("FACEDEPTH_SIGNING_KEY")
    code, text, _ = _deploy(sshd, "deploy", "--release", str(evil))
    assert code == 1 and "not signed by a key" in text, text
    assert (app / "current").resolve() == (app / "releases" / good.name).resolve()
    assert _daemon(device)[0] == pid and _healthz(port) == 200

    # 3d. a second good release: installed, the first one becomes <app>/previous
    good2 = build(bundle, _config(tmp_path / "good2.yaml", port, frames, level="DEBUG", token=TOKEN), out)
    code, text, _ = _deploy(sshd, "deploy", "--release", str(good2))
    assert code == 0 and "installed" in text, text
    pid = _daemon(device)[0]

    # 4. a release whose daemon never gets frames: rolled back, the old release serves again
    empty = tmp_path / "no-frames"
    empty.mkdir()
    monkeypatch.setenv("FACEDEPTH_HEALTH_TIMEOUT", "10")
    sick = build(bundle, _config(tmp_path / "sick.yaml", port, empty, token=TOKEN), out)
    code, text, _ = _deploy(sshd, "deploy", "--release", str(sick))
    assert code == 1 and "rolled-back" in text and "health check failed" in text, text
    assert (app / "current").resolve() == (app / "releases" / good2.name).resolve()
    new_pid, cwd = _daemon(device)
    assert new_pid != pid and cwd == (app / "releases" / good2.name).resolve()
    assert _healthz(port) == 200

    # 5. `make rollback` after the automatic one: back to the release before good2
    code, text, _ = _deploy(sshd, "rollback")
    assert code == 0, text
    assert (app / "current").resolve() == (app / "releases" / good.name).resolve()
    assert _healthz(port) == 200

    # status over ssh names the current release
    code, text, _ = _deploy(sshd, "status")
    assert code == 0 and good.name in text and "healthy" in text, text


def test_tampered_bundle_refused_before_upload(tmp_path):
    bundle = shutil.copytree(tiny_bundle(), tmp_path / "bundle")
    data = bytearray((bundle / "depth.tflite").read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    (bundle / "depth.tflite").write_bytes(bytes(data))
    config = _config(tmp_path / "c.yaml", 8321, tmp_path)
    with pytest.raises(BuildError) as e:
        build(bundle, config, tmp_path / "out")
    assert e.value.code == 3 and "sha256 mismatch" in str(e.value) and str(bundle) in str(e.value)
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


def test_version_changes_iff_content_changes(tmp_path):
    bundle, config = tiny_bundle(), _config(tmp_path / "c.yaml", 8321, tmp_path)
    a = build(bundle, config, tmp_path / "a")
    b = build(bundle, config, tmp_path / "b")
    assert a.name == b.name and a.name.startswith("test-tiny-")
    release = json.loads((a / "RELEASE.json").read_text())
    assert "firmware_app/__main__.py" in release["files"] and "bundle/manifest.json" in release["files"]
    assert {"requirements/device.txt", "requirements/device-fallback.txt"} <= set(release["files"])
    assert not any("__pycache__" in p for p in release["files"])
    c = build(bundle, _config(tmp_path / "c2.yaml", 8322, tmp_path), tmp_path / "c")
    assert c.name != a.name


def test_unreachable_host_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEDEPTH_SSH_OPTS", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
    t = dp.Target("root@127.0.0.1", free_port(), 3)  # nothing listens there
    t0 = time.monotonic()
    r = dp.deploy_one(t, tmp_path)
    assert r.result == "unreachable" and "cannot reach root@127.0.0.1" in r.detail
    assert time.monotonic() - t0 < 10


def test_unit_verifies():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("no systemd-analyze")
    unit = (REPO / "deploy" / "facedepth.service").read_text()
    # ExecStart must exist for verify; everything else is checked as shipped.
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"facedepth-verify-{os.getpid()}.service"
    tmp.write_text(unit.replace("/opt/facedepth/venv/bin/python", sys.executable))
    try:
        r = subprocess.run([tool, "verify", str(tmp)], capture_output=True, text=True)
    finally:
        tmp.unlink()
    assert r.returncode == 0, r.stderr

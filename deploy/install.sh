#!/bin/sh
# facedepth on-device installer. Shipped inside each release; run ON the device (deploy.py does it over
# ssh):   sh <app>/releases/<version>/install.sh [--install | --status | --logs | --rollback | --stop]
#
# --install (default), idempotent:
#   1. verify every sha256 in this release's RELEASE.json and its Ed25519 signature RELEASE.json.sig
#      (refuse before touching anything else). The signature must verify with a key in the RUNNING
#      release's config (depth.trusted_keys), checked by the running release's code: a release cannot
#      vouch for itself. A first install (or an upgrade from a release without signing) trusts the keys
#      of the new release's own config, and says so;
#   2. system user `facedepth` (only as root without FACEDEPTH_ROOT), state + outbox directories;
#   3. the venv <app>/venv (--system-site-packages on Raspberry Pi OS / Jetson so apt's
#      python3-picamera2 / JetPack OpenCV are visible), requirements/device.txt, falling back to
#      requirements/device-fallback.txt (tflite-runtime, numpy 1.x) where ai-edge-litert has no wheel;
#   4. if <app>/current already is this release and /healthz answers: print "unchanged", exit 0;
#   5. atomic switch of <app>/current (ln -s + mv -T), the old target kept as <app>/previous;
#   6. (re)start: systemd when running, else the supervisor mode below;
#   7. poll /healthz until frames flow (FACEDEPTH_HEALTH_TIMEOUT s, default 60), with the config's
#      http.token when it has one (read by Python from the config, never put on a command line); on
#      failure switch back to the previous release, restart it, keep <app>/previous pointing where it
#      pointed before (so `make rollback` still works), and exit 1 with the reason.
#
# Paths: <app> = /opt/facedepth, <state> = /var/lib/facedepth. FACEDEPTH_ROOT=DIR makes them
#   DIR/opt/facedepth and DIR/var/lib/facedepth (tests, or a non-root trial on a board).
# Test mode (CI, no downloads): FACEDEPTH_VENV=DIR uses an existing venv as-is (no pip at all);
#   FACEDEPTH_PIP_OFFLINE=1 makes pip use only the local cache / FACEDEPTH_PIP_FIND_LINKS.
# Supervisor mode (no systemd, or FACEDEPTH_SUPERVISOR=1): `python -m firmware_app run` under
#   setsid + nohup, pid in <state>/facedepth.pid, log in <state>/daemon.log. Stop = SIGTERM, then
#   SIGKILL after 15 s. No restart-on-crash: that is systemd's job on a real device.
# Exit: 0 ok/unchanged, 1 health check failed (rolled back), 2 bad release (nothing switched), 3 setup.
set -eu

RELEASE=$(cd "$(dirname "$0")" && pwd -P)
VERSION=$(basename "$RELEASE")
APP=${FACEDEPTH_ROOT:+$FACEDEPTH_ROOT}/opt/facedepth
STATE=${FACEDEPTH_ROOT:+$FACEDEPTH_ROOT}/var/lib/facedepth
VENV=${FACEDEPTH_VENV:-$APP/venv}
PY=$VENV/bin/python
HEALTH_TIMEOUT=${FACEDEPTH_HEALTH_TIMEOUT:-60}
ENV_FILE=${FACEDEPTH_ROOT:+$FACEDEPTH_ROOT}/etc/default/facedepth  # the unit's EnvironmentFile (secrets)
ACTION=${1:---install}
cd /  # python -m / -c put the working directory first on sys.path: never the login directory's files

say() { echo "install[$VERSION]: $*" >&2; }
die() { code=$1; shift; say "ERROR: $*"; exit "$code"; }

use_systemd() {
    [ -z "${FACEDEPTH_SUPERVISOR:-}" ] && [ -z "${FACEDEPTH_ROOT:-}" ] && [ -d /run/systemd/system ] \
        && command -v systemctl >/dev/null 2>&1
}

verify_release() {
    # Python is on every supported board (Raspberry Pi OS, JetPack); sha256sum would do as well.
    python3 - "$RELEASE" <<'EOF' || die 2 "release $RELEASE refused: hash check failed, nothing was switched"
import hashlib, json, sys
from pathlib import Path
root = Path(sys.argv[1])
try:
    files = json.loads((root / "RELEASE.json").read_text())["files"]
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"RELEASE.json unreadable: {e}")
bad = []
for name, want in files.items():
    p = root / name
    if ".." in Path(name).parts or not p.is_file():
        bad.append(f"{name}: missing")
    elif hashlib.sha256(p.read_bytes()).hexdigest() != want:
        bad.append(f"{name}: sha256 mismatch")
for b in bad:
    print(f"  {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

verify_signature() {  # $1 = the release whose code and config decide (the running one, or this one)
    if FACEDEPTH_RELEASE=$1 FACEDEPTH_STATE=$STATE PYTHONPATH=$1 "$PY" -m firmware_app.signing \
        "$RELEASE/RELEASE.json" --config "$1/config.yaml" >/dev/null; then
        say "signature verified with the keys of $(basename "$1")"
        return 0
    fi
    die 2 "release $RELEASE refused: RELEASE.json is not signed by a key $(basename "$1")'s config trusts (sign with the operator's key: FACEDEPTH_SIGNING_KEY=... make deploy), nothing was switched"
}

running_release() {  # the current release, if it can check signatures itself
    cur=$(readlink "$APP/current" 2>/dev/null || true)
    if [ -n "$cur" ] && [ -f "$cur/firmware_app/signing.py" ] && [ -x "$PY" ]; then echo "$cur"; fi
}

setup_dirs() {
    if [ "$(id -u)" = 0 ] && [ -z "${FACEDEPTH_ROOT:-}" ]; then
        if ! id facedepth >/dev/null 2>&1; then
            useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin facedepth
        fi
        for g in video gpio; do  # the unit's SupplementaryGroups must exist (no gpio group on a Jetson)
            getent group "$g" >/dev/null 2>&1 || groupadd --system "$g"
            usermod -aG "$g" facedepth
        done
    fi
    mkdir -p "$APP/releases" "$STATE/outbox"
    if [ "$(id -u)" = 0 ] && [ -z "${FACEDEPTH_ROOT:-}" ]; then
        chown -R facedepth: "$STATE"
    fi
}

setup_venv() {
    if [ -n "${FACEDEPTH_VENV:-}" ]; then
        [ -x "$PY" ] || die 3 "FACEDEPTH_VENV=$FACEDEPTH_VENV has no bin/python"
        return 0
    fi
    if [ ! -x "$PY" ]; then
        site=""
        if [ -f /etc/rpi-issue ] || [ -f /etc/nv_tegra_release ]; then site=--system-site-packages; fi
        python3 -m venv $site "$VENV" || die 3 "python3 -m venv failed (apt install python3-venv)"
    fi
    set -- --disable-pip-version-check -q
    if [ -n "${FACEDEPTH_PIP_OFFLINE:-}" ]; then
        set -- "$@" --no-index ${FACEDEPTH_PIP_FIND_LINKS:+--find-links "$FACEDEPTH_PIP_FIND_LINKS"}
    fi
    if ! "$PY" -m pip install "$@" -r "$RELEASE/requirements/device.txt"; then
        say "ai-edge-litert not installable here; trying tflite-runtime (built for numpy 1.x)"
        # tflite-runtime 2.14 needs numpy<2 and an OpenCV built for it: pinned, and tested by make arm-check
        "$PY" -m pip install "$@" -r "$RELEASE/requirements/device-fallback.txt" || die 3 "pip install failed"
    fi
}

http_port() {
    FACEDEPTH_RELEASE=$1 FACEDEPTH_STATE=$STATE PYTHONPATH=$1 "$PY" -c \
        'import sys; from firmware_app.config import load_config; c = load_config(sys.argv[1]).http
print(c.port if c.enabled else 0)' "$1/config.yaml"
}

healthy_once() {  # $1 = release dir. The token is read from its config here, never passed as an argument
    FACEDEPTH_RELEASE=$1 FACEDEPTH_STATE=$STATE PYTHONPATH=$1 "$PY" - "$1/config.yaml" "$ENV_FILE" <<'EOF'
import os, sys, urllib.request
try:  # ${NAME} in the config may come from the unit's EnvironmentFile (KEY=VALUE lines)
    for line in open(sys.argv[2]):
        k, sep, v = line.strip().partition("=")
        if sep and not k.startswith("#"):
            os.environ.setdefault(k.strip(), v.strip().strip("'\""))
except OSError:
    pass
try:
    from firmware_app.config import load_config
    c = load_config(sys.argv[1]).http
    host = "127.0.0.1" if c.host in ("0.0.0.0", "::", "", "localhost") else c.host
    host = f"[{host}]" if ":" in host else host
    req = urllib.request.Request(f"http://{host}:{c.port}/healthz")
    if c.token:
        req.add_header("Authorization", f"Bearer {c.token}")
    sys.exit(0 if urllib.request.urlopen(req, timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

sup_pid() { cat "$STATE/facedepth.pid" 2>/dev/null || true; }
sup_alive() { p=$(sup_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

stop_service() {
    if use_systemd; then systemctl stop facedepth.service || true; return 0; fi
    p=$(sup_pid)
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null || true
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.5; i=$((i + 1)); done
    kill -9 "$p" 2>/dev/null || true
    rm -f "$STATE/facedepth.pid"
}

start_service() {
    if use_systemd; then
        sed -e "s#/opt/facedepth#$APP#g" -e "s#/var/lib/facedepth#$STATE#g" "$APP/current/facedepth.service" \
            > /etc/systemd/system/facedepth.service.tmp
        mv /etc/systemd/system/facedepth.service.tmp /etc/systemd/system/facedepth.service
        systemctl daemon-reload
        systemctl enable facedepth.service >/dev/null 2>&1 || true
        systemctl restart facedepth.service
        return 0
    fi
    stop_service
    cur=$(cd "$APP/current" && pwd -P)
    cd "$cur"
    FACEDEPTH_RELEASE=$cur FACEDEPTH_STATE=$STATE PYTHONPATH=$cur \
        setsid nohup "$PY" -m firmware_app run --config "$cur/config.yaml" \
        </dev/null >>"$STATE/daemon.log" 2>&1 &
    echo $! > "$STATE/facedepth.pid"
    cd /
}

wait_healthy() {  # $1 = release dir; 0 when /healthz says frames flow
    port=$(http_port "$1") || { say "cannot read the http port from $1/config.yaml"; return 1; }
    [ "$port" != 0 ] || { say "http disabled in the config: no health check possible"; return 1; }
    end=$(( $(date +%s) + HEALTH_TIMEOUT ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if healthy_once "$1"; then return 0; fi
        if ! use_systemd && ! sup_alive; then say "the daemon exited (see $STATE/daemon.log)"; return 1; fi
        sleep 1
    done
    say "no frames on http://127.0.0.1:$port/healthz within ${HEALTH_TIMEOUT}s"
    return 1
}

switch_to() {  # atomic: a new symlink renamed over the old one
    ln -sfn "$1" "$APP/.current.tmp"
    mv -T "$APP/.current.tmp" "$APP/current"
}

do_install() {
    verify_release
    judge=$(running_release)
    [ -z "$judge" ] || verify_signature "$judge"
    setup_dirs
    setup_venv
    if [ -z "$judge" ]; then
        say "first install (or from a release without signatures): trusting this release's own keys"
        verify_signature "$RELEASE"
    fi
    old=""
    [ -L "$APP/current" ] && old=$(readlink "$APP/current")
    older=""
    [ -L "$APP/previous" ] && older=$(readlink "$APP/previous")
    if [ "$old" = "$RELEASE" ] && { use_systemd || sup_alive; } && healthy_once "$RELEASE"; then
        say "unchanged: $VERSION is current and healthy"
        echo "unchanged $VERSION"
        return 0
    fi
    switch_to "$RELEASE"
    if [ -n "$old" ] && [ "$old" != "$RELEASE" ]; then
        ln -sfn "$old" "$APP/.previous.tmp" && mv -T "$APP/.previous.tmp" "$APP/previous"
    fi
    start_service
    if wait_healthy "$RELEASE"; then
        say "installed and healthy"
        echo "installed $VERSION"
        return 0
    fi
    reason="health check failed for $VERSION"
    if [ -n "$old" ] && [ "$old" != "$RELEASE" ] && [ -d "$old" ]; then
        say "$reason; rolling back to $(basename "$old")"
        switch_to "$old"
        if [ -n "$older" ] && [ "$older" != "$RELEASE" ] && [ -d "$older" ]; then  # as before this install
            ln -sfn "$older" "$APP/.previous.tmp" && mv -T "$APP/.previous.tmp" "$APP/previous"
        else
            rm -f "$APP/previous"
        fi
        start_service
        wait_healthy "$old" || reason="$reason; the rolled-back $(basename "$old") is not healthy either"
        echo "rolled-back $(basename "$old")"
    else
        stop_service
    fi
    die 1 "$reason"
}

do_rollback() {
    [ -L "$APP/previous" ] || die 2 "no previous release recorded in $APP/previous"
    prev=$(readlink "$APP/previous")
    cur=$(readlink "$APP/current")
    switch_to "$prev"
    ln -sfn "$cur" "$APP/.previous.tmp" && mv -T "$APP/.previous.tmp" "$APP/previous"
    start_service
    wait_healthy "$prev" || die 1 "rolled back to $(basename "$prev") but it is not healthy"
    echo "rolled-back $(basename "$prev")"
}

do_status() {
    cur=$(readlink "$APP/current" 2>/dev/null || echo none)
    state=down
    if [ "$cur" != none ] && healthy_once "$cur"; then state=healthy; fi
    echo "current $(basename "$cur") $state"
}

do_logs() {
    if use_systemd; then journalctl -u facedepth.service -n 100 --no-pager; else tail -n 100 "$STATE/daemon.log"; fi
}

case "$ACTION" in
    --install) do_install ;;
    --rollback) do_rollback ;;
    --status) do_status ;;
    --logs) do_logs ;;
    --stop) stop_service ;;
    *) die 2 "unknown action $ACTION (--install, --status, --logs, --rollback, --stop)" ;;
esac

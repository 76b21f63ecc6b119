#!/bin/sh
# A throwaway OpenSSH server on 127.0.0.1:PORT (default 2222) that is "the device" for `make deploy`
# on this machine (README "No board at hand?"). Same recipe as tests/test_deploy.py: a host key and a
# client key made here, your key as the only authorized key, no passwords, no PAM.
#
#   sh deploy/loopback-sshd.sh [PORT]             start it (in the background); prints what to export
#   kill "$(cat out/loopback-sshd/sshd.pid)"      stop it
#
# Needs /usr/sbin/sshd (apt-get install openssh-server). As root it accepts root@127.0.0.1; as another
# user it accepts that user (then install.sh needs passwordless sudo, or FACEDEPTH_ROOT=DIR).
set -eu
PORT=${1:-2222}
DIR=$(pwd -P)/out/loopback-sshd
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$SSHD" ] || { echo "no sshd: apt-get install openssh-server" >&2; exit 3; }
mkdir -p "$DIR"
for k in host_key user_key; do
    [ -f "$DIR/$k" ] || ssh-keygen -q -t ed25519 -N "" -f "$DIR/$k"
done
cp "$DIR/user_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
CONF
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi  # privilege separation dir
"$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
echo "sshd on 127.0.0.1:$PORT (log $DIR/sshd.log, stop: kill \$(cat $DIR/sshd.pid)). Then:"
echo "  export FACEDEPTH_SSH_OPTS=\"-i $DIR/user_key -o UserKnownHostsFile=$DIR/known_hosts\""
echo "  make deploy DEVICE=$(id -un)@127.0.0.1 PORT=$PORT CONFIG=deploy/loopback.example.yaml"

#!/usr/bin/env bash
# The cost of remote pipes through ssh: npipe's route (\\HOST\pipe\NAME, ssh running
# `npipe bridge` on HOST) against plain `ssh -L LOCAL.sock:REMOTE.sock` forwarding of
# the same raw Unix socket, measured by benches/examples/remote_cost.rs in one run.
#
#   sudo bash benches/remote-cost.sh [ROUNDS]     # default 5 rounds, about 30 s
#
# "HOST" is this machine: an sshd started here on a spare port of 127.0.0.1 only,
# with keys generated for the run (root logs in with a key; needs openssh-server).
# Both routes use the same ssh command, config, keys and ciphers (OpenSSH's
# defaults). Everything is stopped and removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "run as root (sshd, and ssh logs in as root)" >&2; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "install openssh-server" >&2; exit 1; }

cargo build --release -q -p npipe-cli --bin npipe
cargo build --release -q -p npipe-bench --example remote_cost

dir="$(mktemp -d /tmp/npipe-remote-cost.XXXXXX)"
sshd_pid=""
cleanup() {
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key"
cp "$dir/user_key.pub" "$dir/authorized_keys"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
EOF
cat > "$dir/ssh_config" <<EOF
Host npipe-bench
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $dir/user_key
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking accept-new
  BatchMode yes
  LogLevel ERROR
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>>"$dir/sshd.log" &
sshd_pid=$!
for _ in $(seq 200); do
    ssh -F "$dir/ssh_config" npipe-bench true 2>/dev/null && break
    sleep 0.05
done

echo "OpenSSH: $(ssh -V 2>&1); cipher: $(ssh -F "$dir/ssh_config" -G npipe-bench | awk '/^ciphers /{print $2}' | cut -d, -f1) (OpenSSH's default order)" >&2
echo "machine: $(nproc) CPUs, $(uname -sr), load $(cut -d' ' -f1 /proc/loadavg) at start" >&2
NPIPE_SSH="ssh -F $dir/ssh_config" NPIPE_REMOTE_NPIPE="$PWD/target/release/npipe" \
    ./target/release/examples/remote_cost npipe-bench "$rounds"

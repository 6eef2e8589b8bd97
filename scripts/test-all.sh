#!/usr/bin/env bash
# Runs every test npipe has, on a fresh machine: installs what the tests need, then
#   1. formatting, clippy (-D warnings) and rustdoc (-D warnings),
#   2. the Linux suite: every crate, every feature (unit, integration, doc tests,
#      real processes, another user via setpriv, Python peers, the real `npipe` binary,
#      remote pipes through a real sshd on 127.0.0.1),
#   3. the Windows suite: cross-compiled for x86_64-pc-windows-gnu, run under Wine.
# Under CI=true no test skips itself: what a test needs is installed here, or it fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

t0=$SECONDS
step() { printf '\n== [%4ds] %s\n' "$((SECONDS - t0))" "$*"; }

need_pkgs=()
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)
# Socket activation tests: a socket manager that needs no running systemd.
command -v systemd-socket-activate >/dev/null || need_pkgs+=(systemd)
# The remote-pipe tests run a real sshd on 127.0.0.1 and log in through ssh.
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v useradd >/dev/null || need_pkgs+=(passwd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    step "installing ${need_pkgs[*]}"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    else
        echo "missing ${need_pkgs[*]} and not root to install them" >&2
        exit 1
    fi
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (Linux, all features; the library without features)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo clippy -p npipe --lib -- -D warnings

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "Linux test suite"
cargo test --workspace --all-features

step "Windows test suite under Wine"
bash .ci/windows/test.sh

step "all suites passed in $((SECONDS - t0)) s"

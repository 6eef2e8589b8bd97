#!/usr/bin/env bash
# Prepare this (Debian 12, root) machine to run Rust test binaries for
# x86_64-pc-windows-gnu under Wine, headless. Idempotent: a rerun only checks.
#
#   bash .ci/windows/setup.sh          # install + prefix + shim + smoke test
#   source .ci/windows/env.sh
#   cargo test --target x86_64-pc-windows-gnu
#   wineserver -k                      # optional: stop the persistent server
#
# Steps: apt packages (wine, wine64, mingw-w64 gcc) -> rustup target ->
# build bcryptprimitives.dll shim (Wine 8 lacks ProcessPrng, Rust >= 1.78 std
# needs it) -> create the Wine prefix under the target dir -> copy the shim
# into its system32 -> start a persistent wineserver -> smoke test.
set -euo pipefail

TARGET=x86_64-pc-windows-gnu
APT_PACKAGES=(wine wine64 gcc-mingw-w64-x86-64)
# How long the persistent wineserver lingers after its last client exits.
WINESERVER_LINGER="${NPIPE_WINESERVER_LINGER:-900}"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$script_dir/env.sh"

t0=$SECONDS
log() { printf '[windows-setup %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
die() { printf '[windows-setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages ------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
    log "apt: installing ${missing[*]} (apt-get update first)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    log "apt: done"
else
    log "apt: ${APT_PACKAGES[*]} already installed"
fi
command -v wine >/dev/null || die "wine not on PATH after install"
command -v x86_64-w64-mingw32-gcc >/dev/null || die "x86_64-w64-mingw32-gcc not on PATH"
if command -v wineserver >/dev/null; then
    WINESERVER=wineserver
elif [ -x /usr/lib/wine/wineserver64 ]; then
    WINESERVER=/usr/lib/wine/wineserver64
else
    die "wineserver not found"
fi

# --- 2. Rust target ----------------------------------------------------------
if rustup target list --installed | grep -x "$TARGET" >/dev/null; then
    log "rustup: $TARGET already installed"
else
    log "rustup: adding $TARGET"
    rustup target add "$TARGET"
fi

# --- 3. bcryptprimitives.dll shim --------------------------------------------
shim_src="$NPIPE_CI_WINDOWS_DIR/bcryptprimitives.c"
shim_dir="$NPIPE_CI_TARGET_DIR/wine-shim"
shim_dll="$shim_dir/bcryptprimitives.dll"
mkdir -p "$shim_dir"
if [ ! -f "$shim_dll" ] || [ "$shim_src" -nt "$shim_dll" ]; then
    log "shim: building $shim_dll"
    x86_64-w64-mingw32-gcc -shared -O2 -s -Wall -Werror \
        -o "$shim_dll" "$shim_src" -ladvapi32
    # grep without -q reads all its input: with -q it may exit first, and
    # objdump's SIGPIPE would fail the pipeline under pipefail.
    x86_64-w64-mingw32-objdump -p "$shim_dll" | grep -w ProcessPrng >/dev/null \
        || die "shim does not export ProcessPrng"
else
    log "shim: up to date"
fi

# --- 4. Wine prefix ----------------------------------------------------------
prefix_marker="$WINEPREFIX/.npipe-ci-prefix-ready"
if [ -f "$prefix_marker" ]; then
    log "wine: prefix ready at $WINEPREFIX"
else
    log "wine: initialising prefix $WINEPREFIX ($(wine --version))"
    # A half-made prefix from an interrupted run: start over.
    "$WINESERVER" -k 2>/dev/null || true
    rm -rf "$WINEPREFIX"
    mkdir -p "$(dirname "$WINEPREFIX")"
    wine wineboot --init >/dev/null 2>&1 || die "wine wineboot --init failed"
    "$WINESERVER" -w
    [ -d "$WINEPREFIX/drive_c/windows/system32" ] || die "prefix has no system32"
    touch "$prefix_marker"
    log "wine: prefix initialised"
fi

# --- 5. install the shim into system32 ---------------------------------------
sys32="$WINEPREFIX/drive_c/windows/system32"
if cmp -s "$shim_dll" "$sys32/bcryptprimitives.dll"; then
    log "shim: already in $sys32"
else
    cp -f "$shim_dll" "$sys32/bcryptprimitives.dll"
    log "shim: installed into $sys32"
fi

# --- 6. persistent wineserver + Wine system processes ------------------------
# The first Wine process of a server session starts services.exe, winedevice,
# plugplay, svchost; they live as long as the wineserver and keep the *stderr*
# of whoever started them. So the persistent server and that first process are
# started here with all stdio on /dev/null: otherwise a pipe (`cargo test | tee`,
# `$(...)`, a CI log pipe) would stay open until the server exits.
# -p<n>: the server stays up while test binaries come and go (saves ~1 s and the
# services start-up per exe), and exits on its own <n> s after the last Wine
# user process ends. Already running for this prefix -> nothing new started.
"$WINESERVER" -p"$WINESERVER_LINGER" </dev/null >/dev/null 2>&1 || true
wine cmd /c exit 0 </dev/null >/dev/null 2>&1 || die "wine cannot start a process"
log "wine: persistent wineserver up (lingers ${WINESERVER_LINGER}s idle; stop: wineserver -k)"

# --- 7. smoke test: ProcessPrng resolvable and working under Wine ------------
smoke_exe="$shim_dir/smoke.exe"
if [ ! -f "$smoke_exe" ] || [ "$shim_src" -nt "$smoke_exe" ]; then
    cat > "$shim_dir/smoke.c" <<'C'
#include <windows.h>
#include <stdio.h>
#include <string.h>
typedef BOOL (WINAPI *prng_fn)(PBYTE, SIZE_T);
int main(void) {
    HMODULE m = LoadLibraryA("bcryptprimitives.dll");
    prng_fn f = m ? (prng_fn)GetProcAddress(m, "ProcessPrng") : NULL;
    unsigned char a[32] = {0}, b[32] = {0};
    if (!f) { puts("ProcessPrng not found"); return 2; }
    if (!f(a, sizeof a) || !f(b, sizeof b) || memcmp(a, b, sizeof a) == 0) {
        puts("ProcessPrng gave no randomness"); return 3;
    }
    puts("ok");
    return 0;
}
C
    x86_64-w64-mingw32-gcc -O2 -s -o "$smoke_exe" "$shim_dir/smoke.c"
fi
# Output to a file, not a pipe (see step 6).
smoke_out="$shim_dir/smoke.out"
if wine "$smoke_exe" </dev/null >"$smoke_out" 2>&1 && [ "$(tr -d '\r' <"$smoke_out")" = "ok" ]; then
    log "smoke: ProcessPrng works under Wine"
else
    die "smoke test failed: $(cat "$smoke_out")"
fi

log "ready. Now: source .ci/windows/env.sh && cargo test --target $TARGET"

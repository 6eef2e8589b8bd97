# shellcheck shell=bash
# Source this (bash) to run `cargo test --target x86_64-pc-windows-gnu` under
# Wine, headless. Run .ci/windows/setup.sh once first (it sources this too).
#
#   source .ci/windows/env.sh
#   cargo test --target x86_64-pc-windows-gnu
#
# Honours a pre-set CARGO_TARGET_DIR (the Wine prefix lives inside it) and a
# pre-set NPIPE_WINEPREFIX. Safe to source under `set -euo pipefail`.

_npipe_ci_win_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_npipe_ci_root="$(cd "$_npipe_ci_win_dir/../.." && pwd)"

# Target dir: $CARGO_TARGET_DIR (made absolute) or <repo>/target.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case "$CARGO_TARGET_DIR" in
        /*) _npipe_ci_target="$CARGO_TARGET_DIR" ;;
        *)  _npipe_ci_target="$PWD/$CARGO_TARGET_DIR" ;;
    esac
else
    _npipe_ci_target="$_npipe_ci_root/target"
fi

export NPIPE_CI_WINDOWS_DIR="$_npipe_ci_win_dir"
export NPIPE_CI_TARGET_DIR="$_npipe_ci_target"

# Cargo: link with Debian's mingw-w64, run test binaries through wine.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine

# Wine: 64-bit prefix under the target dir, quiet, no Mono/Gecko prompts,
# no desktop integration, no X display (fully headless).
export WINEARCH=win64
export WINEPREFIX="${NPIPE_WINEPREFIX:-$_npipe_ci_target/wineprefix}"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
unset DISPLAY WAYLAND_DISPLAY

unset _npipe_ci_win_dir _npipe_ci_root _npipe_ci_target

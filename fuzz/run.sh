#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60 s each) and prints, per target, how
# many inputs it ran. Needs the nightly toolchain and cargo-fuzz (installed if missing).
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 600        # 10 minutes per target
#   fuzz/run.sh 60 name_parser
#
# A crash stops the run with the input saved under fuzz/artifacts/TARGET/; replay it
# with `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`, then turn it
# into a regression test (see SECURITY.md) before fixing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder name_parser server_bytes)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# The name target checks paths under the default directory /tmp.
unset NPIPE_DIR

cargo +nightly fuzz build -O

declare -A max_len=([frame_decoder]=4096 [name_parser]=512 [server_bytes]=4096)
summary=()
for target in "${targets[@]}"; do
    log=$(mktemp)
    echo "== $target: ${seconds} s"
    mkdir -p "corpus/$target"
    if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len="${max_len[$target]:-4096}" \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "FAILED: $target (see fuzz/artifacts/$target/)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    summary+=("$target: ${runs:-?} inputs in ${seconds} s, no crash")
    rm -f "$log"
done
printf '%s\n' "${summary[@]}"

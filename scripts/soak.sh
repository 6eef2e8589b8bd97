#!/usr/bin/env bash
# The full load and soak test: 1,000 clients connected at once to one npipe::Server
# in another process, then 1,000,000 requests, every reply checked; the server's
# open descriptors and resident memory are sampled after a warm-up round and at the
# end (no growth beyond noise). Prints one summary line:
#
#   soak: 1000 concurrent clients, 1000000 of 1000000 replies verified in ... s (... req/s);
#         server fds start N end N; server RSS start N KiB end N KiB (+N KiB)
#
#   scripts/soak.sh                      # 1,000 clients, 1,000,000 requests
#   scripts/soak.sh 200 100000           # CLIENTS REQUESTS
#
# The shortened variant (100 clients, 50,000 requests) runs with the normal tests:
#   cargo test -p npipe --features tokio --test tests hardening::soak_100
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NPIPE_SOAK_CLIENTS=${1:-1000}
export NPIPE_SOAK_REQUESTS=${2:-1000000}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Release build: the figures are about npipe, not about debug assertions.
if ! cargo test --release -p npipe --features tokio --test tests \
    hardening::soak_1000_concurrent_clients_1000000_requests -- \
    --ignored --exact --nocapture >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "soak FAILED"
    exit 1
fi
grep -m1 '^soak: ' "$log"

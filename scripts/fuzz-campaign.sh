#!/usr/bin/env bash
# The fuzz campaign beyond CI: one of busbar-fuzz's loops over a range of
# seeds, one summary line per seed (the command, then its totals line).
#
#   scripts/fuzz-campaign.sh sockets|rings [FIRST_SEED [LAST_SEED]]
#
# Defaults: seeds 1 to 20; 1,000,000 frames (sockets) or 10,000,000 ring
# steps (rings) per seed, set with CASES and RING_STEPS. FUZZ names a
# busbar-fuzz binary to use (else it is built here). A failing seed prints
# its FAIL lines (each names the batch or episode to --replay) and makes
# the exit status 1; the other seeds still run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: fuzz-campaign.sh sockets|rings [FIRST_SEED [LAST_SEED]]}
first=${2:-1}
last=${3:-20}
case "$mode" in
    sockets) flags=(--cases "${CASES:-1000000}") ;;
    rings) flags=(--rings "${RING_STEPS:-10000000}") ;;
    *) echo "usage: fuzz-campaign.sh sockets|rings [FIRST_SEED [LAST_SEED]]" >&2; exit 2 ;;
esac
fuzz=${FUZZ:-}
if [ -z "$fuzz" ]; then
    cargo build --release --locked -p busbar-tests --bin busbar-fuzz
    fuzz=target/release/busbar-fuzz
fi
status=0
for seed in $(seq "$first" "$last"); do
    out=$("$fuzz" "${flags[@]}" --seed "$seed" --quiet) || status=1
    grep '^FAIL' <<<"$out" || true
    echo "busbar-fuzz ${flags[*]} --seed $seed: $(tail -n 1 <<<"$out")"
done
exit "$status"

#!/usr/bin/env bash
# Instructions per request, device side, for every engine and chain shape:
# the `instr` probe under `valgrind --tool=callgrind`, counting only inside
# the device-side batch functions, divided by the requests served. The
# count repeats exactly run to run (it does not depend on machine load).
#
#   benches/instructions.sh [batches]      (default 50 full-ring batches)
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-50}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p virtio-bench --example instr
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
probe="$target/release/examples/instr"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-14s %-10s %14s\n' engine shape instr/request
for shape in 1-desc 4-desc indirect; do
    for engine in ours-split ours-packed virtio-queue; do
        served=$(valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
            --toggle-collect='*device_batch*' "$probe" "$engine" "$shape" "$batches" 2>"$out/log" |
            sed -n 's/^served //p')
        collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log")
        awk -v e="$engine" -v s="$shape" -v c="$collected" -v n="$served" \
            'BEGIN { printf "%-14s %-10s %14.1f\n", e, s, c / n }'
    done
done

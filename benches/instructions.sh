#!/usr/bin/env bash
# Instructions per request, device side: the `instr` probe under
# `valgrind --tool=callgrind`, counting only inside the device-side batch
# functions (--toggle-collect), divided by the requests served. Queue size
# 256, full-ring batches, identical ring bytes for every engine. The count
# repeats exactly run to run (it does not depend on machine load or CPU
# model beyond the instruction set).
#
# For every shape: our split and packed engines at chain capacities 4, 16
# and 64, over one `Region` and over a `MultiRegion<8>` holding that one
# region; rust-vmm virtio-queue over vm-memory (one row per shape, it has
# no chain capacity).
#
#   benches/instructions.sh [batches]      (default 20 full-ring batches)
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-20}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
nice -n 19 cargo build -q --release -p virtio-bench --example instr
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
probe="$target/release/examples/instr"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# count ENGINE SHAPE MEMORY N: instructions per request
count() {
    local served collected
    served=$(nice -n 19 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        --toggle-collect='*device_batch*' "$probe" "$@" "$batches" 2>"$out/log" |
        sed -n 's/^served //p')
    collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log")
    awk -v c="$collected" -v n="$served" 'BEGIN { printf "%.0f", c / n }'
}

printf '| %-10s | %2s | %12s | %12s | %13s | %13s | %12s | %12s | %12s | %13s |\n' \
    shape N "split Region" "split Multi" "packed Region" "packed Multi" "virtio-queue" \
    "Multi/Region" "packed/split" "vq/split"
echo "|---|---|---|---|---|---|---|---|---|---|"
for shape in 1-desc 1-writable hdr-status 4-desc indirect; do
    vq=$(count virtio-queue "$shape" region 16)
    for n in 4 16 64; do
        sr=$(count ours-split "$shape" region "$n")
        sm=$(count ours-split "$shape" multi "$n")
        pr=$(count ours-packed "$shape" region "$n")
        pm=$(count ours-packed "$shape" multi "$n")
        awk -v s="$shape" -v n="$n" -v sr="$sr" -v sm="$sm" -v pr="$pr" -v pm="$pm" -v vq="$vq" 'BEGIN {
            printf "| %-10s | %2s | %12d | %12d | %13d | %13d | %12d | %5.2fx %5.2fx | %12.2fx | %6.2fx %5.2fx |\n",
                s, n, sr, sm, pr, pm, vq, sm / sr, pm / pr, pr / sr, vq / sr, vq / sm }'
    done
done
echo
echo "Multi/Region: split then packed. vq/split: virtio-queue over split on Region, then on Multi."

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
# Then two scaling sweeps, every engine over both memories:
#   chain length: `chain-K` requests (K direct descriptors, K-1 readable and
#     a status byte; K = 1 is the header alone), K = 1..32, queue 256, N = 64;
#   queue size: `hdr-status` requests (a block read), queue 16..1024, N = 16,
#     full-ring batches (batches scaled so every size serves about as many
#     requests).
#
# Prints the three tables as Markdown and writes them as TSV, which the plot
# generator (`cargo run -p xtask -- plots`) reads:
#   $DATA_DIR/instructions.tsv, instructions-chain.tsv, instructions-qsize.tsv
# (DATA_DIR defaults to benches/data; DATA_DIR= writes none).
#
#   benches/instructions.sh [batches]      (default 20 full-ring batches)
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-20}
DATA_DIR="${DATA_DIR-benches/data}"
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
nice -n 19 cargo build -q --release -p virtio-bench --example instr
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
probe="$target/release/examples/instr"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# count ENGINE SHAPE MEMORY N [BATCHES QUEUE_SIZE]: instructions per request
count() {
    local served collected
    served=$(nice -n 19 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        --toggle-collect='*device_batch*' "$probe" "$1" "$2" "$3" "$4" "${5:-$batches}" "${6:-256}" 2>"$out/log" |
        sed -n 's/^served //p')
    collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log")
    awk -v c="$collected" -v n="$served" 'BEGIN { printf "%.0f", c / n }'
}

printf '| %-10s | %2s | %12s | %12s | %13s | %13s | %12s | %12s | %12s | %13s |\n' \
    shape N "split Region" "split Multi" "packed Region" "packed Multi" "virtio-queue" \
    "Multi/Region" "packed/split" "vq/split"
echo "|---|---|---|---|---|---|---|---|---|---|"
cols='split_region\tsplit_multi\tpacked_region\tpacked_multi\tvirtio_queue'
printf "shape\tN\t$cols\n" >"$out/instructions.tsv"
for shape in 1-desc 1-writable hdr-status 4-desc indirect; do
    vq=$(count virtio-queue "$shape" region 16)
    for n in 4 16 64; do
        sr=$(count ours-split "$shape" region "$n")
        sm=$(count ours-split "$shape" multi "$n")
        pr=$(count ours-packed "$shape" region "$n")
        pm=$(count ours-packed "$shape" multi "$n")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$n" "$sr" "$sm" "$pr" "$pm" "$vq" >>"$out/instructions.tsv"
        awk -v s="$shape" -v n="$n" -v sr="$sr" -v sm="$sm" -v pr="$pr" -v pm="$pm" -v vq="$vq" 'BEGIN {
            printf "| %-10s | %2s | %12d | %12d | %13d | %13d | %12d | %5.2fx %5.2fx | %12.2fx | %6.2fx %5.2fx |\n",
                s, n, sr, sm, pr, pm, vq, sm / sr, pm / pr, pr / sr, vq / sr, vq / sm }'
    done
done
echo
echo "Multi/Region: split then packed. vq/split: virtio-queue over split on Region, then on Multi."

# sweep NAME KEY VALUES...: one row per value, every engine on both memories
# (virtio-queue has one memory); $shape_of and $args_of give the probe's
# shape and its N, batches and queue size for a value.
sweep() {
    local name="$1" key="$2" v sr sm pr pm vq
    shift 2
    printf "$key\t$cols\n" >"$out/$name.tsv"
    echo
    printf '| %-12s | %12s | %12s | %13s | %13s | %12s | %12s | %12s |\n' \
        "$key" "split Region" "split Multi" "packed Region" "packed Multi" "virtio-queue" "packed/split" "vq/split"
    echo "|---|---|---|---|---|---|---|---|"
    for v in "$@"; do
        local shape n b q
        read -r shape n b q <<<"$("args_$name" "$v")"
        sr=$(count ours-split "$shape" region "$n" "$b" "$q")
        sm=$(count ours-split "$shape" multi "$n" "$b" "$q")
        pr=$(count ours-packed "$shape" region "$n" "$b" "$q")
        pm=$(count ours-packed "$shape" multi "$n" "$b" "$q")
        vq=$(count virtio-queue "$shape" region "$n" "$b" "$q")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$sr" "$sm" "$pr" "$pm" "$vq" >>"$out/$name.tsv"
        awk -v v="$v" -v sr="$sr" -v sm="$sm" -v pr="$pr" -v pm="$pm" -v vq="$vq" 'BEGIN {
            printf "| %-12s | %12d | %12d | %13d | %13d | %12d | %11.2fx | %11.2fx |\n",
                v, sr, sm, pr, pm, vq, pr / sr, vq / sr }'
    done
}
# The probe's shape, N, batches and queue size for one value of a sweep.
args_instructions-chain() { echo "chain-$1 64 $batches 256"; }
args_instructions-qsize() { echo "hdr-status 16 $((batches * 256 / $1)) $1"; }

echo
echo "Against chain length (chain-K: K direct descriptors; queue 256, N = 64):"
sweep instructions-chain descriptors 1 2 4 8 16 32
echo
echo "Against queue size (hdr-status, a block read; N = 16; full-ring batches):"
sweep instructions-qsize queue_size 16 32 64 128 256 512 1024

if [ -n "$DATA_DIR" ]; then
    mkdir -p "$DATA_DIR"
    for t in instructions instructions-chain instructions-qsize; do
        {
            echo "# benches/instructions.sh $batches: instructions per request, device pass only (callgrind)"
            echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(rustc --version)"
            cat "$out/$t.tsv"
        } >"$DATA_DIR/$t.tsv"
    done
    echo
    echo "Wrote $DATA_DIR/instructions.tsv, instructions-chain.tsv, instructions-qsize.tsv"
fi

#!/usr/bin/env bash
# Our two-thread ring benchmark next to Linux's tools/virtio/ringtest, in one
# run and one table: our split ring vs `virtio_ring_poll`, our packed ring vs
# `ring` (the kernel's packed-ring prototype), same thread placement, same
# batch, same request count.
#
#   benches/ringtest.sh [--requests N] [--runs R] [--batch B] [--cpus A,B] [--notify poll|park]
#
# ringtest comes from Debian's linux-source-6.1 package (apt-get download +
# dpkg -x; only tools/virtio/ringtest is extracted and built). ringtest
# prints nothing, so each run is timed from outside; ns/request = wall time
# / requests. `--notify park` maps to ringtest's `--sleep` (eventfd kicks
# and calls) and our parking threads; `poll` to busy polling on both.
#
# Work per request differs slightly: ringtest's host only marks a buffer
# used; our device also validates the chain and reads a 16-byte header.
set -euo pipefail
cd "$(dirname "$0")/.."

requests=10000000 runs=5 batch=32 cpus=0,1 notify=poll
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) requests=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --notify) notify=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "ringtest.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
guest=${cpus%,*} host=${cpus#*,}
case "$notify" in
    poll) sleep_flag="" ;;
    park) sleep_flag="--sleep" ;;
    *) echo "ringtest.sh: --notify is poll or park" >&2; exit 2 ;;
esac

target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
work="$target/ringtest"
rt="$work/linux-source-6.1/tools/virtio/ringtest"
if [ ! -x "$rt/virtio_ring_poll" ] || [ ! -x "$rt/ring" ]; then
    mkdir -p "$work"
    (
        cd "$work"
        if ! ls linux-source-6.1_*.deb >/dev/null 2>&1; then
            apt-get download linux-source-6.1 >/dev/null 2>&1 || {
                apt-get update -qq && apt-get download linux-source-6.1
            }
        fi
        rm -rf pkg && dpkg -x linux-source-6.1_*.deb pkg
        tar -xJf pkg/usr/src/linux-source-6.1.tar.xz linux-source-6.1/tools/virtio/ringtest
        rm -rf pkg
    )
    command -v cc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc make; }
    make -s -C "$rt" virtio_ring_poll ring
fi

cargo build -q --release -p virtio-bench --bin ringbench
ringbench="$target/release/ringbench"

# Prints "min median max" ns/request of `runs` timed runs of a ringtest binary.
time_ringtest() {
    local bin=$1 i t0 t1
    for i in $(seq "$runs"); do
        t0=$(date +%s%N)
        "$rt/$bin" --run-cycles "$requests" --batch "$batch" \
            --guest-affinity "$guest" --host-affinity "$host" $sleep_flag
        t1=$(date +%s%N)
        echo "$(( t1 - t0 ))"
    done | sort -n | awk -v n="$requests" '{ v[NR] = $1 / n }
        END { printf "%.2f %.2f %.2f\n", v[1], v[int((NR + 1) / 2)], v[NR] }'
}

# Prints "min median max" ns/request of our ringbench.
time_ours() {
    "$ringbench" --ring "$1" --requests "$requests" --runs "$runs" --batch "$batch" \
        --cpus "$cpus" --notify "$notify" --json |
        sed -n 's/.*"ns_per_request":{"min":\([0-9.]*\),"median":\([0-9.]*\),"max":\([0-9.]*\)}.*/\1 \2 \3/p'
}

echo "ring benchmark: $requests requests x $runs runs, batch $batch, driver/guest on core $guest, device/host on core $host, $notify"
printf '%-8s %-26s %-26s %-18s %s\n' ring "ours ns/req (min/med/max)" "ringtest ns/req" "ringtest binary" "ours / ringtest (median)"
for pair in split:virtio_ring_poll packed:ring; do
    ring=${pair%%:*} bin=${pair#*:}
    read -r omin omed omax < <(time_ours "$ring")
    read -r lmin lmed lmax < <(time_ringtest "$bin")
    printf '%-8s %-26s %-26s %-18s %.2f\n' "$ring" "$omin/$omed/$omax" "$lmin/$lmed/$lmax" "$bin" \
        "$(awk -v a="$omed" -v b="$lmed" 'BEGIN { print a / b }')"
done

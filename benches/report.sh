#!/usr/bin/env bash
# One benchmark run, printed as the Markdown tables of BENCHMARKS.md:
# criterion's device-side and driver-side times (with the instruction
# counts from callgrind beside them and the ratios to virtio-queue), then
# the two-thread comparison with Linux's ringtest.
#
#   benches/report.sh [--quick]    (--quick: shorter criterion runs and 2*10^6 ring requests)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

echo "Command: \`benches/report.sh $quick\`  "
echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(uname -sr)  "
echo "Date: $(date -u +%Y-%m-%d)  "
echo "Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
echo

if [ "$quick" = "--quick" ]; then
    cargo bench -q -p virtio-bench --bench queues -- --warm-up-time 0.3 --measurement-time 1 >/dev/null
    ring_args=(--requests 2000000 --runs 3)
else
    cargo bench -q -p virtio-bench --bench queues >/dev/null
    ring_args=()
fi
instr=$(benches/instructions.sh)

python3 - "$target/criterion" "$instr" <<'PY'
import json, os, sys
root, instr_text = sys.argv[1], sys.argv[2]
instr = {}
for line in instr_text.splitlines()[1:]:
    engine, shape, n = line.split()
    instr[(engine, shape)] = float(n)

def ns(group, bench):
    d = os.path.join(root, group, bench, "new")
    est = json.load(open(os.path.join(d, "estimates.json")))["median"]["point_estimate"]
    elems = json.load(open(os.path.join(d, "benchmark.json")))["throughput"]["Elements"]
    return est / elems

shapes = ["1-desc", "4-desc", "indirect"]
print("### Device side, per request (queue size 256, one batch = a full ring)")
print()
print("| shape | ours split | ours packed | virtio-queue 0.18 | virtio-queue / split | virtio-queue / packed |")
print("|---|---|---|---|---|---|")
for s in shapes:
    g = "device_" + s
    t = {e: ns(g, e) for e in ["ours-split", "ours-packed", "virtio-queue"]}
    cell = lambda e: f"{t[e]:.1f} ns, {instr[(e, s)]:.0f} instr"
    print(f"| {s} | {cell('ours-split')} | {cell('ours-packed')} | {cell('virtio-queue')} "
          f"| {t['virtio-queue'] / t['ours-split']:.2f}x ({instr[('virtio-queue', s)] / instr[('ours-split', s)]:.2f}x instr) "
          f"| {t['virtio-queue'] / t['ours-packed']:.2f}x ({instr[('virtio-queue', s)] / instr[('ours-packed', s)]:.2f}x instr) |")
print()
print("### Driver side, per request (add + kick decision + collect)")
print()
print("| shape | ours split | ours packed |")
print("|---|---|---|")
for s in shapes:
    g = "driver_" + s
    print(f"| {s} | {ns(g, 'ours-split'):.1f} ns | {ns(g, 'ours-packed'):.1f} ns |")
print()
PY

echo "### Two threads on two cores, next to Linux tools/virtio/ringtest"
echo
echo '```'
benches/ringtest.sh "${ring_args[@]}"
benches/ringtest.sh "${ring_args[@]}" --notify park
echo '```'

#!/usr/bin/env bash
# One benchmark run, printed as the Markdown of BENCHMARKS.md: the machine,
# the instruction counts (callgrind, exact), the interleaved device- and
# driver-side times, then the two-thread comparison with Linux's ringtest.
#
#   benches/report.sh [--quick]    (--quick: 100 interleaved rounds and 2*10^6 ring requests)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}

echo "Command: \`benches/report.sh $quick\`  "
echo "CPU: $(lscpu | sed -n 's/^Model name:\s*//p' | head -n 1), $(nproc) cores  "
echo "Kernel: $(uname -sr)  "
echo "Date: $(date -u +%Y-%m-%d)  "
echo "Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
echo

echo "### Instructions per request, device pass only (callgrind; queue 256, full-ring batches)"
echo
benches/instructions.sh
echo

if [ "$quick" = "--quick" ]; then
    nice -n 19 cargo bench -q -p virtio-bench --bench queues -- --quick
    ring_args=(--requests 2000000 --runs 3)
else
    nice -n 19 cargo bench -q -p virtio-bench --bench queues
    ring_args=()
fi
echo

echo "### Two threads on two cores, next to Linux tools/virtio/ringtest"
echo
echo '```'
benches/ringtest.sh "${ring_args[@]}"
benches/ringtest.sh "${ring_args[@]}" --notify park
echo '```'

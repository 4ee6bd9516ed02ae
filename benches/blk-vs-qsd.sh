#!/usr/bin/env bash
# Block throughput: our daemon (`virtio-vhost-user block`) next to
# qemu-storage-daemon's vhost-user-blk export, in the same Linux 6.12 guest
# under the same QEMU (TCG), on the same image, with the same guest options.
#
# The guest (kernel from shared/tools/guest-kernel.sh, busybox-static and
# Debian's fio with the libraries ldd finds, in an uncompressed initramfs;
# benches/fio-sysv-shm.c preloaded when the guest kernel has no SysV IPC)
# runs fio with O_DIRECT on the raw /dev/vda, one row after another:
#   4k-randread-qd1  4k-randread-qd32  4k-randwrite-qd1  4k-randwrite-qd32
#   1m-seqread  1m-seqwrite   (1 MiB requests, one in flight)
# Boots alternate ours, theirs, ours, theirs, ... (ROUNDS of each); every
# boot runs every row. Printed: the median per row of each side and the
# ratio ours/theirs (IOPS for the 4 KiB rows, MiB/s for the 1 MiB rows), as
# Markdown; written: $DATA_DIR/blk-vs-qsd.tsv (the medians, what the plot
# generator reads) and $DATA_DIR/blk-vs-qsd-runs.tsv (every boot's figure).
#
# fio's engine: libaio if the guest kernel has CONFIG_AIO, else io_uring if
# it has CONFIG_IO_URING, else psync; with psync, queue depth 32 is 32 fio
# threads each with one request in flight (numjobs=32), which keeps 32
# requests queued on the device as iodepth=32 would.
#
# Cache mode: both sides use the host page cache by default (ours without
# --direct, qemu-storage-daemon with cache.direct=off); DIRECT=1 puts both
# on O_DIRECT (ours --direct, cache.direct=on; the image must not be on
# tmpfs).
#
# Environment (defaults in brackets):
#   ROUNDS [3]      boots per side (at least 2)
#   RUNTIME [5]     seconds per row (after RAMP); longer runs: RUNTIME=30
#   RAMP [1]        fio ramp_time per row, seconds
#   IMG_SIZE [256M] the image (filled with random data once per run)
#   DIRECT [0]      1: O_DIRECT on the host side too (see above)
#   QUEUES [1]      num-queues of vhost-user-blk-pci (and the qsd export)
#   SMP [1]         guest vCPUs
#   BLK_PROPS []    more vhost-user-blk-pci properties, e.g. packed=on,queue-size=256
#   ROWS [all]      a subset of the row names above
#   WORK [/tmp/blk-vs-qsd]  scratch: image, sockets, consoles, logs
#   DATA_DIR [benches/data] where the TSV files go (DATA_DIR= writes none)
#   GUEST_KERNEL    a bzImage instead of shared/tools/guest-kernel.sh's
#   VVU_BIN         our daemon binary instead of a release build
#   QSD_BIN [qemu-storage-daemon]
#   SKIP_INSTALL=1  do not apt-get install qemu-system-x86, fio, cpio
#   BOOT_TIMEOUT [600]  seconds for one boot
#   TRACE_SYSCALLS=1    run both backends under `strace -f -c` and log, per
#                   boot, the system calls per guest request and the top five
#                   (a profile, not a measurement: strace slows both sides;
#                   use with ROWS=one-row to see that row alone)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/blk-vs-qsd}"
ROUNDS="${ROUNDS:-3}"
RUNTIME="${RUNTIME:-5}"
RAMP="${RAMP:-1}"
IMG_SIZE="${IMG_SIZE:-256M}"
DIRECT="${DIRECT:-0}"
QUEUES="${QUEUES:-1}"
SMP="${SMP:-1}"
BLK_PROPS="${BLK_PROPS:-}"
ALL_ROWS="4k-randread-qd1 4k-randread-qd32 4k-randwrite-qd1 4k-randwrite-qd32 1m-seqread 1m-seqwrite"
ROWS="${ROWS:-$ALL_ROWS}"
DATA_DIR="${DATA_DIR-$ROOT/benches/data}"
QSD_BIN="${QSD_BIN:-qemu-storage-daemon}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-600}"

log() { printf '[blk-vs-qsd] %s\n' "$*" >&2; }
[ "$ROUNDS" -ge 2 ] || { log "ROUNDS must be at least 2"; exit 1; }

# ---- tools, kernel, busybox, fio -------------------------------------------
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    missing=""
    command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86"
    command -v "$QSD_BIN" >/dev/null || missing="$missing qemu-system-x86"
    command -v fio >/dev/null || missing="$missing fio"
    command -v cpio >/dev/null || missing="$missing cpio"
    if [ -n "$missing" ]; then
        log "installing$missing"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
fi
for t in qemu-system-x86_64 "$QSD_BIN" fio cpio; do
    command -v "$t" >/dev/null || { log "$t is not installed"; exit 1; }
done
mkdir -p "$WORK/dl"
if [ ! -x "$WORK/busybox/bin/busybox" ]; then
    log "downloading busybox-static"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -qq busybox-static 2>/dev/null) >&2
    rm -rf "$WORK/busybox"
    dpkg -x "$WORK"/dl/busybox-static_*.deb "$WORK/busybox"
fi
if [ -n "${GUEST_KERNEL:-}" ]; then
    KERNEL="$GUEST_KERNEL"
else
    SHARED="${SHARED:-$ROOT/../shared}"
    log "guest kernel (built once by $SHARED/tools/guest-kernel.sh)"
    KERNEL="$("$SHARED/tools/guest-kernel.sh" | tail -n1)"
fi
[ -s "$KERNEL" ] || { log "no guest kernel at $KERNEL"; exit 1; }

# The guest kernel's config (guest-kernel.sh keeps it next to the bzImage).
KCONFIG="$(dirname "$KERNEL")/config"
if [ -r "$KCONFIG" ] && grep -qx 'CONFIG_AIO=y' "$KCONFIG"; then ENGINE=libaio
elif [ -r "$KCONFIG" ] && grep -qx 'CONFIG_IO_URING=y' "$KCONFIG"; then ENGINE=io_uring
else ENGINE=psync
fi
[ -r "$KCONFIG" ] || log "no $KCONFIG: assuming no async I/O in the guest kernel"
log "fio engine: $ENGINE"

# ---- initramfs: busybox, fio and its libraries, the rows -------------------
INITRD="$WORK/initrd.cpio"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
FIO="$(command -v fio)"
cp "$FIO" "$IR/bin/fio"
for lib in $(ldd "$FIO" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
    [ -f "$lib" ] && cp -L --parents "$lib" "$IR/"
done
# The interpreter path the binary asks for (/lib64/ld-linux-x86-64.so.2).
interp="$(readelf -l "$FIO" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')"
[ -f "$IR$interp" ] || cp -L --parents "$interp" "$IR/"
FIO_VERSION="$(fio --version)"
# Without CONFIG_SYSVIPC in the guest (tinyconfig), fio's shmget fails:
# benches/fio-sysv-shm.c gives it System V segments inside its one process.
PRELOAD=""
if ! { [ -r "$KCONFIG" ] && grep -qx 'CONFIG_SYSVIPC=y' "$KCONFIG"; }; then
    command -v gcc >/dev/null || { log "gcc is needed to build benches/fio-sysv-shm.c"; exit 1; }
    gcc -O2 -shared -fPIC -Wall -Werror -o "$WORK/fio-sysv-shm.so" "$ROOT/benches/fio-sysv-shm.c" -lpthread
    mkdir -p "$IR/lib"
    cp "$WORK/fio-sysv-shm.so" "$IR/lib/fio-sysv-shm.so"
    PRELOAD=/lib/fio-sysv-shm.so
    log "guest kernel without CONFIG_SYSVIPC: fio runs with LD_PRELOAD=$PRELOAD"
fi
echo "$PRELOAD" >"$IR/preload"

# One line per row: NAME|fio arguments. 4 KiB rows over the whole image,
# random offsets; 1 MiB rows sequential from the start.
common="--filename=/dev/vda --direct=1 --time_based --runtime=$RUNTIME --ramp_time=$RAMP --group_reporting --thread --output-format=terse --terse-version=3"
qd_args() { # qd_args DEPTH
    if [ "$1" = 1 ]; then echo "--ioengine=$ENGINE --iodepth=1"
    elif [ "$ENGINE" = psync ]; then echo "--ioengine=psync --numjobs=$1"
    else echo "--ioengine=$ENGINE --iodepth=$1 --iodepth_batch_submit=1 --iodepth_batch_complete_min=1"
    fi
}
row_args() { # row_args NAME
    case "$1" in
        4k-randread-qd1) echo "--rw=randread --bs=4k --norandommap --randrepeat=0 $(qd_args 1)" ;;
        4k-randread-qd32) echo "--rw=randread --bs=4k --norandommap --randrepeat=0 $(qd_args 32)" ;;
        4k-randwrite-qd1) echo "--rw=randwrite --bs=4k --norandommap --randrepeat=0 $(qd_args 1)" ;;
        4k-randwrite-qd32) echo "--rw=randwrite --bs=4k --norandommap --randrepeat=0 $(qd_args 32)" ;;
        1m-seqread) echo "--rw=read --bs=1m $(qd_args 1)" ;;
        1m-seqwrite) echo "--rw=write --bs=1m $(qd_args 1)" ;;
        *) log "unknown row $1"; exit 1 ;;
    esac
}
: >"$IR/rows"
for r in $ROWS; do echo "$r|$(row_args "$r") $common --name=$r" >>"$IR/rows"; done

cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for i in $(seq 1 100); do [ -b /dev/vda ] && break; sleep 0.1; done
q=/sys/block/vda/queue
echo "BVQ QUEUE mq=$(ls /sys/block/vda/mq | wc -l) max_sectors_kb=$(cat $q/max_sectors_kb) max_segments=$(cat $q/max_segments) max_segment_size=$(cat $q/max_segment_size) nr_requests=$(cat $q/nr_requests) size=$(cat /sys/block/vda/size)"
preload=$(cat /preload)
while IFS='|' read -r name args; do
    # shellcheck disable=SC2086
    before=$(cat /sys/block/vda/stat)
    out=$(LD_PRELOAD=$preload fio $args 2>/tmp/fio.err) || echo "BVQ ERR $name $(tr '\n' ' ' </tmp/fio.err)"
    echo "BVQ ROW $name $(echo "$out" | grep '^3;' | tail -n1)"
    # requests the block layer completed on vda during the row (ramp included)
    echo "BVQ STAT $name $before $(cat /sys/block/vda/stat)"
done </rows
echo "BVQ DONE"
poweroff -f
INIT
chmod +x "$IR/init"
(cd "$IR" && find . | cpio -o -H newc --quiet >"$INITRD")
log "initramfs $(du -h "$INITRD" | cut -f1) (fio $FIO_VERSION, uncompressed)"

# ---- our daemon ----------------------------------------------------------------
if [ -n "${VVU_BIN:-}" ]; then
    BIN="$VVU_BIN"
else
    log "building virtio-vhost-user (release)"
    (cd "$ROOT" && nice -n 19 cargo build -q --release -p virtio-backend-vhost-user)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/virtio-vhost-user"
fi

IMG="$WORK/disk.img"
SOCK="$WORK/blk.sock"
log "image $IMG: $IMG_SIZE of random data"
rm -f "$IMG"
size_mib=$(numfmt --from=iec "$IMG_SIZE" | awk '{ printf "%d", $1 / 1048576 }')
dd if=/dev/urandom of="$IMG" bs=1M count="$size_mib" status=none
sync
if [ "$DIRECT" = 1 ]; then OURS_DIRECT="--direct"; QSD_DIRECT=on; else OURS_DIRECT=""; QSD_DIRECT=off; fi

BACKEND_PID=""
QEMU_PID=""
cleanup() {
    set +e
    [ -f "$WORK/qemu.pid" ] && kill -9 "$(cat "$WORK/qemu.pid")" 2>/dev/null
    [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null
    [ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_backend() { # start_backend ours|theirs LOG [SYSCALL_SUMMARY]
    rm -f "$SOCK"
    local wrap=()
    [ -n "${3:-}" ] && wrap=(strace -f -c -o "$3")
    if [ "$1" = ours ]; then
        # shellcheck disable=SC2086
        "${wrap[@]}" "$BIN" --socket "$SOCK" block --file "$IMG" $OURS_DIRECT 2>"$2" &
    else
        "${wrap[@]}" "$QSD_BIN" \
            --blockdev "driver=file,node-name=f,filename=$IMG,cache.direct=$QSD_DIRECT" \
            --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$SOCK,writable=on,num-queues=$QUEUES" \
            2>"$2" &
    fi
    BACKEND_PID=$!
    for _ in $(seq 1 100); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
    log "$1 did not create $SOCK"; cat "$2" >&2; exit 1
}

stop_backend() {
    local child
    if [ "${TRACE_SYSCALLS:-0}" = 1 ]; then
        # The daemon is strace's child: stop it, strace then writes its summary.
        child=$(pgrep -P "$BACKEND_PID" || true)
        [ -n "$child" ] && kill "$child" 2>/dev/null
    else
        kill "$BACKEND_PID" 2>/dev/null || true
    fi
    wait "$BACKEND_PID" 2>/dev/null || true
    BACKEND_PID=""
}

boot() { # boot NAME: the guest runs every row against whatever serves $SOCK
    local con="$WORK/$1.console"
    : >"$con"; rm -f "$WORK/qemu.pid"
    timeout "$BOOT_TIMEOUT" qemu-system-x86_64 \
        -machine pc,memory-backend=mem -m 1G -smp "$SMP" -cpu max \
        -object memory-backend-memfd,id=mem,size=1G,share=on \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1" \
        -chardev socket,id=blk0,path="$SOCK" \
        -device "vhost-user-blk-pci,chardev=blk0,num-queues=$QUEUES${BLK_PROPS:+,$BLK_PROPS}" \
        -display none -monitor none -serial "file:$con" \
        -nic none -no-reboot -pidfile "$WORK/qemu.pid" >"$WORK/$1.qemu.log" 2>&1 &
    QEMU_PID=$!
    wait "$QEMU_PID" || true
    QEMU_PID=""
    grep -q "BVQ DONE" "$con" || { log "$1: the guest did not finish (console $con)"; tail -n 20 "$con" >&2; exit 1; }
    if grep -q "BVQ ERR" "$con"; then log "$1: fio failed:"; grep "BVQ ERR" "$con" >&2; exit 1; fi
}

# figure ROW TERSE: IOPS for 4 KiB rows, MiB/s for 1 MiB rows (terse v3:
# read bw KiB/s field 7, IOPS 8; write bw 48, IOPS 49).
figure() {
    awk -F';' -v row="$1" '{
        w = (row ~ /write/); iops = w ? $49 : $8; bw = w ? $48 : $7
        if (row ~ /^1m/) printf "%.1f", bw / 1024; else printf "%.0f", iops }' <<<"$2"
}

RUNS="$WORK/runs.tsv"
printf 'side\tround\trow\tvalue\tunit\n' >"$RUNS"
for round in $(seq 1 "$ROUNDS"); do
    for side in ours theirs; do
        name="$side-$round"
        trace=""
        [ "${TRACE_SYSCALLS:-0}" = 1 ] && trace="$WORK/$name.syscalls"
        start_backend "$side" "$WORK/$name.backend.log" $trace
        t0=$SECONDS
        boot "$name"
        stop_backend
        log "$name: $((SECONDS - t0)) s; $(grep -a 'BVQ QUEUE' "$WORK/$name.console" | tr -d '\r' | sed 's/^BVQ QUEUE //')"
        for r in $ROWS; do
            terse=$(grep -a "^BVQ ROW $r " "$WORK/$name.console" | tr -d '\r' | sed "s/^BVQ ROW $r //")
            [ -n "$terse" ] || { log "$name: no result for $r"; exit 1; }
            unit=IOPS; case "$r" in 1m-*) unit=MiB/s ;; esac
            v=$(figure "$r" "$terse")
            printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$round" "$r" "$v" "$unit" >>"$RUNS"
            # Device requests per fio request (the block layer splits a
            # request that has more pages than max_segments).
            split=$(grep -a "^BVQ STAT $r " "$WORK/$name.console" | tr -d '\r' | awk -v bs="$([ "${r#1m}" != "$r" ] && echo 1024 || echo 4)" '{
                # fields after the name: 17 before, 17 after (reads done $4, sectors read $6; writes $8, sectors $10)
                n = 20; req = ($(n+1) - $4) + ($(n+5) - $8); kib = (($(n+3) - $6) + ($(n+7) - $10)) / 2
                if (req > 0) printf "%.2f", req / (kib / bs) }')
            log "$name $r: $v $unit${split:+ ($split device requests per fio request)}"
            # Guest requests of the row: KiB done / KiB per request.
            reqs=$(awk -F';' -v r="$r" '{ bs = (r ~ /^1m/) ? 1024 : 4; printf "%.0f", ($6 + $47) / bs }' <<<"$terse")
            boot_reqs=$(( ${boot_reqs:-0} + reqs ))
        done
        if [ -n "$trace" ] && [ -s "$trace" ]; then
            calls=$(awk '$NF == "total" { print $4 }' "$trace")
            log "$name: $calls system calls for about $boot_reqs guest requests (the calls include boot and ramp, the requests only fio's timed part): $(awk -v c="$calls" -v n="$boot_reqs" 'BEGIN { printf "%.1f", c / n }') per request; the eight that took most time:"
            awk 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "    %-16s %s calls, %.2f per request\n", $NF, $4, $4 / n }' n="$boot_reqs" "$trace" | head -n 8 >&2
        fi
        boot_reqs=0
    done
done

# ---- medians, the table ---------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
SUMMARY="$WORK/summary.tsv"
printf 'row\tunit\tours\ttheirs\tratio\n' >"$SUMMARY"
echo
echo "| row | unit | ours (median of $ROUNDS) | qemu-storage-daemon (median of $ROUNDS) | ours/theirs |"
echo "|---|---|---|---|---|"
for r in $ROWS; do
    unit=IOPS; case "$r" in 1m-*) unit=MiB/s ;; esac
    o=$(awk -F'\t' -v r="$r" '$1 == "ours" && $3 == r { print $4 }' "$RUNS" | median)
    t=$(awk -F'\t' -v r="$r" '$1 == "theirs" && $3 == r { print $4 }' "$RUNS" | median)
    ratio=$(awk -v o="$o" -v t="$t" 'BEGIN { printf "%.2f", o / t }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$unit" "$o" "$t" "$ratio" >>"$SUMMARY"
    echo "| $r | $unit | $o | $t | ${ratio}x |"
done
echo
echo "Per boot (ours, theirs alternating): $RUNS"

if [ -n "$DATA_DIR" ]; then
    mkdir -p "$DATA_DIR"
    {
        echo "# benches/blk-vs-qsd.sh $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "# cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(nproc) cores; $(qemu-system-x86_64 --version | head -n1); TCG"
        echo "# guest: $(basename "$KERNEL") from guest-kernel.sh, -smp $SMP -m 1G, vhost-user-blk-pci num-queues=$QUEUES${BLK_PROPS:+,$BLK_PROPS}; $FIO_VERSION engine $ENGINE"
        echo "# image: $IMG_SIZE on $(df --output=fstype "$WORK" | tail -n1) ($WORK); host cache: ours ${OURS_DIRECT:-buffered}, qsd cache.direct=$QSD_DIRECT"
        echo "# rounds: $ROUNDS per side, alternating; runtime ${RUNTIME}s + ramp ${RAMP}s per row; medians"
        cat "$SUMMARY"
    } >"$DATA_DIR/blk-vs-qsd.tsv"
    cp "$RUNS" "$DATA_DIR/blk-vs-qsd-runs.tsv"
    log "wrote $DATA_DIR/blk-vs-qsd.tsv and blk-vs-qsd-runs.tsv"
fi

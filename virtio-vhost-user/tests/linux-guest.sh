#!/usr/bin/env bash
# End-to-end: a Linux guest under an unmodified QEMU talks to virtio-vhost-user.
#
# Installs what it needs (qemu-system-x86, kmod, cpio; the Debian kernel and
# busybox-static with apt-get download), builds an initramfs, starts one rng
# and one block daemon, and boots the guest (TCG, shared memfd RAM) once per
# case with vhost-user-rng-pci and vhost-user-blk-pci:
#   split           split rings, EVENT_IDX on
#   packed          packed=on
#   event_idx-off   split rings, event_idx=off
#   packed-event_idx-off  packed=on, event_idx=off
#   reset           the guest unbinds/rebinds virtio-blk (device reset) mid-I/O
#   kill-reconnect  QEMU killed with SIGKILL mid-I/O, then a fresh QEMU boots
#                   against the same daemons and must pass the checks
#   daemon-kill     the block daemon killed with SIGKILL 20 times during a
#                   guest write-and-verify loop (QEMU reconnect=1); each new
#                   daemon takes QEMU's inflight region over (INFLIGHT_SHMFD)
#                   and the image must hold every record's last pass, whole
#   mq-smp4, resize -smp 4 without num-queues (MQ); an image grown under
#                   the running guest (SIGHUP) reaching it as a capacity change
#   split-qs16, packed-qs16, split-qs8, packed-qs8
#                   vhost-user-blk-pci,queue-size=16 or 8: rings smaller than
#                   the chains Linux builds for a request
# Each case also writes four 1 MiB O_DIRECT requests and reads them back
# (O_DIRECT), the guest compares them, and the host finds every record in
# the image; a guest that logs a block I/O error fails the case.
# Each case checks: /dev/hwrng is served by virtio_rng and yields bytes; a
# pattern written to /dev/vda and flushed reads back in the guest and is in
# the image file on the host. One PASS/FAIL line per case; exit 1 on a FAIL.
#
# Environment: WORK (scratch dir, default /tmp/vvu-e2e), CASES (default all),
# SKIP_INSTALL=1 to skip apt-get, VVU_BIN to use a built daemon instead of
# cargo build, CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vvu-e2e}"
CASES="${CASES:-split packed event_idx-off packed-event_idx-off split-qs16 packed-qs16 split-qs8 packed-qs8 mq-smp4 reset resize daemon-kill kill-reconnect}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-120}"
MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio-rng"

log() { printf '[linux-guest] %s\n' "$*" >&2; }

# ---- tools, kernel, busybox --------------------------------------------------
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    log "installing qemu-system-x86 kmod cpio"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 kmod cpio >/dev/null
fi
mkdir -p "$WORK/dl"
KPKG="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[ -n "$KPKG" ] || { log "cannot find the kernel package behind linux-image-amd64"; exit 1; }
KVER="${KPKG#linux-image-}"
if [ ! -f "$WORK/kernel/boot/vmlinuz-$KVER" ] || [ ! -x "$WORK/busybox/bin/busybox" ]; then
    log "downloading $KPKG and busybox-static"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -q "$KPKG" busybox-static 2>/dev/null)
    rm -rf "$WORK/kernel" "$WORK/busybox"
    dpkg -x "$WORK"/dl/linux-image-*.deb "$WORK/kernel"
    dpkg -x "$WORK"/dl/busybox-static_*.deb "$WORK/busybox"
fi
KERNEL="$WORK/kernel/boot/vmlinuz-$KVER"

# ---- initramfs ---------------------------------------------------------------
INITRD="$WORK/initrd.cpio.gz"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp,mods}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
# Load order: each module after its dependencies (modinfo's "depends"; the
# package ships no modules.dep).
ORDER=""
add_module() {
    local m="$1" f d
    case " $ORDER " in *" $m "*) return ;; esac
    f="$(find "$WORK/kernel/lib/modules/$KVER" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) | head -n1)"
    [ -n "$f" ] || { log "module $m not found"; exit 1; }
    for d in $(modinfo -F depends "$f" | tr ',' ' '); do add_module "$d"; done
    case "$f" in
        *.xz) xz -dc "$f" >"$IR/mods/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$IR/mods/$m.ko" ;;
        *) cp "$f" "$IR/mods/$m.ko" ;;
    esac
    ORDER="$ORDER $m"
}
for m in $MODULES; do add_module "$m"; done
echo "$ORDER" >"$IR/mods/order"
log "guest modules:$ORDER"
cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "VVU insmod $m failed"; done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
MODE=$(arg vvu.mode); MARK=$(arg vvu.mark)
for i in $(seq 1 50); do [ -b /dev/vda ] && [ -c /dev/hwrng ] && break; sleep 0.1; done

check_rng() {
    cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    n=$(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)
    hex=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | hexdump -v -e '16/1 "%02x"')
    case "$cur" in virtio_rng*) ;; *) echo "VVU RNG-FAIL current=$cur"; return ;; esac
    if [ "$n" = 256 ] && [ "$hex" != 00000000000000000000000000000000 ]; then
        echo "VVU RNG-OK $cur $n bytes, sample $hex"
    else
        echo "VVU RNG-FAIL read $n bytes sample $hex"
    fi
}

# Writes 1 MiB of the marker at 1 MiB into the disk, flushes, drops the page
# cache and reads it back.
check_blk() {
    [ -b /dev/vda ] || { echo "VVU BLK-FAIL no /dev/vda"; return; }
    awk -v m="$MARK" 'BEGIN { for (i = 0; i < 16384; i++) printf "%-63s\n", m "-" i }' >/tmp/pat
    dd if=/tmp/pat of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null || { echo "VVU BLK-FAIL write"; return; }
    sync; blockdev --flushbufs /dev/vda; echo 3 >/proc/sys/vm/drop_caches
    dd if=/dev/vda bs=65536 skip=16 count=16 2>/dev/null >/tmp/back
    if cmp -s /tmp/pat /tmp/back; then echo "VVU BLK-OK $(wc -c </tmp/back) bytes"; else echo "VVU BLK-FAIL readback differs"; fi
}

# O_DIRECT: four 1 MiB requests of a second pattern at 8 MiB, read back
# with O_DIRECT too (Linux splits each by seg_max and sends it through one
# indirect table per request, longer than a small ring).
check_direct() {
    awk -v m="$MARK" 'BEGIN { for (i = 0; i < 65536; i++) printf "%-63s\n", "D" m "-" i }' >/tmp/dpat
    dd if=/tmp/dpat of=/dev/vda bs=1048576 seek=8 count=4 oflag=direct 2>/tmp/dd.err \
        || { echo "VVU DIRECT-FAIL write $(cat /tmp/dd.err)"; return; }
    dd if=/dev/vda of=/tmp/dback bs=1048576 skip=8 count=4 iflag=direct 2>/tmp/dd.err \
        || { echo "VVU DIRECT-FAIL read $(cat /tmp/dd.err)"; return; }
    if cmp -s /tmp/dpat /tmp/dback; then echo "VVU DIRECT-OK $(wc -c </tmp/dback) bytes"; else echo "VVU DIRECT-FAIL readback differs"; fi
}

# DISCARD: 1 MiB of a third pattern at 24 MiB, read back, then blkdiscard
# (the daemon punches a hole in the image), read back as zeroes.
check_discard() {
    max=$(cat /sys/block/vda/queue/discard_max_bytes 2>/dev/null)
    [ "${max:-0}" -gt 0 ] || { echo "VVU DISCARD-FAIL not offered (discard_max_bytes=$max)"; return; }
    awk -v m="$MARK" 'BEGIN { for (i = 0; i < 16384; i++) printf "%-63s\n", "Z" m "-" i }' >/tmp/zpat
    dd if=/tmp/zpat of=/dev/vda bs=1048576 seek=24 count=1 oflag=direct 2>/dev/null || { echo "VVU DISCARD-FAIL write"; return; }
    dd if=/dev/vda of=/tmp/zback bs=1048576 skip=24 count=1 iflag=direct 2>/dev/null
    cmp -s /tmp/zpat /tmp/zback || { echo "VVU DISCARD-FAIL pattern not written"; return; }
    blkdiscard -o $((24 << 20)) -l $((1 << 20)) /dev/vda 2>/tmp/bd.err || { echo "VVU DISCARD-FAIL blkdiscard: $(cat /tmp/bd.err)"; return; }
    dd if=/dev/vda of=/tmp/zback bs=1048576 skip=24 count=1 iflag=direct 2>/dev/null
    dd if=/dev/zero of=/tmp/zero bs=1048576 count=1 2>/dev/null
    if cmp -s /tmp/zero /tmp/zback; then echo "VVU DISCARD-OK (max $max bytes)"; else echo "VVU DISCARD-FAIL range not zero after discard"; fi
}

# The request queues the guest set up, and an O_DIRECT read from every CPU
# (blk-mq maps each CPU to its own queue when there are as many).
check_queues() {
    n=$(ls /sys/block/vda/mq | wc -l); cpus=$(grep -c ^processor /proc/cpuinfo); io=ok
    for c in $(seq 0 $((cpus - 1))); do
        taskset -c "$c" dd if=/dev/vda of=/dev/null bs=65536 count=16 skip=$((c * 16)) iflag=direct 2>/dev/null || io=fail
    done
    echo "VVU BLK-QUEUES $n cpus $cpus io $io"
}

# Continuous I/O on both devices until killed.
io_loop() {
    ( while :; do dd if=/dev/hwrng of=/dev/null bs=4096 count=16 2>/dev/null; done ) &
    ( while :; do dd if=/dev/zero of=/dev/vda bs=65536 seek=64 count=64 conv=fsync 2>/dev/null; \
                  dd if=/dev/vda of=/dev/null bs=65536 skip=64 count=64 2>/dev/null; done ) &
}

case "$MODE" in
check)
    check_rng; check_blk; check_direct; check_discard; check_queues ;;
reset)
    io_loop; sleep 2
    dev=$(basename "$(readlink /sys/block/vda/device)")
    pci=$(basename "$(readlink /sys/bus/virtio/devices/$dev/..)" 2>/dev/null)
    pci=$(basename "$(dirname "$(readlink -f /sys/bus/virtio/devices/$dev)")")
    echo "VVU resetting $dev on $pci mid-I/O"
    kill $(jobs -p) 2>/dev/null
    echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/unbind
    echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/bind
    for i in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.1; done
    check_rng; check_blk ;;
loop)
    io_loop; echo "VVU IO-LOOP running"; while :; do sleep 1; done ;;
wloop)
    # Writes 64 KiB records (marker, record number, pass) with O_DIRECT and
    # reads each back, for as long as the host keeps killing the block
    # daemon; then every record is read back once more.
    echo "VVU WLOOP start"
    i=0; bad=0; end=$(( $(cut -d. -f1 /proc/uptime) + 45 ))
    while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ] || [ "$i" -lt 64 ]; do
        r=$((i % 256))
        awk -v m="$MARK" -v r="$r" -v i="$i" 'BEGIN { for (k = 0; k < 1024; k++) printf "%-63s\n", "W" m "-" r "-" i }' >/tmp/w
        dd if=/tmp/w of=/dev/vda bs=65536 seek=$((256 + r)) count=1 oflag=direct 2>/tmp/w.err || { echo "VVU WLOOP-FAIL write $i: $(cat /tmp/w.err)"; bad=1; break; }
        dd if=/dev/vda of=/tmp/wb bs=65536 skip=$((256 + r)) count=1 iflag=direct 2>/dev/null
        cmp -s /tmp/w /tmp/wb || { echo "VVU WLOOP-FAIL readback $i"; bad=1; break; }
        i=$((i + 1))
    done
    echo "VVU WLOOP wrote $i"
    [ "$bad" = 0 ] && echo "VVU WLOOP-OK $i" ;;
resize)
    # The host grows the image and sends the daemon SIGHUP; the new size
    # must reach the guest (a config change through QEMU).
    old=$(cat /sys/block/vda/size); echo "VVU RESIZE-WAIT $old"
    for i in $(seq 1 600); do new=$(cat /sys/block/vda/size); [ "$new" != "$old" ] && break; sleep 0.1; done
    if [ "$new" != "$old" ]; then
        dd if=/dev/vda of=/dev/null bs=512 skip=$((new - 1)) count=1 iflag=direct 2>/dev/null && r=readable || r=unreadable
        echo "VVU RESIZE-OK $old -> $new, last sector $r"
    else
        echo "VVU RESIZE-FAIL still $old sectors"
    fi ;;
esac
echo "VVU DONE"
poweroff -f
INIT
chmod +x "$IR/init"
(cd "$IR" && find . | cpio -o -H newc --quiet | gzip -1 >"$INITRD")

# ---- daemons -------------------------------------------------------------------
if [ -n "${VVU_BIN:-}" ]; then
    BIN="$VVU_BIN"
else
    log "building virtio-vhost-user"
    (cd "$ROOT" && cargo build -q -p virtio-backend-vhost-user)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/virtio-vhost-user"
fi
IMG="$WORK/disk.img"
rm -f "$IMG"; truncate -s 64M "$IMG"
RNG_SOCK="$WORK/rng.sock"; BLK_SOCK="$WORK/blk.sock"
PIDS=()
QEMU_PID=""
cleanup() {
    set +e
    for f in "$WORK"/*.qemu.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$BIN" --socket "$RNG_SOCK" ${VVU_TRACE:+--trace} rng 2>"$WORK/rng.log" & PIDS+=($!)
"$BIN" --socket "$BLK_SOCK" ${VVU_TRACE:+--trace} block --file "$IMG" 2>"$WORK/blk.log" & PIDS+=($!)
for s in "$RNG_SOCK" "$BLK_SOCK"; do
    for _ in $(seq 1 100); do [ -S "$s" ] && break; sleep 0.1; done
    [ -S "$s" ] || { log "daemon did not create $s"; cat "$WORK"/*.log >&2; exit 1; }
done

daemons_alive() { for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done; }

# boot NAME MODE MARK RING_PROPS [BLK_PROPS] [SMP]: starts QEMU in the
# background, console in $WORK/NAME.console. With SMP, that many vCPUs and
# no num-queues: QEMU then asks for a request queue per vCPU.
boot() {
    local name="$1" mode="$2" mark="$3" props="$4" blkprops="${5:-}" smp="${6:-}"
    local queues="num-queues=1,"
    [ -n "$smp" ] && queues=""
    : >"$WORK/$name.console"
    rm -f "$WORK/$name.qemu.pid"
    timeout "$BOOT_TIMEOUT" qemu-system-x86_64 \
        -machine pc,memory-backend=mem -m 256M -smp "${smp:-1}" -cpu max \
        -object memory-backend-memfd,id=mem,size=256M,share=on \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 vvu.mode=$mode vvu.mark=$mark" \
        -chardev socket,id=rng0,path="$RNG_SOCK" \
        -device "vhost-user-rng-pci,chardev=rng0,$props" \
        -chardev socket,id=blk0,path="$BLK_SOCK" \
        -device "vhost-user-blk-pci,chardev=blk0,$queues$props${blkprops:+,$blkprops}" \
        -display none -monitor none -serial "file:$WORK/$name.console" \
        -nic none -no-reboot -pidfile "$WORK/$name.qemu.pid" >"$WORK/$name.qemu.log" 2>&1 &
    QEMU_PID=$!   # the timeout wrapper; QEMU's own pid is in the pidfile
}

# Kills QEMU itself (not only its timeout wrapper) with SIGKILL.
kill_qemu() {
    local name="$1" pid
    pid="$(cat "$WORK/$name.qemu.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    [ -n "$QEMU_PID" ] && wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
}

# verdict NAME MARK MODE: PASS if the guest and the host saw everything
verdict() {
    local name="$1" mark="$2" con="$WORK/$1.console" why=""
    grep -q "VVU RNG-OK" "$con" || why="$why rng"
    grep -q "VVU BLK-OK" "$con" || why="$why blk(guest)"
    # The image holds the pattern at 1 MiB: first and last records.
    dd if="$IMG" of="$WORK/$name.image-slice" bs=65536 skip=16 count=16 2>/dev/null
    grep -qa "^$mark-0 *\$" "$WORK/$name.image-slice" || why="$why blk(host,first)"
    grep -qa "^$mark-16383 *\$" "$WORK/$name.image-slice" || why="$why blk(host,last)"
    [ "$(grep -ac "^$mark-" "$WORK/$name.image-slice")" = 16384 ] || why="$why blk(host,count)"
    if grep -q "VVU DIRECT" "$con"; then
        grep -q "VVU DIRECT-OK" "$con" || why="$why direct(guest)"
        dd if="$IMG" of="$WORK/$name.direct-slice" bs=1048576 skip=8 count=4 2>/dev/null
        [ "$(grep -ac "^D$mark-" "$WORK/$name.direct-slice")" = 65536 ] || why="$why direct(host,count)"
    elif [ "$3" = check ]; then
        why="$why direct(not run)"
    fi
    if [ "$3" = check ]; then
        # As many request queues as vCPUs (mq-smp4: 4), each served.
        local cpus=1; [ "$name" = mq-smp4 ] && cpus=4
        grep -q "VVU BLK-QUEUES $cpus cpus $cpus io ok" "$con" || why="$why queues(want $cpus)"
        grep -q "VVU DISCARD-OK" "$con" || why="$why discard(guest)"
        # The image: the discarded MiB holds zeroes, none of the pattern.
        dd if="$IMG" of="$WORK/$name.discard-slice" bs=1048576 skip=24 count=1 2>/dev/null
        cmp -s -n 1048576 "$WORK/$name.discard-slice" /dev/zero || why="$why discard(host)"
    fi
    # A request the device failed (or answered with a stale status) shows
    # in the guest's log as an I/O error.
    grep -qiE "I/O error|blk_update_request|critical (medium|target)" "$con" && why="$why guest-io-error"
    daemons_alive || why="$why daemon-died"
    if [ -z "$why" ]; then
        echo "PASS $name"
    else
        echo "FAIL $name:$why (console: $con)"
        sed -n '/VVU/p' "$con" | tail -n 5 | sed 's/^/    /'
        return 1
    fi
}

run_case() {
    local name="$1" props="$2" mode="${3:-check}" blkprops="${4:-}" smp="${5:-}" mark
    mark="VVU-$name-$RANDOM$RANDOM"
    local t0=$SECONDS
    boot "$name" "$mode" "$mark" "$props" "$blkprops" "$smp"
    wait "$QEMU_PID" || true
    QEMU_PID=""
    log "$name: guest ran $((SECONDS - t0)) s"
    verdict "$name" "$mark" "$mode"
}

# The image grows under a running guest: truncate, SIGHUP to the block
# daemon, and the guest sees the capacity (then the image is put back).
resize_case() {
    local t0=$SECONDS con="$WORK/resize.console" why=""
    boot resize resize x "packed=off"
    for _ in $(seq 1 "$BOOT_TIMEOUT"); do
        grep -q "VVU RESIZE-WAIT" "$con" && break
        kill -0 "$QEMU_PID" 2>/dev/null || break
        sleep 1
    done
    truncate -s 96M "$IMG"
    kill -HUP "${PIDS[1]}"
    wait "$QEMU_PID" || true
    QEMU_PID=""
    truncate -s 64M "$IMG"
    log "resize: guest ran $((SECONDS - t0)) s"
    grep -q "VVU RESIZE-OK 131072 -> 196608, last sector readable" "$con" || why="$why guest"
    grep -qiE "I/O error" "$con" && why="$why guest-io-error"
    daemons_alive || why="$why daemon-died"
    if [ -z "$why" ]; then echo "PASS resize"; else
        echo "FAIL resize:$why (console: $con)"; sed -n '/VVU/p' "$con" | tail -n 3 | sed 's/^/    /'; return 1
    fi
}

# The block daemon (with --direct: O_DIRECT on the image) killed (SIGKILL)
# and restarted 20 times while the guest
# writes and verifies; QEMU reconnects (reconnect=1). Every write must
# complete without an error, and the image must hold the last pass of every
# record afterwards.
daemon_kill_case() {
    local t0=$SECONDS name=daemon-kill con="$WORK/daemon-kill.console" why="" mark kills=0
    mark="VVU-dk-$RANDOM"
    local sock="$WORK/dk.sock" img="$WORK/dk.img" dlog="$WORK/dk.log" dpid
    rm -f "$img"; truncate -s 64M "$img"; : >"$dlog"
    "$BIN" --socket "$sock" block --file "$img" --direct 2>>"$dlog" & dpid=$!
    for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
    : >"$con"; rm -f "$WORK/$name.qemu.pid"
    timeout "$BOOT_TIMEOUT" qemu-system-x86_64 \
        -machine pc,memory-backend=mem -m 256M -smp 1 -cpu max \
        -object memory-backend-memfd,id=mem,size=256M,share=on \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 vvu.mode=wloop vvu.mark=$mark" \
        -chardev socket,id=rng0,path="$RNG_SOCK" -device vhost-user-rng-pci,chardev=rng0 \
        -chardev socket,id=blk0,path="$sock",reconnect=1 \
        -device vhost-user-blk-pci,chardev=blk0,num-queues=1 \
        -display none -monitor none -serial "file:$con" \
        -nic none -no-reboot -pidfile "$WORK/$name.qemu.pid" >"$WORK/$name.qemu.log" 2>&1 &
    QEMU_PID=$!
    for _ in $(seq 1 "$BOOT_TIMEOUT"); do
        grep -q "VVU WLOOP start" "$con" && break
        kill -0 "$QEMU_PID" 2>/dev/null || break
        sleep 1
    done
    while [ "$kills" -lt 20 ] && kill -0 "$QEMU_PID" 2>/dev/null && ! grep -q "VVU WLOOP wrote" "$con"; do
        sleep "0.$((RANDOM % 9 + 1))"
        kill -9 "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null
        kills=$((kills + 1))
        "$BIN" --socket "$sock" block --file "$img" --direct 2>>"$dlog" & dpid=$!
        # Wait until QEMU is back on the new daemon before the next kill.
        for _ in $(seq 1 50); do grep -c "frontend connected" "$dlog" | grep -qx "$((kills + 1))" && break; sleep 0.1; done
        sleep 0.5
    done
    wait "$QEMU_PID" || true
    QEMU_PID=""
    kill "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null
    log "$name: $kills kills, guest ran $((SECONDS - t0)) s"
    [ "$kills" -ge 20 ] || why="$why only-$kills-kills"
    # Every daemon after the first took QEMU's inflight region over
    # (INFLIGHT_SHMFD), and chains it held were resubmitted from it.
    local adopted resubmitted
    adopted=$(grep -c "inflight region adopted" "$dlog" || true)
    resubmitted=$(grep -c "resubmitting" "$dlog" || true)
    [ "$adopted" -ge "$kills" ] || why="$why inflight-adopted-$adopted-times"
    grep -q "VVU WLOOP-OK" "$con" || why="$why guest"
    grep -qiE "I/O error|blk_update_request" "$con" && why="$why guest-io-error"
    # The image: each of the 256 records holds its last pass, whole.
    local n; n=$(sed -n 's/^VVU WLOOP wrote //p' "$con" | tr -d '\r')
    if [ -n "$n" ]; then
        dd if="$img" of="$WORK/dk.slice" bs=65536 skip=256 count=256 2>/dev/null
        local r last want got
        for r in $(seq 0 255); do
            [ "$r" -lt "$n" ] || break
            last=$(( (n - 1 - r) / 256 * 256 + r ))
            want="W$mark-$r-$last"
            got=$(dd if="$WORK/dk.slice" bs=65536 skip="$r" count=1 2>/dev/null | grep -ac "^$want *\$")
            [ "$got" = 1024 ] || { why="$why image(record $r: $got of 1024 lines are $want)"; break; }
        done
    fi
    if [ -z "$why" ]; then echo "PASS $name ($kills kills, $n writes verified, inflight region adopted $adopted times, $resubmitted restarts resubmitted chains)"; else
        echo "FAIL $name:$why (console: $con, daemon log: $dlog)"; sed -n '/VVU/p' "$con" | tail -n 3 | sed 's/^/    /'; return 1
    fi
}

kill_reconnect() {
    local t0=$SECONDS
    boot kill-loop loop x "packed=off"
    for _ in $(seq 1 "$BOOT_TIMEOUT"); do
        grep -q "VVU IO-LOOP running" "$WORK/kill-loop.console" && break
        kill -0 "$QEMU_PID" 2>/dev/null || break
        sleep 1
    done
    if ! grep -q "VVU IO-LOOP running" "$WORK/kill-loop.console"; then
        kill_qemu kill-loop
        echo "FAIL kill-reconnect: guest never started its I/O loop (console: $WORK/kill-loop.console)"
        return 1
    fi
    sleep 2
    kill_qemu kill-loop
    log "kill-reconnect: QEMU killed mid-I/O after $((SECONDS - t0)) s"
    sleep 0.5
    run_case kill-reconnect "packed=off"
}

FAILED=0
for c in $CASES; do
    case "$c" in
        split) run_case split "packed=off,event_idx=on" || FAILED=1 ;;
        packed) run_case packed "packed=on" || FAILED=1 ;;
        event_idx-off) run_case event_idx-off "packed=off,event_idx=off" || FAILED=1 ;;
        packed-event_idx-off) run_case packed-event_idx-off "packed=on,event_idx=off" || FAILED=1 ;;
        split-qs16) run_case split-qs16 "packed=off" check "queue-size=16" || FAILED=1 ;;
        packed-qs16) run_case packed-qs16 "packed=on" check "queue-size=16" || FAILED=1 ;;
        split-qs8) run_case split-qs8 "packed=off" check "queue-size=8" || FAILED=1 ;;
        packed-qs8) run_case packed-qs8 "packed=on" check "queue-size=8" || FAILED=1 ;;
        reset) run_case reset "packed=off" reset || FAILED=1 ;;
        resize) resize_case || FAILED=1 ;;
        daemon-kill) daemon_kill_case || FAILED=1 ;;
        # QEMU's default num-queues (one per vCPU) with 4 vCPUs
        mq-smp4) run_case mq-smp4 "packed=off" check "" 4 || FAILED=1 ;;
        kill-reconnect) kill_reconnect || FAILED=1 ;;
        *) echo "FAIL $c: unknown case"; FAILED=1 ;;
    esac
done
log "daemon logs: $WORK/rng.log $WORK/blk.log"
exit "$FAILED"

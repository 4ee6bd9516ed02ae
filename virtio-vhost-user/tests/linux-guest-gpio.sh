#!/usr/bin/env bash
# End-to-end GPIO: Linux's own gpio-virtio driver, under QEMU 10.0
# (vhost-user-gpio-pci; 7.2 drops the IRQ feature bit), talks to
# `virtio-vhost-user gpio --sim loopback:8` (our Gpio device over the
# loopback bank: output line k drives input line k+1).
#
# Installs what it needs (cpio; QEMU 10 unpacked beside the system QEMU by
# ../shared/tools/qemu10.sh; busybox-static, gpiod and libgpiod2 with
# apt-get download), builds the Linux 6.12 guest once with
# ../shared/tools/guest-kernel.sh, builds an initramfs with the gpiod tools
# (and the C library they link), starts the daemon and boots the guest
# once (TCG, shared memfd RAM). Each check prints one PASS/FAIL:
#   probe       the driver probed (it asks every line's direction before
#               init runs) and gpiodetect shows the chip with 8 lines
#   names       gpioinfo shows the line names loop0..loop7
#   set-get     line 4 held high by gpioset reads high on line 5 (loopback),
#               low again once released
#   gpiomon     gpiomon on line 1 (both edges) sees the rising and the
#               falling edge gpioset raises on line 0 through the loopback
#   irq-none    after gpiomon exits (SET_IRQ_TYPE NONE: its held buffer came
#               back INVALID) a second gpiomon works again
# Exit 1 on a FAIL.
#
# Environment: WORK (default /tmp/vvu-gpio), SKIP_INSTALL=1, VVU_BIN,
# GUEST_KERNEL, QEMU10_BIN (a directory with qemu-system-x86_64 10.x),
# CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vvu-gpio}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-180}"
SHARED="${SHARED:-$ROOT/../shared}"
T0=$SECONDS

log() { printf '[linux-guest-gpio] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ "${SKIP_INSTALL:-0}" != 1 ] && ! command -v cpio >/dev/null; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cpio >/dev/null
fi
QBIN="${QEMU10_BIN:-$("$SHARED/tools/qemu10.sh" | tail -n1)}"
QEMU="$QBIN/qemu-system-x86_64"
[ -x "$QEMU" ] || { log "no QEMU 10 at $QEMU"; exit 1; }
mkdir -p "$WORK/dl"
if [ ! -x "$WORK/busybox/bin/busybox" ] || [ ! -x "$WORK/gpiod/usr/bin/gpiomon" ]; then
    log "downloading busybox-static gpiod libgpiod2"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -q busybox-static gpiod libgpiod2 2>/dev/null)
    rm -rf "$WORK/busybox" "$WORK/gpiod"
    dpkg -x "$WORK"/dl/busybox-static_*.deb "$WORK/busybox"
    for d in "$WORK"/dl/gpiod_*.deb "$WORK"/dl/libgpiod2_*.deb; do dpkg -x "$d" "$WORK/gpiod"; done
fi
KERNEL="${GUEST_KERNEL:-$("$SHARED/tools/guest-kernel.sh" | tail -n1)}"
[ -s "$KERNEL" ] || { log "no guest kernel at $KERNEL"; exit 1; }

# ---- initramfs ---------------------------------------------------------------
INITRD="$WORK/initrd.cpio.gz"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp,lib,lib64,usr/lib}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
for t in gpiodetect gpioinfo gpioget gpioset gpiomon gpiofind; do
    cp "$WORK/gpiod/usr/bin/$t" "$IR/bin/$t"
done
cp -L "$WORK"/gpiod/usr/lib/x86_64-linux-gnu/libgpiod.so.2 "$IR/lib/"
# The C library the tools link (the host is the same Debian release).
for l in $(LD_LIBRARY_PATH="$WORK/gpiod/usr/lib/x86_64-linux-gnu" ldd "$WORK/gpiod/usr/bin/gpiomon" \
        | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}'); do
    case "$l" in *libgpiod*) continue ;; esac
    case "$l" in /lib64/*) cp -L "$l" "$IR/lib64/" ;; *) cp -L "$l" "$IR/lib/" ;; esac
done
cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
pass() { echo "VVU PASS $*"; }
fail() { echo "VVU FAIL $*"; }
CHIP=""
for i in $(seq 1 100); do
    for c in /dev/gpiochip*; do [ -c "$c" ] && CHIP=${c#/dev/}; done
    [ -n "$CHIP" ] && break
    sleep 0.1
done
[ -n "$CHIP" ] || { fail "probe: no gpiochip"; echo "VVU DONE"; poweroff -f; }
d=$(gpiodetect 2>&1)
case "$d" in *"$CHIP"*"(8 lines)"*) pass "probe ($d)" ;; *) fail "probe: $d" ;; esac

info=$(gpioinfo $CHIP 2>&1)
n=$(echo "$info" | grep -c '"loop[0-7]"')
if [ "$n" = 8 ]; then pass "names (8 named lines, $(gpiofind loop5))"; else fail "names: $info"; fi

gpioset --mode=time --sec=2 $CHIP 4=1 & sp=$!
sleep 0.5
hi=$(gpioget $CHIP 5 2>&1)
wait $sp
lo=$(gpioget $CHIP 5 2>&1)
if [ "$hi" = 1 ] && [ "$lo" = 0 ]; then pass "set-get (line 5 read $hi while line 4 high, $lo after)"; else fail "set-get: '$hi' then '$lo'"; fi

gpiomon --num-events=2 $CHIP 1 >/tmp/mon 2>&1 & mp=$!
sleep 1
gpioset --mode=time --usec=300000 $CHIP 0=1
for i in $(seq 1 50); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done
if kill -0 $mp 2>/dev/null; then kill $mp; fi
wait $mp 2>/dev/null
r=$(grep -c 'RISING EDGE' /tmp/mon); f=$(grep -c 'FALLING EDGE' /tmp/mon)
if [ "$r" = 1 ] && [ "$f" = 1 ]; then pass "gpiomon ($(tr '\n' ';' </tmp/mon))"; else fail "gpiomon: $(cat /tmp/mon)"; fi

gpiomon --num-events=1 --rising-edge $CHIP 1 >/tmp/mon2 2>&1 & mp=$!
sleep 1
gpioset --mode=time --usec=200000 $CHIP 0=1
for i in $(seq 1 50); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done
if kill -0 $mp 2>/dev/null; then kill $mp; fi
wait $mp 2>/dev/null
if grep -q 'RISING EDGE' /tmp/mon2; then pass "irq-none (a second gpiomon: $(cat /tmp/mon2))"; else fail "irq-none: $(cat /tmp/mon2)"; fi
echo "VVU DONE"
poweroff -f
INIT
chmod +x "$IR/init"
mknod "$IR/dev/console" c 5 1 2>/dev/null || true
(cd "$IR" && find . | cpio -o -H newc --quiet | gzip -1 >"$INITRD")

# ---- daemon --------------------------------------------------------------------
if [ -n "${VVU_BIN:-}" ]; then
    BIN="$VVU_BIN"
else
    log "building virtio-vhost-user"
    (cd "$ROOT" && cargo build -q -p virtio-backend-vhost-user)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/virtio-vhost-user"
fi
SOCK="$WORK/gpio.sock"
DLOG="$WORK/gpio.log"
CON="$WORK/gpio.console"
DPID=""
QPID=""
cleanup() {
    set +e
    [ -f "$WORK/qemu.pid" ] && kill -9 "$(cat "$WORK/qemu.pid")" 2>/dev/null
    [ -n "$QPID" ] && kill -9 "$QPID" 2>/dev/null
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$BIN" --socket "$SOCK" gpio --sim loopback:8 2>"$DLOG" &
DPID=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { log "daemon did not create $SOCK"; cat "$DLOG" >&2; exit 1; }

: >"$CON"
rm -f "$WORK/qemu.pid"
t0=$SECONDS
timeout "$BOOT_TIMEOUT" "$QEMU" \
    -machine pc,memory-backend=mem -m 256M -smp 1 -cpu max \
    -object memory-backend-memfd,id=mem,size=256M,share=on \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 quiet panic=-1" \
    -chardev socket,id=gpio0,path="$SOCK" \
    -device vhost-user-gpio-pci,chardev=gpio0 \
    -display none -monitor none -serial "file:$CON" \
    -nic none -no-reboot -pidfile "$WORK/qemu.pid" >"$WORK/qemu.log" 2>&1 &
QPID=$!
wait "$QPID" || true
QPID=""
log "guest ran $((SECONDS - t0)) s"

FAILED=0
grep -q "VVU DONE" "$CON" || { echo "FAIL guest did not finish (console: $CON, qemu: $WORK/qemu.log)"; FAILED=1; }
sed -n 's/^VVU \(PASS\|FAIL\) /\1 /p' "$CON"
grep -q "^VVU FAIL" "$CON" && FAILED=1
for c in probe names set-get gpiomon irq-none; do
    grep -q "^VVU PASS $c" "$CON" || { grep -q "^VVU FAIL $c" "$CON" || echo "FAIL $c: not run"; FAILED=1; }
done
grep -qiE 'gpio.*(timeout|incorrect len)' "$CON" && { echo "FAIL the driver logged a timeout or bad length"; grep -iE 'gpio' "$CON" | head -5; FAILED=1; }
kill -0 "$DPID" 2>/dev/null || { echo "FAIL daemon died (log: $DLOG)"; FAILED=1; }
log "total $((SECONDS - T0)) s; daemon log: $DLOG, console: $CON"
exit "$FAILED"

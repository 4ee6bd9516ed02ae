#!/usr/bin/env bash
# The host gpiochip backend (`gpio --chip`) on a real kernel gpiochip.
# This machine has no gpiochip and cannot load gpio-sim, so a Linux guest
# provides one: under QEMU 10, the guest's gpio-virtio driver makes
# /dev/gpiochip0 out of `virtio-vhost-user gpio --sim loopback:8` on the
# host (output line k drives input line k+1; edges come back to the guest
# kernel as interrupts). Inside the guest, the crate's ignored test
# `gpiochip::tests::real_chip_lines_and_edges_end_to_end` serves that
# chip's lines 0-3 again through `Cdev` (gpiocdev, uAPI v2) and
# `serve_bank` to an in-process vhost-user frontend, and checks, each
# printed as one PASS/FAIL:
#   names           GET_LINE_NAMES carries the chip's line names
#   rising-edge     guest line 1 an input with both-edge interrupts, line 0
#                   driven high: the kernel's edge event on chip line 1
#                   wakes the connection loop and returns the held event
#                   buffer VALID
#   falling-edge    the same for line 0 driven low
#   reconfigure     output to input and back in place (the chip's line info
#                   shows it held and its direction each time), edges follow
#   busy            a line another consumer holds is a STATUS_ERR, free
#                   again once released
#   release         SET_DIRECTION NONE and the end of the connection
#                   release the lines (line info: unused)
# Exit 1 on a FAIL.
#
# Needs what linux-guest-gpio.sh needs (it reuses its downloads in WORK).
# Environment: WORK (default /tmp/vvu-gpiochip), SKIP_INSTALL=1, VVU_BIN,
# GUEST_KERNEL, QEMU10_BIN, CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vvu-gpiochip}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-180}"
SHARED="${SHARED:-$ROOT/../shared}"
T0=$SECONDS

log() { printf '[linux-guest-gpiochip] %s\n' "$*" >&2; }

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
if [ ! -x "$WORK/busybox/bin/busybox" ]; then
    log "downloading busybox-static"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -q busybox-static 2>/dev/null)
    rm -rf "$WORK/busybox"
    dpkg -x "$WORK"/dl/busybox-static_*.deb "$WORK/busybox"
fi
KERNEL="${GUEST_KERNEL:-$("$SHARED/tools/guest-kernel.sh" | tail -n1)}"
[ -s "$KERNEL" ] || { log "no guest kernel at $KERNEL"; exit 1; }

# ---- the test binary ------------------------------------------------------------
log "building the virtio-vhost-user tests"
TESTBIN=$(cd "$ROOT" && cargo test -q -p virtio-backend-vhost-user --lib --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | sed 's/"executable":"\(.*\)"/\1/' | grep virtio_vhost_user | tail -n1)
[ -x "$TESTBIN" ] || { log "no test binary"; exit 1; }

# ---- initramfs ---------------------------------------------------------------
INITRD="$WORK/initrd.cpio.gz"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp,lib,lib64}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
strip -o "$IR/bin/vvu-tests" "$TESTBIN" 2>/dev/null || cp "$TESTBIN" "$IR/bin/vvu-tests"
# The C library it links (the guest runs the host's binary).
for l in $(ldd "$TESTBIN" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}'); do
    case "$l" in /lib64/*) cp -L "$l" "$IR/lib64/" ;; *) cp -L "$l" "$IR/lib/" ;; esac
done
cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
CHIP=""
for i in $(seq 1 100); do
    for c in /dev/gpiochip*; do [ -c "$c" ] && CHIP=$c; done
    [ -n "$CHIP" ] && break
    sleep 0.1
done
if [ -z "$CHIP" ]; then echo "VVU FAIL probe: no gpiochip"; echo "VVU DONE"; poweroff -f; fi
echo "VVU chip $CHIP"
VVU_GPIOCHIP=$CHIP RUST_BACKTRACE=1 /bin/vvu-tests --ignored --exact --nocapture --test-threads=1 \
    gpiochip::tests::real_chip_lines_and_edges_end_to_end >/tmp/out 2>&1
rc=$?
sed 's/^/VVU OUT /' /tmp/out
echo "VVU RC $rc"
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
grep -q "^VVU FAIL" "$CON" && { sed -n 's/^VVU FAIL /FAIL /p' "$CON"; FAILED=1; }
# The checks the test passed, in order; the first one missing failed.
missing=""
for c in names rising-edge falling-edge reconfigure busy release; do
    if [ -z "$missing" ] && grep -q "^VVU OUT.*VVU-CHECK $c\b" "$CON"; then
        echo "PASS $c"
    else
        echo "FAIL $c"
        missing=${missing:-$c}
        FAILED=1
    fi
done
grep -q "^VVU RC 0" "$CON" || { echo "FAIL the test in the guest (its output, console $CON):"; sed -n 's/^VVU OUT //p' "$CON" | tail -n 30; FAILED=1; }
grep -qiE 'gpio.*(timeout|incorrect len)' "$CON" && { echo "FAIL the guest driver logged a timeout or bad length"; grep -iE 'gpio' "$CON" | head -5; FAILED=1; }
kill -0 "$DPID" 2>/dev/null || { echo "FAIL daemon died (log: $DLOG)"; FAILED=1; }
log "total $((SECONDS - T0)) s; daemon log: $DLOG, console: $CON"
exit "$FAILED"

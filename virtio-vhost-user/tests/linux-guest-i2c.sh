#!/usr/bin/env bash
# End-to-end I2C: Linux's own i2c-virtio driver, under an unmodified QEMU
# (7.2, vhost-user-i2c-pci), talks to `virtio-vhost-user i2c --sim
# eeprom@0x50` (our I2cAdapter over the simulated 24C02).
#
# Installs what it needs (qemu-system-x86, cpio; busybox-static with
# apt-get download), builds the Linux 6.12 guest once with
# ../shared/tools/guest-kernel.sh (I2C_VIRTIO and I2C_CHARDEV built in),
# builds an initramfs, starts the daemon with --trace (it logs each bus
# transaction) and boots the guest once (TCG, shared memfd RAM). The guest
# uses busybox's i2c tools on /dev/i2c-N; each check prints one PASS/FAIL:
#   detect        i2cdetect -y -r finds 0x50 and nothing else
#   quick         i2cdetect -y -q (zero-length writes) finds 0x50 too
#   page-write    i2ctransfer writes two 8-byte pages; i2cget reads a byte back
#   cross-page    one write+read transfer from 0x0c reads 8 bytes across the
#                 0x10 page boundary
#   page-wrap     a 10-byte write at 0x18 wraps inside its page (the part's
#                 page-write semantics reach the guest unchanged)
#   nack          i2cget from the absent 0x51 fails; i2ctransfer to it sends
#                 0 of its messages
#   transaction   the 3-message transfer w1 r4 r4 runs on the host as ONE
#                 bus transaction (the daemon's trace shows "w1 r4 r4"; no
#                 separate w1 or r4 transaction), and its data is continuous
# Exit 1 on a FAIL.
#
# Environment: WORK (scratch dir, default /tmp/vvu-i2c), SKIP_INSTALL=1 to
# skip apt-get, VVU_BIN to use a built daemon instead of cargo build,
# GUEST_KERNEL to use a built bzImage, CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vvu-i2c}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-180}"
T0=$SECONDS

log() { printf '[linux-guest-i2c] %s\n' "$*" >&2; }

# ---- tools, kernel, busybox --------------------------------------------------
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    log "installing qemu-system-x86 cpio"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 cpio >/dev/null
fi
mkdir -p "$WORK/dl"
if [ ! -x "$WORK/busybox/bin/busybox" ]; then
    log "downloading busybox-static"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -q busybox-static 2>/dev/null)
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

# ---- initramfs ---------------------------------------------------------------
INITRD="$WORK/initrd.cpio.gz"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp}
cp "$WORK/busybox/bin/busybox" "$IR/bin/busybox"
cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
pass() { echo "VVU PASS $*"; }
fail() { echo "VVU FAIL $*"; }

# The virtio adapter's bus number.
BUS=""
for i in $(seq 1 100); do
    for a in /sys/bus/i2c/devices/i2c-*; do
        [ -e "$a/name" ] || continue
        case "$(cat "$a/name")" in *virtio*) BUS=${a##*i2c-} ;; esac
    done
    [ -n "$BUS" ] && [ -c /dev/i2c-$BUS ] && break
    sleep 0.1
done
if [ -z "$BUS" ]; then
    fail "no virtio i2c adapter"; echo "VVU DONE"; poweroff -f
fi
echo "VVU bus $BUS: $(cat /sys/bus/i2c/devices/i2c-$BUS/name)"

# detect: the EEPROM answers at 0x50, nobody else (read-byte probes).
i2cdetect -y -r $BUS >/tmp/detect 2>&1
cat /tmp/detect
found=$(sed -n 's/^[0-7]0: *//p' /tmp/detect | tr ' ' '\n' | grep -E '^[0-9a-f]{2}$|^UU$' | tr '\n' ' ')
if [ "$found" = "50 " ]; then pass detect; else fail "detect: found '$found'"; fi

# quick: the same with zero-length writes (ZERO_LENGTH_REQUEST).
i2cdetect -y -q $BUS >/tmp/quick 2>&1
found=$(sed -n 's/^[0-7]0: *//p' /tmp/quick | tr ' ' '\n' | grep -E '^[0-9a-f]{2}$' | tr '\n' ' ')
if [ "$found" = "50 " ]; then pass quick; else fail "quick: found '$found'"; cat /tmp/quick; fi

# page-write: pages 1 and 2 (0x08..0x17) get 0x01..0x10.
i2ctransfer -y $BUS w9@0x50 0x08 0x01 0x02 0x03 0x04 0x05 0x06 0x07 0x08 \
    && i2ctransfer -y $BUS w9@0x50 0x10 0x09 0x0a 0x0b 0x0c 0x0d 0x0e 0x0f 0x10 \
    && b=$(i2cget -y $BUS 0x50 0x0d) && [ "$b" = 0x06 ] \
    && pass "page-write (0x0d reads $b)" || fail "page-write: 0x0d reads '${b:-}'"

# cross-page: one write+read transfer from 0x0c, 8 bytes over the 0x10 boundary.
got=$(i2ctransfer -y $BUS w1@0x50 0x0c r8 2>&1)
want="0x05 0x06 0x07 0x08 0x09 0x0a 0x0b 0x0c"
if [ "$got" = "$want" ]; then pass "cross-page ($got)"; else fail "cross-page: '$got' (want '$want')"; fi

# page-wrap: 10 bytes at 0x18 (page 3): the last two wrap to 0x18, 0x19.
i2ctransfer -y $BUS w11@0x50 0x18 0x21 0x22 0x23 0x24 0x25 0x26 0x27 0x28 0x29 0x2a
got=$(i2ctransfer -y $BUS w1@0x50 0x18 r8 2>&1)
want="0x29 0x2a 0x23 0x24 0x25 0x26 0x27 0x28"
if [ "$got" = "$want" ]; then pass "page-wrap ($got)"; else fail "page-wrap: '$got' (want '$want')"; fi

# nack: the absent 0x51.
if i2cget -y $BUS 0x51 0x00 >/tmp/nack 2>&1; then
    fail "nack: i2cget 0x51 succeeded: $(cat /tmp/nack)"
else
    out=$(i2ctransfer -y $BUS w1@0x51 0x00 r1 2>&1 || true)
    case "$out" in
        *"0/2"*|*"I2C_RDWR"*|*rror*) pass "nack (i2cget: $(cat /tmp/nack); i2ctransfer: $out)" ;;
        *) fail "nack: i2ctransfer to 0x51 said '$out'" ;;
    esac
fi

# transaction: three messages in one transfer; the host checks its trace.
echo "VVU MARK transaction"
# (i2ctransfer prints each read message on its own line)
got=$(i2ctransfer -y $BUS w1@0x50 0x0e r4 r4 2>&1 | tr '\n' ' ' | sed 's/ *$//')
want="0x07 0x08 0x09 0x0a 0x0b 0x0c 0x0d 0x0e"
if [ "$got" = "$want" ]; then pass "transaction-data ($got)"; else fail "transaction-data: '$got' (want '$want')"; fi
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
SOCK="$WORK/i2c.sock"
DLOG="$WORK/i2c.log"
CON="$WORK/i2c.console"
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
"$BIN" --socket "$SOCK" --trace i2c --sim eeprom@0x50 2>"$DLOG" &
DPID=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { log "daemon did not create $SOCK"; cat "$DLOG" >&2; exit 1; }

# ---- guest -------------------------------------------------------------------
: >"$CON"
rm -f "$WORK/qemu.pid"
t0=$SECONDS
timeout "$BOOT_TIMEOUT" qemu-system-x86_64 \
    -machine pc,memory-backend=mem -m 256M -smp 1 -cpu max \
    -object memory-backend-memfd,id=mem,size=256M,share=on \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 quiet panic=-1" \
    -chardev socket,id=i2c0,path="$SOCK" \
    -device vhost-user-i2c-pci,chardev=i2c0 \
    -display none -monitor none -serial "file:$CON" \
    -nic none -no-reboot -pidfile "$WORK/qemu.pid" >"$WORK/qemu.log" 2>&1 &
QPID=$!
wait "$QPID" || true
QPID=""
log "guest ran $((SECONDS - t0)) s"

# ---- verdict -------------------------------------------------------------------
FAILED=0
grep -q "VVU DONE" "$CON" || { echo "FAIL guest did not finish (console: $CON, qemu: $WORK/qemu.log)"; FAILED=1; }
sed -n 's/^VVU \(PASS\|FAIL\) /\1 /p' "$CON"
grep -q "^VVU FAIL" "$CON" && FAILED=1
for c in detect quick page-write cross-page page-wrap nack transaction-data; do
    grep -q "^VVU PASS $c" "$CON" || { grep -q "^VVU FAIL $c" "$CON" || echo "FAIL $c: not run"; FAILED=1; }
done
# The host's side of the last transfer: one transaction w1 r4 r4 at 0x50,
# and it is the last transaction the daemon ran.
last=$(grep 'i2c transaction' "$DLOG" | tail -n1 || true)
case "$last" in
    *"transaction 0x50: w1 r4 r4: ok") echo "PASS transaction (host ran it as one: ${last#*: i2c })" ;;
    *) echo "FAIL transaction: the daemon's last transaction was '$last' (log: $DLOG)"; FAILED=1 ;;
esac
# A NACK reached the guest as a NACK: the daemon saw the address refused.
if grep -q 'i2c transaction 0x51: .*address not acknowledged' "$DLOG"; then
    echo "PASS nack-host (0x51 refused on the bus: $(grep -c 'transaction 0x51:' "$DLOG") transactions)"
else
    echo "FAIL nack-host: no refused 0x51 transaction in $DLOG"; FAILED=1
fi
kill -0 "$DPID" 2>/dev/null || { echo "FAIL daemon died (log: $DLOG)"; FAILED=1; }
log "total $((SECONDS - T0)) s; daemon log: $DLOG, console: $CON"
exit "$FAILED"

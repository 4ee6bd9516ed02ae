#!/usr/bin/env bash
# End-to-end sound: Linux 6.12's own virtio_snd driver, under QEMU 10.0
# (vhost-user-snd-pci), plays to and records from
# `virtio-vhost-user sound --wav-out OUT --wav-in IN` (our Sound device,
# paced by the daemon's timerfd, over the WAV sink and source).
#
# QEMU 10's vhost-user-snd-pci needs controls=on for a 16-byte config (with
# the default, off, it still passes VIRTIO_SND_F_CTLS to the guest, which
# then reads `controls` past the 12-byte config as 0xffffffff and fails
# its probe with -ENOMEM; the daemon's --no-controls is for that case).
#
# Installs what it needs (cpio; QEMU 10 via ../shared/tools/qemu10.sh;
# busybox-static, alsa-utils, libasound2, libasound2-data with apt-get
# download), uses the Linux 6.12 guest of ../shared/tools/guest-kernel.sh,
# builds an initramfs with aplay/arecord/amixer (their libraries and
# /usr/share/alsa), starts the daemon and boots the guest once (TCG).
# Checks, one PASS/FAIL each:
#   probe       the card is there (aplay -l)
#   amixer      amixer lists "Master Playback Volume", sets it to 40,60 and
#               reads 40,60 back
#   play        aplay -D hw:0,0 of a 2.048 s S16_LE stereo 48 kHz WAV exits 0,
#               taking at least 1.95 s (the device paces its completions)
#   sink        the daemon's sink starts with exactly its PCM bytes (aplay
#               pads its last period with silence after them)
#   capture     arecord -d 1 gets exactly the first bytes of the source's data
#   after-kill  an aplay killed (SIGKILL) mid-stream, then a second aplay
#               plays through, and its bytes end the sink
# Exit 1 on a FAIL.
#
# Environment: WORK (default /tmp/vvu-sound), SKIP_INSTALL=1, VVU_BIN,
# GUEST_KERNEL, QEMU10_BIN, CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vvu-sound}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-240}"
SHARED="${SHARED:-$ROOT/../shared}"
T0=$SECONDS

log() { printf '[linux-guest-sound] %s\n' "$*" >&2; }

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
X="$WORK/x"
if [ ! -x "$X/bin/busybox" ] || [ ! -x "$X/usr/bin/aplay" ]; then
    log "downloading busybox-static alsa-utils libasound2 libasound2-data"
    (cd "$WORK/dl" && rm -f ./*.deb && apt-get download -q busybox-static alsa-utils libasound2 libasound2-data 2>/dev/null)
    rm -rf "$X"
    for d in "$WORK"/dl/*.deb; do dpkg -x "$d" "$X"; done
fi
KERNEL="${GUEST_KERNEL:-$("$SHARED/tools/guest-kernel.sh" | tail -n1)}"
[ -s "$KERNEL" ] || { log "no guest kernel at $KERNEL"; exit 1; }

# ---- the audio -------------------------------------------------------------------
# play.wav: 98304 frames (48 periods of 2048, so aplay pads nothing);
# short.wav: 8192 frames; in.wav: the capture source, another pattern.
python3 - "$WORK" <<'PY'
import struct, sys, random
work = sys.argv[1]
def wav(path, data, ch=2, rate=48000, bits=16):
    align = ch * bits // 8
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, ch, rate, rate * align, align, bits) + b"data" + struct.pack("<I", len(data))
    open(path, "wb").write(hdr + data)
    open(path[:-4] + ".raw", "wb").write(data)
r = random.Random(25)
wav(f"{work}/play.wav", bytes(r.getrandbits(8) for _ in range(98304 * 4)))
wav(f"{work}/short.wav", bytes((i * 7) & 0xff for i in range(8192 * 4)))
wav(f"{work}/in.wav", bytes(r.getrandbits(8) for _ in range(72000 * 4)))
PY

# ---- initramfs ---------------------------------------------------------------
INITRD="$WORK/initrd.cpio.gz"
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp,lib,lib64,usr/share}
cp "$X/bin/busybox" "$IR/bin/busybox"
for t in aplay arecord amixer; do cp -L "$X/usr/bin/$t" "$IR/bin/$t"; done
cp -a "$X/usr/share/alsa" "$IR/usr/share/alsa"
cp -L "$X"/usr/lib/x86_64-linux-gnu/libasound.so.2 "$IR/lib/"
for b in aplay amixer; do
    for l in $(LD_LIBRARY_PATH="$X/usr/lib/x86_64-linux-gnu" ldd "$X/usr/bin/$b" \
            | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}'); do
        case "$l" in *libasound*) continue ;; esac
        case "$l" in /lib64/*) cp -L "$l" "$IR/lib64/" ;; *) cp -L "$l" "$IR/lib/" ;; esac
    done
done
cp "$WORK/play.wav" "$WORK/short.wav" "$WORK/in.raw" "$IR/"
cat >"$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
pass() { echo "VVU PASS $*"; }
fail() { echo "VVU FAIL $*"; }
for i in $(seq 1 100); do [ -c /dev/snd/pcmC0D0p ] && break; sleep 0.1; done
l=$(aplay -l 2>&1)
case "$l" in *"card 0"*) pass "probe ($(echo "$l" | grep card | head -1))" ;; *) fail "probe: $l" ;; esac

c=$(amixer -c 0 controls 2>&1)
amixer -q -c 0 cset name='Master Playback Volume' 40,60 >/tmp/cset 2>&1
g=$(amixer -c 0 cget name='Master Playback Volume' 2>&1)
case "$c" in *"Master Playback Volume"*)
    case "$g" in *": values=40,60"*) pass "amixer ($(echo "$g" | grep ': values'))" ;; *) fail "amixer cget: $g $(cat /tmp/cset)" ;; esac ;;
    *) fail "amixer controls: $c" ;; esac

cs() { tr -d . </proc/uptime | cut -d' ' -f1; }
t0=$(cs)
if aplay -q -D hw:0,0 /play.wav >/tmp/play 2>&1; then
    dt=$(( $(cs) - t0 ))
    # 2.048 s of audio: the device's completions are paced, not instant.
    if [ "$dt" -ge 195 ]; then pass "play (aplay exit 0 after ${dt}0 ms)"; else fail "play: done in ${dt}0 ms, faster than the stream"; fi
else
    fail "play: $(cat /tmp/play)"
fi

if arecord -q -D hw:0,0 -f S16_LE -c 2 -r 48000 -d 1 /tmp/cap.wav >/tmp/rec 2>&1; then
    n=$(( $(wc -c </tmp/cap.wav) - 44 ))
    a=$(tail -c "$n" /tmp/cap.wav | md5sum | cut -d' ' -f1)
    b=$(head -c "$n" /in.raw | md5sum | cut -d' ' -f1)
    if [ "$n" = 192000 ] && [ "$a" = "$b" ]; then pass "capture ($n bytes identical to the source)"; else fail "capture: $n bytes, md5 $a vs $b"; fi
else
    fail "capture: $(cat /tmp/rec)"
fi

aplay -q -D hw:0,0 /play.wav >/dev/null 2>&1 & p=$!
sleep 1
kill -9 $p; wait $p 2>/dev/null
if aplay -q -D hw:0,0 /short.wav >/tmp/play2 2>&1; then pass "after-kill (second aplay exit 0)"; else fail "after-kill: $(cat /tmp/play2)"; fi
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
SOCK="$WORK/snd.sock"
DLOG="$WORK/snd.log"
CON="$WORK/snd.console"
OUT="$WORK/out.wav"
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
rm -f "$OUT"
"$BIN" --socket "$SOCK" sound --wav-out "$OUT" --wav-in "$WORK/in.wav" 2>"$DLOG" &
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
    -chardev socket,id=snd0,path="$SOCK" \
    -device vhost-user-snd-pci,chardev=snd0,controls=on \
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
for c in probe amixer play capture after-kill; do
    grep -q "^VVU PASS $c" "$CON" || { grep -q "^VVU FAIL $c" "$CON" || echo "FAIL $c: not run"; FAILED=1; }
done
# The sink: the played PCM bytes first (then aplay's silence padding), the
# second aplay's last.
if python3 - "$OUT" "$WORK/play.raw" "$WORK/short.raw" <<'PY'
import sys
out, play, short = (open(p, "rb").read() for p in sys.argv[1:])
assert out[:4] == b"RIFF" and out[8:12] == b"WAVE", "sink is not a WAV"
data = out[44:]
assert int.from_bytes(out[40:44], "little") == len(data), "data size field"
ok_play = data[:len(play)] == play
# aplay pads its last period with silence (its period is its own choice):
# the second aplay's bytes end the sink, up to that padding.
ok_short = data.rstrip(b"\0").endswith(short)
print(f"sink: {len(data)} bytes; play prefix identical: {ok_play}; second aplay at the end: {ok_short}")
sys.exit(0 if ok_play and ok_short else 1)
PY
then echo "PASS sink (byte-identical playback)"; else echo "FAIL sink"; FAILED=1; fi
grep -qiE 'virtio_snd.*(timeout|error)|snd.*timed out' "$CON" && { echo "FAIL the driver logged a timeout or error"; grep -iE 'snd' "$CON" | head -5; FAILED=1; }
kill -0 "$DPID" 2>/dev/null || { echo "FAIL daemon died (log: $DLOG)"; FAILED=1; }
log "total $((SECONDS - T0)) s; daemon log: $DLOG, console: $CON"
exit "$FAILED"

#!/usr/bin/env bash
# Builds the virtio-ffi staticlib for thumbv7em-none-eabihf, compiles and
# links the two C programs with -Wall -Wextra -Werror, runs each under
# qemu-system-arm -M mps2-an386 and requires exit status 0 and its PASS
# lines. Prints the images' flash and RAM.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$here/build"
mkdir -p "$out"

for tool in arm-none-eabi-gcc qemu-system-arm; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool missing (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)" >&2; exit 1; }
done

(cd "$root" && cargo build -q -p virtio-backend-ffi --profile ffi-firmware --target thumbv7em-none-eabihf \
    --features panic-handler,driver)
lib="$target_dir/thumbv7em-none-eabihf/ffi-firmware/libvirtio_ffi.a"

cflags=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -g -std=c11
        -Wall -Wextra -Werror -ffunction-sections -fdata-sections
        -specs=nano.specs -nostartfiles -T "$here/link.ld" -Wl,--gc-sections -Wl,-z,noexecstack
        -I "$root/virtio-ffi/include" -DVIO_FEATURE_DRIVER)

run() {
    local name=$1
    shift
    arm-none-eabi-gcc "${cflags[@]}" "$here/startup.c" "$here/$name.c" "$lib" -o "$out/$name.elf"
    local log="$out/$name.log" status=0
    timeout 60 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$out/$name.elf" >"$log" 2>&1 || status=$?
    cat "$log"
    if [ "$status" -ne 0 ]; then
        echo "run.sh: $name exited with status $status" >&2
        exit 1
    fi
    for line in "$@"; do
        grep -qxF "$line" "$log" || { echo "run.sh: $name did not print '$line'" >&2; exit 1; }
    done
    echo "$name: exit status 0, PASS lines present"
}

run shm "PASS rng over shm" "PASS block over shm" "PASS"
run mmio "PASS rng over mmio" "PASS block over mmio" "PASS generic over mmio" "PASS"

# The footprint image: the library with only the rng device (its own target
# directory, so neither build invalidates the other).
(cd "$root" && CARGO_TARGET_DIR="$target_dir/ffi-footprint" cargo build -q -p virtio-backend-ffi \
    --profile ffi-firmware --target thumbv7em-none-eabihf --no-default-features --features panic-handler,rng)
lib="$target_dir/ffi-footprint/thumbv7em-none-eabihf/ffi-firmware/libvirtio_ffi.a"
run footprint "PASS footprint"

# flash = .text + .rodata + .ARM.exidx + .data (vector table apart),
# static RAM = .data + .bss - the window (as examples/firmware/footprint.sh counts).
elf_size() {
    arm-none-eabi-size -A "$1" | awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'
}
for name in footprint shm mmio; do
    elf="$out/$name.elf"
    vectors=$(elf_size "$elf" .vectors)
    flash=$(( $(elf_size "$elf" .text) + $(elf_size "$elf" .ARM.exidx) + $(elf_size "$elf" .data) ))
    window=$(arm-none-eabi-nm -S "$elf" | awk '$4 == "window" { print $2 }')
    window=$(( 16#${window:-0} ))
    ram=$(( $(elf_size "$elf" .data) + $(elf_size "$elf" .bss) - ${window:-0} ))
    printf '%-10s flash %6d B (vectors %d B apart)  static RAM %6d B (window %d B excluded)\n' \
        "$name" "$flash" "$vectors" "$ram" "${window:-0}"
done

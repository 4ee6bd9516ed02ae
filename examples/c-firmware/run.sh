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

(cd "$root" && cargo build -q -p virtio-ffi --profile ffi-firmware --target thumbv7em-none-eabihf \
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

size_tool=$(command -v llvm-size || command -v arm-none-eabi-size)
echo "image sizes ($size_tool; flash = text + data, RAM = data + bss):"
"$size_tool" "$out/shm.elf" "$out/mmio.elf"

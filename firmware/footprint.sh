#!/usr/bin/env bash
# Footprint of the minimal image: one entropy device on a split queue behind
# (and of the I2C image: an I2C adapter over an embedded-hal bus, src/bin/footprint_i2c.rs)
# the shared-memory transport's device end (src/bin/footprint.rs), built with
# opt-level = "z", LTO, codegen-units = 1, panic = "abort" (Cargo.toml's
# release profile) for thumbv7em-none-eabihf.
#
#   flash      = .text + .rodata + .data   (.vector_table reported apart)
#   static RAM = .data + .bss - the window (the largest .bss object)
#
# Installs what it needs (the target and rustup's llvm-tools).
set -euo pipefail
cd "$(dirname "$0")"

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1
host=$(rustc -vV | sed -n 's/^host: //p')
tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"

cargo build --release --no-default-features --bin footprint --bin footprint-i2c
target_dir=${CARGO_TARGET_DIR:-target}

# report ELF TITLE
report() {
elf=$1

sizes=$("$tools/llvm-size" -A "$elf")
section() { awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }' <<<"$sizes"; }
text=$(section .text)
rodata=$(section .rodata)
data=$(section .data)
bss=$(section .bss)
vectors=$(section .vector_table)
# The window: the largest object in .bss.
read -r window window_sym < <("$tools/llvm-nm" -S --size-sort --radix=d -C "$elf" |
    awk '$3 == "b" || $3 == "B" { size = $2 + 0; name = $4 } END { print size, name }')

flash=$((text + rodata + data))
ram=$((data + bss - window))
echo
echo "$2, thumbv7em-none-eabihf, opt-level=z, LTO, panic=abort:"
printf '  flash       %6d B  (.text %d + .rodata %d + .data %d; vector table %d B not counted)\n' \
    "$flash" "$text" "$rodata" "$data" "$vectors"
printf '  static RAM  %6d B  (.data %d + .bss %d - window %d B [%s])\n' \
    "$ram" "$data" "$bss" "$window" "$window_sym"
echo "  anchors: NXP RPMsg-Lite 2.9 KB flash / 352 B RAM; OpenAMP rpmsg 5.5 KB / 456 B (vendor figures); target <= 4096 B / 256 B"
echo "  largest functions (bytes, after LTO inlining):"
"$tools/llvm-nm" -S --size-sort --radix=d -C "$elf" | awk '$3 == "t" || $3 == "T" { printf "    %6d %s\n", $2 + 0, $4 }' | tail -8
}

report "$target_dir/thumbv7em-none-eabihf/release/footprint" \
    "footprint image (rng device + split queue + shm transport device end)"
report "$target_dir/thumbv7em-none-eabihf/release/footprint-i2c" \
    "i2c image (I2C adapter over an embedded-hal I2c bus, the EEPROM model + split queue + shm device end)"

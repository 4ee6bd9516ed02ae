#!/usr/bin/env bash
# Footprint of the firmware images the library is judged by, built for
# thumbv7em-none-eabihf with opt-level = "z", LTO, codegen-units = 1,
# panic = "abort" (Cargo.toml's release profile) and without the firmware's
# default features: virtio-core's ring capabilities off (split ring only,
# no indirect tables, no event index), no driver end.
#
#   minimal  src/bin/footprint.rs        rng device, split queue, shm device end,
#                                        served from the doorbell interrupt
#   block    src/bin/footprint_block.rs  rng + RAM block device on one device end
#   i2c      src/bin/footprint_i2c.rs    I2C adapter over an embedded-hal bus
#                                        (the EEPROM model)
#   c-abi    ../c-firmware/footprint.c, the same job as minimal in C
#            through virtio-ffi (when examples/c-firmware/run.sh built it)
#
#   flash      = .text + .rodata + .data   (.vector_table reported apart)
#   static RAM = .data + .bss - the window (the largest .bss object)
#                - the block image's RAM disk (backend storage, not state)
#
# Fails (exit 1) when
#   * the minimal image links core::panicking or core::fmt symbols, or a
#     64-bit division from the runtime library;
#   * the minimal image's flash or static RAM is more than 5% above the
#     figures recorded in footprint-budget.txt (update that file
#     deliberately, in the commit that changes the footprint).
#
# Installs what it needs (the target and rustup's llvm-tools).
set -euo pipefail
cd "$(dirname "$0")"

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1
host=$(rustc -vV | sed -n 's/^host: //p')
tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"
nm="$tools/llvm-nm"

cargo build -q --release --no-default-features --bin footprint --bin footprint-block --bin footprint-i2c
target_dir=${CARGO_TARGET_DIR:-target}
elf_dir="$target_dir/thumbv7em-none-eabihf/release"

# The issue's targets and the vendor anchors.
target_flash=4096
target_ram=256
budget_file=footprint-budget.txt
read -r budget_flash budget_ram < <(awk '$1 == "minimal" { print $2, $3 }' "$budget_file")

failed=0
declare -A FLASH RAM

# Legacy-mangled Rust names as llvm-nm -C leaves them, made readable.
clean() {
    sed -E 's/::h[0-9a-f]{16}$//; s/^_\$LT\$/</; s/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\$C\$/,/g; s/\$u7b\$/{/g; s/\$u7d\$/}/g; s/\.\./::/g'
}

# measure NAME ELF: sets FLASH[NAME], RAM[NAME]
measure() {
    local name=$1 elf=$2 sizes text rodata data bss window disk
    sizes=$("$tools/llvm-size" -A "$elf")
    section() { awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }' <<<"$sizes"; }
    text=$(section .text)
    rodata=$(section .rodata)
    data=$(section .data)
    bss=$(section .bss)
    # The window: the largest object in .bss (singleton VARs: size + flag),
    # or the object named by a third argument.
    if [[ -n ${3:-} ]]; then
        read -r window < <("$nm" -S --radix=d "$elf" | awk -v w="$3" '$4 == w { print $2 + 0 }')
    else
        read -r window < <("$nm" -S --size-sort --radix=d "$elf" |
            awk '$3 == "b" || $3 == "B" { size = $2 + 0 } END { print size + 0 }')
    fi
    # The block image's RAM disk (8 sectors): the second-largest .bss object.
    disk=0
    if [[ $name == block ]]; then
        disk=$("$nm" -S --size-sort --radix=d "$elf" |
            awk '$3 == "b" || $3 == "B" { s[++n] = $2 + 0 } END { print s[n - 1] + 0 }')
    fi
    FLASH[$name]=$((text + rodata + data))
    RAM[$name]=$((data + bss - window - disk))
    printf '| %-8s | %6d | %6d | %6d | %6d | %6d | %6d |\n' "$name" "${FLASH[$name]}" "$text" "$rodata" "$data" \
        "${RAM[$name]}" "$window"
}

# forbidden NAME ELF: core::panicking / core::fmt symbols, 64-bit division
forbidden() {
    local hits
    hits=$("$nm" -C "$2" | grep -E 'core::panicking|core::fmt|__aeabi_[u]?ldivmod|__udivdi3|__divdi3|__umoddi3' || true)
    if [[ -n $hits ]]; then
        echo "  $1 image: panicking / formatting / 64-bit division symbols linked:"
        sed 's/^/      /' <<<"$hits"
        return 1
    fi
    echo "  $1 image: no core::panicking, core::fmt or 64-bit division symbols"
}

echo
echo "Footprint, thumbv7em-none-eabihf, opt-level=z, LTO, codegen-units=1, panic=abort,"
echo "virtio-core ring capabilities off (split only):"
echo
echo "| image    |  flash |  .text | .rodata|  .data | st.RAM | window |"
echo "|----------|--------|--------|--------|--------|--------|--------|"
measure minimal "$elf_dir/footprint"
measure block "$elf_dir/footprint-block"
measure i2c "$elf_dir/footprint-i2c"
# The C ABI's minimal image (examples/c-firmware/footprint.c: rng over the
# shm device end through virtio-ffi, built by examples/c-firmware/run.sh).
c_elf=../c-firmware/build/footprint.elf
if [[ -f $c_elf ]]; then
    measure c-abi "$c_elf" window
else
    echo "| c-abi    | (not built: run examples/c-firmware/run.sh first)     |"
fi
echo
echo "anchors (vendor figures): NXP RPMsg-Lite 2.9 KB flash / 352 B RAM; OpenAMP rpmsg 5.5 KB / 456 B"
echo "targets: minimal <= $target_flash B flash, <= $target_ram B static RAM; rng + block + I2C <= 10240 B"
echo
forbidden minimal "$elf_dir/footprint" || failed=1
forbidden block "$elf_dir/footprint-block" || true
forbidden i2c "$elf_dir/footprint-i2c" || true

# What holds the minimal image's flash, by where the code comes from. LTO
# inlines across crates: a function counts where its symbol lives (the ring
# engine's pop, for instance, is inside the device's queue_notify).
echo
echo "minimal image, flash by origin (symbol sizes; inlined code counts where it landed):"
"$nm" -S --size-sort --radix=d -C "$elf_dir/footprint" | awk '
    $3 ~ /^[tTrRdD]$/ {
        size = $2 + 0; name = $4
        for (i = 5; i <= NF; i++) name = name " " $i
        sub(/^_\$LT\$/, "", name)
        if (name ~ /^DefaultHandler/) g = "interrupt handler: DeviceEnd::process, the message ring loop"
        else if (name ~ /^virtio_transport_shm(::|\.\.)bus(::|\.\.)DeviceEnd.*::message/) g = "shm message handling: parse, answer, DeviceCore setters (inlined)"
        else if (name ~ /queue_notify/) g = "device queue_notify: ring pop/walk, chain, writer (inlined)"
        else if (name ~ /^virtio_core(::|\.\.)queue/) g = "virtio-core ring engine (split)"
        else if (name ~ /^virtio_core(::|\.\.)device/) g = "virtio-core DeviceCore (run, build, setters)"
        else if (name ~ /^virtio_core(::|\.\.)memory/) g = "virtio-core guest memory (Region)"
        else if (name ~ /^virtio_transport_shm/) g = "shm transport (rings, DataArea, messages)"
        else if (name ~ /^virtio_devices/) g = "device model"
        else if (name ~ /memcpy|memclr|memset|memmove|__aeabi|compiler_builtins/) g = "compiler builtins (memcpy, memclr, shifts)"
        else if (name ~ /__cortex_m_rt_main/) g = "main: construction of the device end"
        else if (name ~ /__INTERRUPTS|__EXCEPTIONS/) next
        else g = "runtime, cortex-m, rest"
        sum[g] += size; total += size
    }
    END { for (g in sum) printf "  %6d  %s\n", sum[g], g }' | sort -rn

echo
echo "minimal image, largest functions (bytes, after LTO inlining):"
"$nm" -S --size-sort --radix=d -C "$elf_dir/footprint" |
    awk '$3 == "t" || $3 == "T" { printf "  %6d  %s\n", $2 + 0, $4 }' | tail -14 | sort -rn | clean
for image in block i2c; do
    elf="$elf_dir/footprint"
    [[ $image == block ]] && elf="$elf_dir/footprint-block"
    [[ $image == i2c ]] && elf="$elf_dir/footprint-i2c"
    echo "$image image, largest functions:"
    "$nm" -S --size-sort --radix=d -C "$elf" |
        awk '$3 == "t" || $3 == "T" { printf "  %6d  %s\n", $2 + 0, $4 }' | tail -5 | sort -rn | clean
done

# The shortfall against the issue's target, function by function: the
# largest functions that together are what must go (or shrink) to fit.
# (awk reads to the end rather than exiting: an early exit would SIGPIPE
# the sort, and with pipefail fail the script at random.)
flash=${FLASH[minimal]}
ram=${RAM[minimal]}
echo
if ((flash > target_flash)); then
    over=$((flash - target_flash))
    echo "minimal image: $flash B flash, $over B above the $target_flash B target; the largest functions cover it:"
    "$nm" -S --size-sort --radix=d -C "$elf_dir/footprint" |
        awk '$3 == "t" || $3 == "T" { print $2 + 0, $4 }' | sort -rn |
        awk -v over="$over" 'done { next } { acc += $1; printf "  %6d  (cumulative %6d)  %s\n", $1, acc, $2; if (acc >= over) done = 1 }' | clean
else
    echo "minimal image: $flash B flash, within the $target_flash B target"
fi
if ((ram > target_ram)); then
    echo "minimal image: $ram B static RAM, $((ram - target_ram)) B above the $target_ram B target (the device end's"
    echo "  state; per field in examples/firmware/README.md, \"Where the RAM goes\")"
else
    echo "minimal image: $ram B static RAM, within the $target_ram B target"
fi

# The budget: the recorded figures + 5%.
limit_flash=$((budget_flash * 105 / 100))
limit_ram=$((budget_ram * 105 / 100))
echo
echo "budget ($budget_file): minimal $budget_flash B flash / $budget_ram B RAM recorded, limit +5% = $limit_flash / $limit_ram"
if ((flash > limit_flash)); then
    echo "FAIL: minimal image flash $flash B is more than 5% above the recorded $budget_flash B" >&2
    failed=1
fi
if ((ram > limit_ram)); then
    echo "FAIL: minimal image static RAM $ram B is more than 5% above the recorded $budget_ram B" >&2
    failed=1
fi
if ((flash < budget_flash * 95 / 100 || ram < budget_ram * 95 / 100)); then
    echo "note: the minimal image is more than 5% below the budget; record the new figures in $budget_file"
fi
exit "$failed"

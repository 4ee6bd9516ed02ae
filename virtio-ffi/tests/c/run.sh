#!/usr/bin/env bash
# Host C unit test of virtio-ffi: builds the host staticlib (all devices and
# the driver end), compiles tests/c/test_api.c against the generated header
# with -Wall -Wextra -Werror and -fsanitize=address,undefined, and runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build -q -p virtio-backend-ffi --features driver)
lib="$target_dir/debug/libvirtio_ffi.a"
out="$target_dir/ffi-host-test"
mkdir -p "$out"
cc="${CC:-cc}"
"$cc" -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=all \
    -DVIO_FEATURE_DRIVER -I "$root/virtio-ffi/include" \
    "$here/test_api.c" "$lib" -lpthread -ldl -lm -o "$out/test_api"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/test_api"
# The header also compiles as C++ (extern "C" guards).
printf '#include "virtio_backend.h"\nint main() { uint32_t v; return vio_version(&v); }\n' |
    "${CXX:-c++}" -x c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -DVIO_FEATURE_DRIVER \
        -I "$root/virtio-ffi/include" -
echo "header compiles as C++"

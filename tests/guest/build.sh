#!/usr/bin/env bash
# Builds the DeltaMigrate multiboot test guest into tests/guest/out/guest.elf.
# Idempotent: does nothing if out/guest.elf is newer than every source.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/out"
elf="$out/guest.elf"
srcs=("$here/boot.S" "$here/guest.c" "$here/linker.ld" "$here/build.sh")

die() { echo "guest build: error: $*" >&2; exit 1; }

for t in gcc ld; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found (Debian: apt-get install gcc binutils)"
done

if [[ -f "$elf" ]]; then
    stale=0
    for s in "${srcs[@]}"; do [[ "$s" -nt "$elf" ]] && stale=1; done
    if [[ $stale -eq 0 ]]; then
        echo "guest build: up to date: $elf"
        exit 0
    fi
fi

mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cflags=(-m32 -ffreestanding -fno-pic -fno-stack-protector -nostdlib -O2
        -fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387 -Wall -Wextra -Werror)

gcc "${cflags[@]}" -c "$here/boot.S" -o "$tmp/boot.o" || die "assembling boot.S failed"
gcc "${cflags[@]}" -c "$here/guest.c" -o "$tmp/guest.o" || die "compiling guest.c failed"
ld -m elf_i386 -nostdlib -z max-page-size=0x1000 -z noexecstack --no-warn-rwx-segments \
   -T "$here/linker.ld" -o "$tmp/guest.elf" "$tmp/boot.o" "$tmp/guest.o" || die "linking failed"

# The multiboot header must sit in the first 8 KiB of the file, 4-byte aligned.
off=$(LC_ALL=C grep -obUaP '\x02\xb0\xad\x1b' "$tmp/guest.elf" | head -n1 | cut -d: -f1 || true)
[[ -n "$off" && "$off" -lt 8192 && $((off % 4)) -eq 0 ]] || die "multiboot header not found in first 8 KiB"

mv -f "$tmp/guest.elf" "$elf"
echo "guest build: built $elf"

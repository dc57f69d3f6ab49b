#!/usr/bin/env bash
# Short fuzzing pass for CI: installs cargo-fuzz if missing, builds every target, and runs each
# for FUZZ_SECONDS (default 20) on the committed corpus. Any crash, assertion failure, leak or
# timeout fails the run; the input that did it is left in fuzz/artifacts/<target>/.
#
# Only stable Rust is on these machines; cargo-fuzz passes nightly-only flags (-Zsanitizer=address
# and the sancov passes), which RUSTC_BOOTSTRAP=1 lets the stable compiler accept.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
seconds="${FUZZ_SECONDS:-20}"
targets=(watch_frames identity filter_header filter_file config_toml)

now() { date +%s; }
t0=$(now)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== fuzz: installing cargo-fuzz into ~/.cargo/bin"
    t=$(now)
    cargo install cargo-fuzz --version 0.13.2 --locked
    echo "== fuzz: cargo-fuzz installed in $(($(now) - t)) s"
fi
cargo fuzz --version

echo "== fuzz: building ${#targets[@]} targets (ASan, release)"
t=$(now)
cargo fuzz build
echo "== fuzz: built in $(($(now) - t)) s"

work=$(mktemp -d)
# filter_file's scratch store directory: tmpfs when there is one, since the store syncs files
# and directories on every open (about 70 execs/s on disk here, 2000 on tmpfs).
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    store=$(mktemp -d -p /dev/shm kep-fuzz.XXXXXX)
else
    store="$work/filter_file-store"
fi
trap 'rm -rf "$work" "$store"' EXIT
export KEP_FUZZ_DIR="$store"
failed=0
for target in "${targets[@]}"; do
    # New inputs go to the scratch directory (the first one); the committed corpus is only read.
    mkdir -p "$work/$target"
    log="$work/$target.log"
    t=$(now)
    if cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        echo "== fuzz: $target ok: ${execs:-?} execs in $(($(now) - t)) s"
    else
        echo "== fuzz: $target FAILED after $(($(now) - t)) s; the end of its log:"
        tail -n 60 "$log"
        ls -l "artifacts/$target" 2>/dev/null || true
        failed=1
    fi
done
echo "== fuzz: total $(($(now) - t0)) s"
exit "$failed"

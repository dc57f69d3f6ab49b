#!/usr/bin/env bash
# Build the .deb and the .rpm from a release build, into $CARGO_TARGET_DIR/packages/:
#
#   kube-event-pipe_<version>-1_<arch>.deb      (cargo deb)
#   kube-event-pipe-<version>-1.<arch>.rpm      (cargo generate-rpm)
#   upgrade-test/…-2…                           the same packages with the revision/release
#                                               bumped to 2, for tests/system/run.sh
#
# Needs cargo-deb and cargo-generate-rpm (`.ci/run` shows how to install them quickly).
# The release build also writes the man page, completions and Debian changelog that the
# packages take from target/release/assets/ (see build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TARGET/packages
VERSION=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')

rm -rf "$OUT"
mkdir -p "$OUT/upgrade-test"

echo "== release build"
cargo build --release --locked

# A fixed timestamp for the files in the .rpm (and its build time): the last commit's.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

echo "== cargo deb"
cargo deb --no-build --locked --deb-revision 1 --output "$OUT/"
cargo deb --no-build --locked --deb-revision 2 --output "$OUT/upgrade-test/"

echo "== cargo generate-rpm"
cargo generate-rpm --target-dir "$TARGET" -s 'release = "1"' --output "$OUT/"
cargo generate-rpm --target-dir "$TARGET" -s 'release = "2"' --output "$OUT/upgrade-test/"

ls -l "$OUT" "$OUT/upgrade-test"
echo "version $VERSION"

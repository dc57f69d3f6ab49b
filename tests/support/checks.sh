# The PASS/FAIL vocabulary of the shell-driven tests (tests/system/run.sh,
# tests/container/run.sh). Source it after setting TEST_NAME; the caller prints
# "$PASSED passed, $FAILED failed" at the end and exits 1 if FAILED is not 0.
# shellcheck shell=bash

PASSED=0
FAILED=0

log() { printf '%s\n' "$*"; }
die() {
    printf '%s: cannot run: %s\n' "$TEST_NAME" "$*" >&2
    exit 2
}
pass() {
    PASSED=$((PASSED + 1))
    log "PASS: $*"
}
fail() {
    FAILED=$((FAILED + 1))
    log "FAIL: $*"
}
# check "what" command...: PASS when the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

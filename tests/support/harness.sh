# What the shell-driven tests (tests/system/run.sh, tests/container/run.sh) share: the PASS/FAIL
# vocabulary and starting the fake API server. Source it after setting TEST_NAME; the caller
# prints "$PASSED passed, $FAILED failed" at the end and exits 1 if FAILED is not 0.
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

# launch_fake FAKE TOKEN: the fake API server on TLS with 50 events, its kubeconfig in
# $WORK/fake.kubeconfig; sets FAKE_PID, API (its URL) and ADMIN (its admin API's URL).
launch_fake() {
    "$1" --port 0 --events 50 --tls --token "$2" \
        --kubeconfig "$WORK/fake.kubeconfig" >"$WORK/fake.out" 2>"$WORK/fake.err" &
    FAKE_PID=$!
    for _ in $(seq 1 100); do
        [ "$(wc -l <"$WORK/fake.out")" -ge 2 ] && break
        sleep 0.1
    done
    API=$(sed -n 1p "$WORK/fake.out")
    ADMIN=$(sed -n 2p "$WORK/fake.out")
    [ -n "$ADMIN" ] || die "the fake API server did not start: $(cat "$WORK/fake.err")"
}

# event_stats FILE...: "<lines> <distinct identities> <bad lines>" over the event files given
# (missing ones skipped, .gz read through gzip); a file ending inside a line counts as bad.
event_stats() {
    python3 - "$@" <<'PY'
import gzip, json, os, sys
lines = bad = 0
seen = set()
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        bad += 1
    for raw in data.splitlines():
        lines += 1
        try:
            ev = json.loads(raw)
            md = ev["metadata"]
            seen.add((md.get("namespace"), md["name"], ev.get("count"),
                      (ev.get("series") or {}).get("count")))
        except Exception:
            bad += 1
print(lines, len(seen), bad)
PY
}

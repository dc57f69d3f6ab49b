#!/usr/bin/env bash
# Builds the container image from Containerfile with buildah, saves it as an OCI archive, and
# tests it for real with podman (runc, the host's network) against the fake API server on TLS:
#
#   packaging/build-packages.sh     # the .deb under $CARGO_TARGET_DIR/packages
#   tests/container/run.sh          # as root
#
# Where no registry is reachable (as here and in CI) the Containerfile's BASE is a local image
# imported from the debootstrapped bookworm root file system that tests/system/run.sh caches
# (made when missing); KEP_CONTAINER_BASE=docker.io/library/debian:bookworm-slim builds from
# the registry's image instead. The image store is a temporary one (vfs driver, removed at the
# end); the image stays as $CARGO_TARGET_DIR/container/kube-event-pipe_<version>.oci.tar
# (`podman load -i` or `skopeo copy oci-archive:…` it).
#
# The checks: the image's configuration (user, environment, volume, entry point, labels) and
# contents (no shell); then the image run as the original's users run it, with a kubeconfig
# mounted and a volume the Python original left its filter file in (its events are not
# written again), and the way a pod runs it, with the in-cluster ServiceAccount files,
# leader election and the metrics port, on a fresh named volume. Each run: the events on
# stdout, a restart on the same volume writes only what is new, the daemon is PID 1 as uid
# 12341 with no capabilities, and SIGTERM ends it with status 0 within a second.
# It prints the image size, the time from `podman run` to the first event and the memory.
#
# Needs: root, buildah, podman, runc, python3, curl; the fake API server (built from
# examples/ unless KEP_FAKE_APISERVER names one). Every check prints PASS or FAIL; the script
# ends with "N passed, M failed" and exits 1 if anything failed (2 if it could not run).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
PKG_DIR=${KEP_PKG_DIR:-$TARGET/packages}
CACHE=${KEP_ROOTFS_CACHE:-/var/cache/kube-event-pipe-ci}
TARBALL=$CACHE/bookworm-rootfs.tar
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -1)
IMAGE=localhost/kube-event-pipe:$VERSION
ARCHIVE=$TARGET/container/kube-event-pipe_$VERSION.oci.tar
UID_IMAGE=12341

WORK=
FAKE_PID=
RUN_PID=
SAMPLER_PID=

TEST_NAME="container test"
# shellcheck source=tests/support/harness.sh
. "$REPO/tests/support/harness.sh"

# The image store lives in $WORK: nothing is left in the host's own storage.
pm() { podman --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs --runtime runc "$@"; }
bh() { buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs "$@"; }

cleanup() {
    if [ -n "$SAMPLER_PID" ]; then
        kill "$SAMPLER_PID" 2>/dev/null
        wait "$SAMPLER_PID" 2>/dev/null
    fi
    if [ -n "$RUN_PID" ]; then
        kill "$RUN_PID" 2>/dev/null
        wait "$RUN_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -d "$WORK/storage" ]; then
        pm rm -a -f >/dev/null 2>&1
        pm volume prune -f >/dev/null 2>&1
        pm system reset -f >/dev/null 2>&1
    fi
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -z "${KEP_KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    fi
}

# ---- the image -----------------------------------------------------------------------------

# The base for the Containerfile's assemble stage: the cached bookworm tree without what that
# stage never runs (the .debs debootstrap left, documentation, locales, perl, systemd), so the
# vfs store (a full copy per layer and per container) stays small.
import_base() {
    if [ ! -f "$TARBALL" ]; then
        log "== no cached rootfs at $TARBALL: making it (tests/system/run.sh --prepare-rootfs)"
        "$REPO/tests/system/run.sh" --prepare-rootfs || die "cannot prepare the rootfs"
    fi
    python3 - "$TARBALL" <<'EOF' | TMPDIR=$WORK pm import - localhost/kep-base:bookworm >/dev/null ||
import sys, tarfile
skip = ("var/cache/apt/archives/", "usr/share/doc/", "usr/share/man/", "usr/share/locale/",
        "usr/share/info/", "usr/share/perl", "usr/lib/x86_64-linux-gnu/perl",
        "usr/lib/systemd/", "usr/lib/x86_64-linux-gnu/systemd/", "usr/lib/x86_64-linux-gnu/gconv/",
        "usr/lib/x86_64-linux-gnu/libicudata", "usr/lib/file/")
with tarfile.open(sys.argv[1]) as src, tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as dst:
    for m in src:
        name = m.name[2:] if m.name.startswith("./") else m.name
        if name.startswith(skip):
            continue
        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
EOF
        die "cannot import the rootfs as a base image"
}

build_image() {
    local base=${KEP_CONTAINER_BASE:-} t0
    local deb
    deb=$(ls "$PKG_DIR"/kube-event-pipe_"$VERSION"-*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "no kube-event-pipe_$VERSION-*.deb in $PKG_DIR: run packaging/build-packages.sh first"
    # The disk this takes at its peak (the import's temporary file, the base, a copy of it for
    # the build's container, the image), for .ci/run's disk budget.
    (
        peak=0
        while :; do
            n=$(du -sm "$WORK" 2>/dev/null | cut -f1)
            [ "${n:-0}" -gt "$peak" ] && peak=$n && echo "$peak" >"$WORK/disk-peak"
            sleep 1
        done
    ) &
    SAMPLER_PID=$!
    t0=$SECONDS
    if [ -z "$base" ]; then
        import_base
        base=localhost/kep-base:bookworm
        log "== base image: the cached bookworm rootfs, imported as $base ($((SECONDS - t0)) s)"
    fi
    # The build context is the repository; .dockerignore lets in only the .deb. The context
    # must hold target/packages/, so a CARGO_TARGET_DIR elsewhere is linked in.
    local ctx=$REPO
    if [ "$(cd "$PKG_DIR/../.." 2>/dev/null && pwd)" != "$REPO" ]; then
        ctx=$WORK/context
        mkdir -p "$ctx/target/packages"
        cp "$deb" "$ctx/target/packages/"
        cp "$REPO/.dockerignore" "$ctx/"
    fi
    t0=$SECONDS
    # No VERSION build argument: the label must come out right from the Containerfile alone.
    if ! TMPDIR=$WORK bh bud --runtime runc --pull=never --layers=false --build-arg BASE="$base" \
        -f "$REPO/Containerfile" -t "$IMAGE" "$ctx" >"$WORK/build.log" 2>&1; then
        cat "$WORK/build.log"
        die "buildah bud failed"
    fi
    kill "$SAMPLER_PID" 2>/dev/null
    wait "$SAMPLER_PID" 2>/dev/null
    SAMPLER_PID=
    pass "buildah bud -f Containerfile --build-arg BASE=$base built $IMAGE ($((SECONDS - t0)) s; the work directory peaked at $(cat "$WORK/disk-peak" 2>/dev/null || echo ?) MB)"
    pm rmi localhost/kep-base:bookworm >/dev/null 2>&1
    mkdir -p "$(dirname "$ARCHIVE")"
    rm -f "$ARCHIVE"
    check "saved as an OCI archive: $ARCHIVE" \
        sh -c 'podman --root "$1/storage" --runroot "$1/run" --storage-driver vfs save --format oci-archive -o "$2" "$3" >/dev/null 2>&1' \
        _ "$WORK" "$ARCHIVE" "$IMAGE"
}

IMAGE_SIZE=
IMAGE_GZ=
check_image() {
    local cfg mnt ctr
    cfg=$(pm image inspect "$IMAGE" --format json) || die "cannot inspect $IMAGE"
    printf '%s' "$cfg" >"$WORK/image.json"
    jq_() { python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; print(eval(sys.argv[2]))' "$WORK/image.json" "$1"; }
    check "image: runs as user 12341:12341 ($(jq_ 'c["Config"].get("User")'))" \
        test "$(jq_ 'c["Config"].get("User")')" = "$UID_IMAGE:$UID_IMAGE"
    check "image: KUBE_EVENT_PIPE_PERSISTENCE_PATH=/var/filters and no other KUBE_EVENT_PIPE_* setting (the rest are the original's defaults)" \
        test "$(jq_ '",".join(e for e in c["Config"]["Env"] if e.startswith("KUBE_EVENT_PIPE_"))')" = "KUBE_EVENT_PIPE_PERSISTENCE_PATH=/var/filters"
    check "image: /var/filters is a declared volume" \
        test "$(jq_ '",".join(sorted(c["Config"].get("Volumes") or {}))')" = "/var/filters"
    check "image: the entry point is the daemon itself (exec form, no shell)" \
        test "$(jq_ 'c["Config"].get("Entrypoint")')" = "['/usr/bin/kube-event-pipe']"
    check "image: OCI labels source, version $VERSION (Containerfile's default = Cargo.toml's version), licences MIT" \
        test "$(jq_ '" ".join(c["Config"]["Labels"].get("org.opencontainers.image." + k, "-") for k in ("source", "version", "licenses"))')" \
        = "https://gitlab.com/karolinepauls/kube-event-pipe $VERSION MIT"
    ctr=$(bh from --pull-never "$IMAGE") || die "buildah from $IMAGE"
    mnt=$(bh mount "$ctr") || die "buildah mount"
    (cd "$mnt" && find . -mindepth 1 \( -type f -o -type l \) | sort) >"$WORK/image.files"
    check "image: no shell, no package manager ($(wc -l <"$WORK/image.files") files: $(tr '\n' ' ' <"$WORK/image.files"))" \
        sh -c '! grep -E "/(sh|bash|dash|busybox|dpkg|apt)$" "$1"' _ "$WORK/image.files"
    check "image: /var/filters belongs to 12341:12341 (a fresh volume inherits it)" \
        test "$(stat -c %u:%g "$mnt/var/filters")" = "$UID_IMAGE:$UID_IMAGE"
    bh umount "$ctr" >/dev/null
    bh rm "$ctr" >/dev/null
    IMAGE_SIZE=$(jq_ 'c["Size"]')
    IMAGE_GZ=$(python3 - "$ARCHIVE" <<'EOF'
import gzip, json, sys, tarfile
# What a registry stores and a node pulls: the layers, gzip-compressed.
with tarfile.open(sys.argv[1]) as t:
    blob = lambda d: t.extractfile("blobs/" + d.replace(":", "/")).read()
    index = json.loads(t.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    total = 0
    for layer in manifest["layers"]:
        if layer["mediaType"].endswith("+gzip"):
            total += layer["size"]
        else:
            total += len(gzip.compress(blob(layer["digest"]), 6))
print(total)
EOF
)
    log "   image size: $(mib "$IMAGE_SIZE") MiB unpacked, $(mib "$IMAGE_GZ") MiB compressed (gzip, as pushed)"
}
mib() { python3 -c "print(f'{int(\"$1\") / 1048576:.1f}')"; }

# ---- the fake API server -------------------------------------------------------------------

ADMIN=
API=
start_fake() {
    local fake=${KEP_FAKE_APISERVER:-}
    if [ -z "$fake" ]; then
        (cd "$REPO" && cargo build --quiet --example fake_apiserver) || die "cannot build the fake"
        fake=$TARGET/debug/examples/fake_apiserver
    fi
    [ -x "$fake" ] || die "no fake API server at $fake"
    launch_fake "$fake" container-test-token
    log "== fake API server: $API (TLS, token), admin $ADMIN"
    chmod 0644 "$WORK/fake.kubeconfig"
    # The ServiceAccount files a pod gets.
    mkdir -p "$WORK/serviceaccount"
    python3 - "$WORK/fake.kubeconfig" "$WORK/serviceaccount/ca.crt" <<'EOF' || die "no CA in the fake's kubeconfig"
import base64, re, sys
text = open(sys.argv[1]).read()
data = re.search(r"certificate-authority-data:\s*(\S+)", text).group(1)
open(sys.argv[2], "wb").write(base64.b64decode(data))
EOF
    printf 'container-test-token' >"$WORK/serviceaccount/token"
    printf 'kube-system' >"$WORK/serviceaccount/namespace"
    chmod 0755 "$WORK/serviceaccount"
    chmod 0644 "$WORK/serviceaccount"/*
}
add_events() { curl -fsS -X POST "$ADMIN/fake/realistic?start=$1&count=$2" >/dev/null; }

# ---- running the image ---------------------------------------------------------------------

# run_image NAME ARGS...: `podman run` in the background, stdout (the events) to
# $WORK/NAME.out, stderr (the daemon's log) to $WORK/NAME.err; sets RUN_PID and T_START (ns).
T_START=
run_image() {
    local name=$1
    shift
    T_START=$(date +%s%N)
    pm run --rm --name "$name" --network host \
        --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$@" "$IMAGE" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    RUN_PID=$!
}
# stats FILE: "<lines> <distinct identities> <bad lines>"
stats() { event_stats "$1"; }
# wait_lines FILE N: until FILE holds N lines (30 s at most); then a little longer so that
# lines written twice would show too. Sets FIRST_MS: the ms from T_START to the first line.
FIRST_MS=
wait_lines() {
    local f=$1 n=$2
    FIRST_MS=
    for _ in $(seq 1 1500); do
        if [ -z "$FIRST_MS" ] && [ -s "$f" ]; then
            FIRST_MS=$((($(date +%s%N) - T_START) / 1000000))
        fi
        [ "$(cat "$f" 2>/dev/null | wc -l)" -ge "$n" ] && break
        kill -0 "$RUN_PID" 2>/dev/null || break
        sleep 0.02
    done
    sleep 1
}
wait_log() { # wait_log FILE REGEX
    for _ in $(seq 1 300); do
        grep -qE -- "$2" "$1" && return 0
        kill -0 "$RUN_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
host_pid() { pm inspect -f '{{.State.Pid}}' "$1" 2>/dev/null; }
status_field() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"; }

RSS_KIB=
HWM_KIB=
check_process() { # check_process WHAT NAME
    local what=$1 pid caps
    pid=$(host_pid "$2")
    [ -n "$pid" ] && [ "$pid" != 0 ] || {
        fail "$what: no running container $2"
        return
    }
    check "$what: the daemon is the container's PID 1 (NSpid $(status_field "$pid" NSpid))" \
        test "$(status_field "$pid" NSpid | awk '{print $NF}')" = 1
    check "$what: runs as uid and gid 12341 (Uid: $(status_field "$pid" Uid); Gid: $(status_field "$pid" Gid))" \
        sh -c '[ "$1" = "12341 12341 12341 12341" ] && [ "$2" = "12341 12341 12341 12341" ]' \
        _ "$(status_field "$pid" Uid)" "$(status_field "$pid" Gid)"
    caps="CapInh $(status_field "$pid" CapInh), CapPrm $(status_field "$pid" CapPrm), CapEff $(status_field "$pid" CapEff), CapAmb $(status_field "$pid" CapAmb)"
    check "$what: no capabilities ($caps)" \
        test "$(for c in CapInh CapPrm CapEff CapAmb; do status_field "$pid" $c; done | sort -u)" = 0000000000000000
    RSS_KIB=$(status_field "$pid" VmRSS | awk '{print $1}')
    HWM_KIB=$(status_field "$pid" VmHWM | awk '{print $1}')
}

# term_timed NAME: SIGTERM to the running image, and wait for it; sets TERM_RC and TERM_MS.
term_timed() {
    local t0
    t0=$(date +%s%N)
    pm kill --signal TERM "$1" >/dev/null 2>&1
    wait "$RUN_PID"
    TERM_RC=$?
    TERM_MS=$((($(date +%s%N) - t0) / 1000000))
    RUN_PID=
}

stop_image() { # stop_image WHAT NAME: SIGTERM; exit 0 within a second
    local what=$1
    term_timed "$2"
    check "$what: SIGTERM: exit status 0 ($TERM_RC) after $TERM_MS ms (podman's own teardown included), under 1 s" \
        sh -c '[ "$1" = 0 ] && [ "$2" -lt 1000 ]' _ "$TERM_RC" "$TERM_MS"
    check "$what: the daemon logged its drain (SIGTERM: finishing the lines in hand)" \
        grep -q "SIGTERM: finishing the lines in hand" "$WORK/$2.err"
}

# The Python original's state: its filter file from tests/fixtures/original (1,000 events it
# wrote, named migrated-*), made 100 s ago, in a volume directory its uid 12341 owns; 20 of
# those events are still on the server.
ORIGINAL_NAMES=
python_original_state() {
    local dir=$1 made
    made=$(($(date +%s) - 100))
    mkdir -p "$dir"
    cp "$REPO/tests/fixtures/original/events-1000.bloom" "$dir/$made.bloom"
    chown -R "$UID_IMAGE:$UID_IMAGE" "$dir"
    chmod 0750 "$dir"
    ORIGINAL_NAMES=$(python3 - "$REPO/tests/fixtures/original/events-1000.json" <<'EOF'
import json, sys
for e in json.load(open(sys.argv[1]))["events"][:20]:
    print(e["name"], e["count"] if e["count"] is not None else "")
EOF
)
    local name count body
    while read -r name count; do
        body='{"involvedObject":{"kind":"Pod","namespace":"default","name":"web-1"},"reason":"Pulled","message":"Container image already present on machine","source":{"component":"kubelet","host":"node-1"},"firstTimestamp":"2026-11-26T06:00:00Z","lastTimestamp":"2026-11-26T06:00:00Z","type":"Normal"'
        [ -n "$count" ] && body="$body,\"count\":$count"
        curl -fsS -X POST "$ADMIN/fake/events/default/$name" -d "$body}" >/dev/null ||
            die "cannot create $name on the fake"
    done <<<"$ORIGINAL_NAMES"
}

kubeconfig_tests() {
    local vol=$WORK/filters-original s n
    log "-- 1. as the original's image is run: a kubeconfig mounted, the original's volume"
    python_original_state "$vol"
    run_image kep-kubeconfig -v "$WORK/fake.kubeconfig:/etc/kube/config:ro" -e KUBECONFIG=/etc/kube/config \
        -v "$vol:/var/filters"
    wait_lines "$WORK/kep-kubeconfig.out" 50
    s=$(stats "$WORK/kep-kubeconfig.out")
    check "kubeconfig: the fake's 50 events on stdout, each once, none of the 20 the original wrote (lines/distinct/bad = $s)" \
        test "$s" = "50 50 0"
    check "kubeconfig: the log says the original's filter file is used" \
        grep -q "found 1 filter file of the Python kube-event-pipe" "$WORK/kep-kubeconfig.err"
    check "kubeconfig: it connected with the mounted kubeconfig" \
        grep -q "kube-event-pipe started.*credentials=.*kubeconfig KUBECONFIG=/etc/kube/config" "$WORK/kep-kubeconfig.err"
    check "kubeconfig: nothing but logs on stderr, no event there" sh -c '! grep -q "\"kind\":\"Event\"" "$1"' _ "$WORK/kep-kubeconfig.err"
    FIRST_KUBECONFIG=$FIRST_MS
    check_process kubeconfig kep-kubeconfig
    check "kubeconfig: filter file and resourceVersion written by uid 12341 into the volume" \
        sh -c '[ "$(find "$1" -name "*.bloom" -user 12341 | wc -l)" -ge 2 ] && [ "$(stat -c %u "$1/resource_version")" = 12341 ]' _ "$vol"
    stop_image kubeconfig kep-kubeconfig

    log "-- 2. restarted on the same volume"
    run_image kep-kubeconfig -v "$WORK/fake.kubeconfig:/etc/kube/config:ro" -e KUBECONFIG=/etc/kube/config \
        -v "$vol:/var/filters"
    check_restart_writes_only_new kubeconfig kep-kubeconfig 50
    stop_image "kubeconfig, restarted" kep-kubeconfig
}

# Runs the image in-cluster as packaging/kubernetes/statefulset.yaml runs it in a pod (identity
# from the pod name), metrics on port $1.
run_incluster() {
    run_image kep-incluster -e KUBERNETES_SERVICE_HOST=127.0.0.1 -e KUBERNETES_SERVICE_PORT="${API##*:}" \
        -v "$WORK/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
        -v kep-filters:/var/filters --read-only --cap-drop=ALL --security-opt=no-new-privileges \
        -e KUBE_EVENT_PIPE_LEADER_ELECTION=true -e KUBE_EVENT_PIPE_IDENTITY=kube-event-pipe-0 \
        -e KUBE_EVENT_PIPE_LEASE_NAMESPACE=kube-system -e KUBE_EVENT_PIPE_METRICS_ADDRESS="127.0.0.1:$1"
}

# Container $2 ($1 in messages) was restarted on its volume: five new events from index $3 on
# are written, and nothing written before is written again.
check_restart_writes_only_new() {
    local s
    wait_log "$WORK/$2.err" "resuming the watch|watching from here" || true
    add_events "$3" 5 || fail "adding events to the fake"
    wait_lines "$WORK/$2.out" 5
    s=$(stats "$WORK/$2.out")
    check "$1, restarted: only the 5 new events written, nothing again (lines/distinct/bad = $s)" \
        test "$s" = "5 5 0"
}

incluster_tests() {
    local s n port body
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log "-- 3. in-cluster: KUBERNETES_SERVICE_HOST/PORT, the ServiceAccount files, a fresh named volume, leader election,"
    log "   a read-only root file system, no capabilities, no new privileges (as packaging/kubernetes/statefulset.yaml)"
    pm volume create kep-filters >/dev/null || die "podman volume create"
    run_incluster "$port"
    n=$(curl -fsS "$ADMIN/fake/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
    wait_lines "$WORK/kep-incluster.out" "$n"
    s=$(stats "$WORK/kep-incluster.out")
    check "in-cluster: all $n events of the fake on stdout, each once (lines/distinct/bad = $s)" test "$s" = "$n $n 0"
    check "in-cluster: it connected as the pod's ServiceAccount, to https://127.0.0.1:${API##*:}" \
        grep -q "kube-event-pipe started.*server=https://127.0.0.1:${API##*:}/ credentials=kubeconfig none (the pod's in-cluster service account)" "$WORK/kep-incluster.err"
    FIRST_INCLUSTER=$FIRST_MS
    body=$(curl -fsS "http://127.0.0.1:$port/readyz" 2>&1)
    check "in-cluster: /readyz answers 200 ($body)" curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"
    check "in-cluster: /healthz answers 200" curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz"
    SYNC_S=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "kube_event_pipe_initial_sync_duration_seconds" { printf "%.3f", $2 }')
    check "in-cluster: it holds the Lease kube-system/kube-event-pipe as kube-event-pipe-0" \
        sh -c 'curl -fsS "$1/fake/leases/kube-system/kube-event-pipe" | grep -q "\"holderIdentity\":\"kube-event-pipe-0\""' _ "$ADMIN"
    check_process in-cluster kep-incluster
    stop_image in-cluster kep-incluster

    log "-- 4. in-cluster, restarted on the same volume"
    run_incluster "$port"
    check_restart_writes_only_new in-cluster kep-incluster 60
    # A second signal while the drain waits (here on the API server, which stops answering,
    # so the leader's release of the Lease hangs): the daemon exits at once with 130.
    curl -fsS -X POST "$ADMIN/fake/fault" -d '{"fault":"stall"}' >/dev/null || fail "stalling the fake"
    pm kill --signal TERM kep-incluster >/dev/null 2>&1
    sleep 0.5
    check "in-cluster, restarted: after SIGTERM, the drain waits on the stalled API server" kill -0 "$RUN_PID"
    term_timed kep-incluster
    check "in-cluster, restarted: a second SIGTERM: exit status 130 ($TERM_RC) after $TERM_MS ms, under 1 s" \
        sh -c '[ "$1" = 130 ] && [ "$2" -lt 1000 ]' _ "$TERM_RC" "$TERM_MS"
    check "in-cluster, restarted: the daemon logged it (SIGTERM again: exiting at once)" \
        grep -q "SIGTERM again: exiting at once" "$WORK/kep-incluster.err"
    curl -fsS -X POST "$ADMIN/fake/fault" -d '{"fault":"clear"}' >/dev/null
}

main() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    local t
    for t in buildah podman runc python3 curl; do
        command -v "$t" >/dev/null || die "$t is missing"
    done
    WORK=$(mktemp -d /var/tmp/kep-container-test.XXXXXX)
    chmod 0755 "$WORK"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local start=$SECONDS
    build_image
    check_image
    start_fake
    FIRST_KUBECONFIG=
    FIRST_INCLUSTER=
    SYNC_S=
    kubeconfig_tests
    local rss_kubeconfig=$RSS_KIB hwm_kubeconfig=$HWM_KIB
    incluster_tests

    log "== figures"
    log "   image: $(mib "$IMAGE_SIZE") MiB unpacked, $(mib "$IMAGE_GZ") MiB compressed; archive $ARCHIVE"
    log "   podman run to the first event on stdout: ${FIRST_KUBECONFIG:-?} ms (kubeconfig), ${FIRST_INCLUSTER:-?} ms (in-cluster, leader election; the daemon's own initial sync: ${SYNC_S:-?} s)"
    log "   memory after the initial sync (50 and 75 events): RSS ${rss_kubeconfig:-?} KiB, peak ${hwm_kubeconfig:-?} KiB (kubeconfig); RSS ${RSS_KIB:-?} KiB, peak ${HWM_KIB:-?} KiB (in-cluster)"
    log "== container test took $((SECONDS - start)) s"
    log "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

main "$@"

#!/usr/bin/env bash
# System test of the .deb and the .rpm under a real systemd (PID 1 of a systemd-nspawn
# container booted from a debootstrap'ed Debian bookworm), against the fake API server running
# on the host (the container shares the host's network).
#
#   packaging/build-packages.sh        # the packages under $CARGO_TARGET_DIR/packages
#   tests/system/run.sh                # as root
#   tests/system/run.sh --prepare-rootfs   # only debootstrap the cached rootfs (network-bound;
#                                          # .ci/run does it in the background meanwhile)
#
# Needs: root, debootstrap, systemd-nspawn (systemd-container), nsenter, python3, curl, cargo.
# The rootfs is debootstrap'ed once and cached as a tarball (KEP_ROOTFS_CACHE, default
# /var/cache/kube-event-pipe-ci); each container boots with --volatile=overlay, so every boot
# starts from the pristine tree. The fake API server is built from examples/ (debug) unless
# KEP_FAKE_APISERVER names an already built one (.ci/run does, having freed the debug build).
#
# Every check prints PASS or FAIL with what it checked; the script ends with
# "N passed, M failed" and exits 1 if anything failed (2 if it could not run at all).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
PKG_DIR=${KEP_PKG_DIR:-$TARGET/packages}
CACHE=${KEP_ROOTFS_CACHE:-/var/cache/kube-event-pipe-ci}
# rpm: to install the .rpm inside the container (Debian's rpm runs the scriptlets there).
INCLUDE=systemd,systemd-sysv,dbus,logrotate,procps,ca-certificates,rpm
TARBALL=$CACHE/bookworm-rootfs.tar
TIMEOUT=${KEP_SYSTEMCTL_TIMEOUT:-60}

WORK=
NSPAWN_PID=
CPID=
FAKE_PID=

TEST_NAME="system test"
# shellcheck source=tests/support/harness.sh
. "$REPO/tests/support/harness.sh"

# ---- the container -------------------------------------------------------------------------

apt_mirror() {
    # The mirror apt already uses for Debian (deb822 or one-line sources).
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
    if [ -z "$m" ]; then
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" && $0 ~ /debian/ && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }')
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

ensure_rootfs() {
    # One builder at a time (a background --prepare-rootfs and a test run may overlap).
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    if [ -f "$TARBALL" ] && [ "$(cat "$TARBALL.include" 2>/dev/null)" = "$INCLUDE" ]; then
        flock -u 9
        return 0
    fi
    local mirror tmp
    mirror=$(apt_mirror)
    log "== debootstrap bookworm ($INCLUDE) from $mirror into the cache $TARBALL"
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/build.XXXXXX")
    if ! debootstrap --variant=minbase --include="$INCLUDE" bookworm "$tmp/root" "$mirror" \
        >"$tmp/debootstrap.log" 2>&1; then
        tail -20 "$tmp/debootstrap.log" >&2
        rm -rf "$tmp"
        die "debootstrap failed"
    fi
    # Clean state: no machine id (systemd makes one per boot), no apt lists.
    : >"$tmp/root/etc/machine-id"
    rm -rf "$tmp/root/var/lib/apt/lists/"* "$tmp/root/var/cache/apt/"*.bin
    tar -C "$tmp/root" -cf "$TARBALL.tmp" . || die "tar of the rootfs failed"
    mv "$TARBALL.tmp" "$TARBALL"
    printf '%s\n' "$INCLUDE" >"$TARBALL.include"
    rm -rf "$tmp"
    flock -u 9
}

# boot NAME: a fresh container from the cached tree; sets NSPAWN_PID and CPID (its PID 1).
boot() {
    local name=$1 i
    systemd-nspawn -D "$WORK/root" --register=no --keep-unit --boot --volatile=overlay \
        --machine="$name" --bind-ro="$WORK/pkgs:/packages" \
        </dev/null >"$WORK/$name.console" 2>&1 &
    NSPAWN_PID=$!
    CPID=
    for i in $(seq 1 300); do
        CPID=$(ps -o pid= --ppid "$NSPAWN_PID" 2>/dev/null | head -1 | tr -d ' ')
        if [ -n "$CPID" ] && [ -S "/proc/$CPID/root/run/systemd/private" ]; then
            break
        fi
        sleep 0.1
    done
    [ -n "$CPID" ] && [ -S "/proc/$CPID/root/run/systemd/private" ] ||
        die "container $name did not boot (see $WORK/$name.console)"
    # Wait for the boot to settle (multi-user.target reached) so timings are not skewed.
    for i in $(seq 1 100); do
        case $(in_ct systemctl is-system-running 2>/dev/null) in
        running | degraded) break ;;
        esac
        sleep 0.1
    done
    log "== container $name booted (PID 1 = host PID $CPID)"
}

shutdown_ct() {
    [ -n "$NSPAWN_PID" ] || return 0
    kill -TERM "$NSPAWN_PID" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$NSPAWN_PID" 2>/dev/null
    wait "$NSPAWN_PID" 2>/dev/null
    NSPAWN_PID=
    CPID=
}

# in_ct CMD...: run a command inside the container (all its namespaces), clean environment.
in_ct() {
    nsenter -t "$CPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
# ct_path PATH: the container's file as the host sees it.
ct_path() { printf '/proc/%s/root%s' "$CPID" "$1"; }

cleanup() {
    shutdown_ct
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -z "${KEP_KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    fi
}

# ---- the fake API server -------------------------------------------------------------------

ADMIN=
start_fake() {
    local fake=${KEP_FAKE_APISERVER:-}
    if [ -z "$fake" ]; then
        log "== building the fake API server (examples/fake_apiserver.rs)"
        (cd "$REPO" && cargo build --quiet --example fake_apiserver) || die "cannot build the fake"
        fake=$TARGET/debug/examples/fake_apiserver
    fi
    [ -x "$fake" ] || die "no fake API server at $fake"
    log "== starting the fake API server ($fake)"
    launch_fake "$fake" system-test-token
    log "   API $(sed -n 1p "$WORK/fake.out"), admin $ADMIN"
    doc_kubeconfig
}

# The kubeconfig the way packaging/KUBECONFIG.md makes it (step 4: kubectl config set-cluster
# with the CA embedded, set-credentials with the token, set-context, use-context), from the
# fake's server URL, CA and token; the daemon in the container then uses it. Without kubectl
# on the host, the fake's own kubeconfig is used (and said so).
KUBECONFIG_FILE=
doc_kubeconfig() {
    KUBECONFIG_FILE=$WORK/fake.kubeconfig
    if ! command -v kubectl >/dev/null; then
        log "   kubectl is not installed: using the fake's kubeconfig, not one made as KUBECONFIG.md says"
        return 0
    fi
    local server token ca kc=$WORK/doc.kubeconfig
    server=$(sed -n 1p "$WORK/fake.out")
    token=system-test-token
    ca=$WORK/ca.crt
    python3 - "$WORK/fake.kubeconfig" "$ca" <<'EOF' || die "cannot read the CA from the fake's kubeconfig"
import base64, re, sys
text = open(sys.argv[1]).read()
data = re.search(r"certificate-authority-data:\s*(\S+)", text).group(1)
open(sys.argv[2], "wb").write(base64.b64decode(data))
EOF
    kubectl config --kubeconfig="$kc" set-cluster kubernetes \
        --server="$server" --certificate-authority="$ca" --embed-certs=true >/dev/null &&
        kubectl config --kubeconfig="$kc" set-credentials kube-event-pipe --token="$token" >/dev/null &&
        kubectl config --kubeconfig="$kc" set-context kube-event-pipe \
            --cluster=kubernetes --user=kube-event-pipe >/dev/null &&
        kubectl config --kubeconfig="$kc" use-context kube-event-pipe >/dev/null ||
        die "kubectl config failed"
    KUBECONFIG_FILE=$kc
    log "   kubeconfig made with kubectl config set-cluster/set-credentials/set-context/use-context (KUBECONFIG.md)"
}
# add_events START COUNT: create realistic events START..START+COUNT-1 on the fake.
add_events() {
    curl -fsS -X POST "$ADMIN/fake/realistic?start=$1&count=$2" >/dev/null
}
fake_event_count() {
    curl -fsS "$ADMIN/fake/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])'
}

# ---- the event log -------------------------------------------------------------------------

LOGDIR=/var/log/kube-event-pipe
# log_stats [FILE...]: "<lines> <distinct identities> <bad lines>" over the given container
# files (default: events.log and all its rotations, .gz included).
log_stats() {
    local files=("$@")
    if [ ${#files[@]} -eq 0 ]; then
        files=("$(ct_path $LOGDIR)"/events.log*)
    else
        files=("${files[@]/#/$(ct_path '')}")
    fi
    event_stats "${files[@]}"
}
# wait_lines N [FILE...]: wait until the files hold at least N lines; prints the final stats.
wait_lines() {
    local n=$1 stats
    shift
    for _ in $(seq 1 100); do
        stats=$(log_stats "$@")
        [ "${stats%% *}" -ge "$n" ] && break
        sleep 0.2
    done
    # A little longer, so that lines written twice would show up too.
    sleep 0.5
    log_stats "$@"
}
# expect_stats WHAT "LINES DISTINCT BAD" ACTUAL
expect_stats() {
    if [ "$2" = "$3" ]; then
        pass "$1: lines/distinct/bad = $3"
    else
        fail "$1: lines/distinct/bad = $3, expected $2"
    fi
}

# ---- unit helpers --------------------------------------------------------------------------

prop() { in_ct systemctl show -p "$1" --value kube-event-pipe.service; }
sc() { in_ct timeout "$TIMEOUT" systemctl "$@"; }
is_active() { [ "$(prop ActiveState)" = active ] && [ "$(prop SubState)" = running ]; }

put_kubeconfig() {
    in_ct sh -c 'cat > /etc/kube-event-pipe/kubeconfig' <"$KUBECONFIG_FILE" &&
        in_ct chown root:kube-event-pipe /etc/kube-event-pipe/kubeconfig &&
        in_ct chmod 0640 /etc/kube-event-pipe/kubeconfig
}

check_user() {
    local fmt=$1
    check "$fmt: system user kube-event-pipe exists with a system uid and no login shell" \
        sh -c '[ -n "$1" ] && [ "$(echo "$1" | cut -d: -f3)" -lt 1000 ] &&
               case "$(echo "$1" | cut -d: -f7)" in */nologin|*/false) true;; *) false;; esac' \
        _ "$(in_ct getent passwd kube-event-pipe)"
    check "$fmt: kube-event-pipe is in the groups kube-event-pipe and adm" \
        sh -c 'case " $1 " in *" kube-event-pipe "*) case " $1 " in *" adm "*) true;; *) false;; esac;; *) false;; esac' \
        _ "$(in_ct id -nG kube-event-pipe)"
    check "$fmt: /etc/kube-event-pipe is root:kube-event-pipe 0750" \
        test "$(in_ct stat -c '%U:%G %a' /etc/kube-event-pipe)" = "root:kube-event-pipe 750"
    check "$fmt: /etc/kube-event-pipe/config.toml is root:kube-event-pipe 0640" \
        test "$(in_ct stat -c '%U:%G %a' /etc/kube-event-pipe/config.toml)" = "root:kube-event-pipe 640"
}

check_skipped() {
    local fmt=$1
    # Without a kubeconfig a start is skipped, not failed, and status says why.
    sc start kube-event-pipe.service
    check "$fmt: without a kubeconfig the unit is inactive, not failed (ActiveState=$(prop ActiveState), Result=$(prop Result))" \
        test "$(prop ActiveState)/$(prop Result)" = "inactive/success"
    check "$fmt: ConditionResult=no and status names ConditionPathExists=/etc/kube-event-pipe/kubeconfig" \
        sh -c '[ "$1" = no ] && printf "%s" "$2" | grep -q "ConditionPathExists=/etc/kube-event-pipe/kubeconfig was not met"' \
        _ "$(prop ConditionResult)" "$(in_ct systemctl status kube-event-pipe.service 2>&1)"
}

check_started() {
    local fmt=$1 expected=$2 t0 t1 stats
    put_kubeconfig || fail "$fmt: installing the kubeconfig"
    t0=$(date +%s%N)
    if sc start kube-event-pipe.service; then
        t1=$(date +%s%N)
        pass "$fmt: systemctl start returned (after READY=1) in $(((t1 - t0) / 1000000)) ms"
    else
        fail "$fmt: systemctl start did not return success within ${TIMEOUT}s (state $(prop ActiveState)/$(prop SubState); no READY=1?)"
    fi
    check "$fmt: active (running) in systemctl status" \
        sh -c 'printf "%s" "$1" | grep -q "Active: active (running)"' _ "$(in_ct systemctl status kube-event-pipe.service 2>&1)"
    check "$fmt: the daemon published a STATUS= line (StatusText=\"$(prop StatusText)\")" \
        test -n "$(prop StatusText)"
    stats=$(wait_lines "$expected")
    expect_stats "$fmt: the $expected events of the fake in $LOGDIR/events.log" "$expected $expected 0" "$stats"
    check "$fmt: events.log is owned by kube-event-pipe, mode 0640" \
        test "$(in_ct stat -c '%U %a' $LOGDIR/events.log)" = "kube-event-pipe 640"
    check "$fmt: the daemon's own logs are in journalctl -u kube-event-pipe" \
        sh -c 'printf "%s" "$1" | grep -q "kube-event-pipe started"' _ "$(in_ct journalctl -u kube-event-pipe.service --no-pager -o cat)"
    check "$fmt: no warning about a config file or kubeconfig readable by others" \
        sh -c '! printf "%s" "$1" | grep "readable by every local user"' _ "$(in_ct journalctl -u kube-event-pipe.service --no-pager -o cat)"
    check_metrics "$fmt"
    # An operator runs the daemon by hand with the packaged config while the service runs.
    local out rc=0
    out=$(in_ct timeout 20 kube-event-pipe 2>&1) || rc=$?
    check "$fmt: a second daemon run by hand exits 2 (got $rc), naming the state directory and the service's pid" \
        sh -c '[ "$1" = 2 ] && printf "%s" "$2" | grep -q "another kube-event-pipe (pid $3) is using the state directory /var/lib/kube-event-pipe"' \
        _ "$rc" "$out" "$(prop MainPID)"
}

# check_metrics FORMAT: the packaged config serves the endpoints on 127.0.0.1:9784 (the
# container shares the host's network): /readyz turns 200 once the watch runs, and /metrics,
# read under the unit's sandbox (ProtectProc=invisible, ProcSubset=pid, the syscall filter),
# has the sync done and the process's own figures.
METRICS=http://127.0.0.1:9784
check_metrics() {
    local fmt=$1 scrape
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$METRICS/readyz" 2>/dev/null && break
        sleep 0.1
    done
    check "$fmt: GET $METRICS/readyz answers 200 ($(curl -sS "$METRICS/readyz" 2>&1))" \
        curl -fsS -o /dev/null "$METRICS/readyz"
    check "$fmt: GET $METRICS/healthz answers 200" curl -fsS -o /dev/null "$METRICS/healthz"
    scrape=$(curl -fsS "$METRICS/metrics")
    check "$fmt: /metrics: initial sync done, process CPU, memory and descriptors read in the sandbox" \
        sh -c 'for re in "^kube_event_pipe_initial_sync_done 1" "^process_cpu_seconds_total [0-9]" \
                   "^process_resident_memory_bytes [1-9]" "^process_open_fds [1-9]" "^process_max_fds [1-9]"; do
                   printf "%s\n" "$1" | grep -q "$re" || { echo "missing: $re" >&2; exit 1; }
               done' _ "$scrape"
    if command -v promtool >/dev/null; then
        check "$fmt: promtool check metrics finds no problem in the scrape" \
            sh -c 'out=$(printf "%s\n" "$1" | promtool check metrics 2>&1) && [ -z "$out" ]' _ "$scrape"
    fi
}

check_no_user_files() {
    local fmt=$1 left
    left=$(in_ct find / -xdev \( -user kube-event-pipe -o -group kube-event-pipe \) -print 2>/dev/null | head -5)
    check "$fmt: no file owned by the user or group kube-event-pipe is left${left:+ (found: $left)}" test -z "$left"
}

# ---- the .deb ------------------------------------------------------------------------------

deb_tests() {
    local deb=$1 deb2=$2 stats inv pid blooms rv n
    boot kep-deb

    log "-- 1. install the .deb"
    check "deb: dpkg -i $(basename "$deb")" in_ct dpkg -i "/packages/$(basename "$deb")"
    check_user deb
    check "deb: unit enabled (is-enabled: $(in_ct systemctl is-enabled kube-event-pipe.service 2>&1))" \
        test "$(in_ct systemctl is-enabled kube-event-pipe.service 2>&1)" = enabled
    check "deb: config.toml and the logrotate snippet are conffiles" \
        sh -c 'printf "%s" "$1" | grep -q "/etc/kube-event-pipe/config.toml" && printf "%s" "$1" | grep -q "/etc/logrotate.d/kube-event-pipe"' \
        _ "$(in_ct cat /var/lib/dpkg/info/kube-event-pipe.conffiles)"
    check "deb: man page, completions, doc files installed" \
        in_ct test -s /usr/share/man/man1/kube-event-pipe.1.gz -a -s /usr/share/bash-completion/completions/kube-event-pipe \
        -a -s /usr/share/zsh/vendor-completions/_kube-event-pipe -a -s /usr/share/fish/vendor_completions.d/kube-event-pipe.fish \
        -a -s /usr/share/doc/kube-event-pipe/rbac.yaml -a -s /usr/share/doc/kube-event-pipe/KUBECONFIG.md \
        -a -s /usr/share/doc/kube-event-pipe/copyright -a -s /usr/share/doc/kube-event-pipe/changelog.Debian.gz
    # The install itself tried a start (postinst); it must have been skipped the same way.
    check "deb: the install left the unit inactive, not failed ($(prop ActiveState)/$(prop Result))" \
        test "$(prop ActiveState)/$(prop Result)" = "inactive/success"
    check_skipped deb

    log "-- 2. kubeconfig in place, systemctl start"
    check_started deb 50

    log "-- 3. logrotate -f"
    add_events 50 10 || fail "deb: adding events to the fake"
    stats=$(wait_lines 60)
    expect_stats "deb: 60 events before the rotation" "60 60 0" "$stats"
    check "deb: logrotate -f /etc/logrotate.d/kube-event-pipe" in_ct logrotate -f /etc/logrotate.d/kube-event-pipe
    check "deb: the old file was rotated to events.log.1 or events.log.1.gz" \
        sh -c '[ -e "$1/events.log.1" ] || [ -e "$1/events.log.1.gz" ]' _ "$(ct_path $LOGDIR)"
    add_events 60 10 || fail "deb: adding events to the fake"
    stats=$(wait_lines 10 $LOGDIR/events.log)
    expect_stats "deb: the 10 events after the rotation are in the new events.log" "10 10 0" "$stats"
    stats=$(log_stats)
    expect_stats "deb: all files together hold each of the 70 events exactly once" "70 70 0" "$stats"
    check "deb: the new events.log was created by logrotate as kube-event-pipe:adm 0640" \
        test "$(in_ct stat -c '%U:%G %a' $LOGDIR/events.log)" = "kube-event-pipe:adm 640"
    check "deb: still active after the rotation" is_active

    log "-- 4. restart and reload"
    pid=$(prop MainPID)
    check "deb: systemctl restart" sc restart kube-event-pipe.service
    check "deb: restarted: a new main process ($pid -> $(prop MainPID)), active" \
        sh -c '[ "$1" != "$2" ] && [ "$2" != 0 ]' _ "$pid" "$(prop MainPID)"
    add_events 70 10 || fail "deb: adding events to the fake"
    stats=$(wait_lines 80)
    expect_stats "deb: after the restart only the 10 new events were written (none twice)" "80 80 0" "$stats"
    pid=$(prop MainPID)
    n=$(in_ct journalctl -u kube-event-pipe.service --no-pager -o cat | grep -c 'reopened destination')
    check "deb: systemctl reload" sc reload kube-event-pipe.service
    add_events 80 5 || fail "deb: adding events to the fake"
    stats=$(wait_lines 85)
    expect_stats "deb: the events after the reload are written once" "85 85 0" "$stats"
    check "deb: reload kept the main process ($pid) and it logged SIGHUP and a reopen of the destination" \
        sh -c '[ "$1" = "$2" ] && printf "%s" "$3" | grep -q "SIGHUP" && [ "$(printf "%s" "$3" | grep -c "reopened destination")" -gt "$4" ]' \
        _ "$pid" "$(prop MainPID)" "$(in_ct journalctl -u kube-event-pipe.service --no-pager -o cat)" "$n"

    log "-- 5. upgrade to $(basename "$deb2")"
    in_ct sh -c 'echo "# edited by the system test" >> /etc/kube-event-pipe/config.toml'
    inv=$(prop InvocationID)
    blooms=$(in_ct sh -c 'ls /var/lib/kube-event-pipe/*.bloom' | sort)
    rv=$(in_ct cat /var/lib/kube-event-pipe/resource_version 2>/dev/null)
    check "deb: dpkg -i $(basename "$deb2") (upgrade)" in_ct dpkg -i "/packages/$(basename "$deb2")"
    check "deb: the installed version is now $(in_ct dpkg-query -W -f '${Version}' kube-event-pipe)" \
        test "$(in_ct dpkg-query -W -f '${Version}' kube-event-pipe)" = "$(dpkg-deb -f "$deb2" Version)"
    check "deb: the operator's edit of config.toml was kept, no .dpkg-dist/.dpkg-new left" \
        sh -c 'grep -q "^# edited by the system test" "$1/config.toml" && ! ls "$1"/*.dpkg-* >/dev/null 2>&1' \
        _ "$(ct_path /etc/kube-event-pipe)"
    check "deb: the running service was restarted by the upgrade (new InvocationID) and is active" \
        sh -c '[ "$1" != "$2" ] && [ -n "$2" ]' _ "$inv" "$(prop InvocationID)"
    check "deb: still active after the upgrade" is_active
    check "deb: after the upgrade /etc/kube-event-pipe/config.toml is still root:kube-event-pipe 0640" \
        test "$(in_ct stat -c '%U:%G %a' /etc/kube-event-pipe/config.toml)" = "root:kube-event-pipe 640"
    check "deb: the dedup state was kept (filters: $(echo "$blooms" | wc -w), resourceVersion ${rv:-none})" \
        sh -c '[ -n "$1" ] && for f in $1; do [ -e "$2$f" ] || exit 1; done' _ "$blooms" "$(ct_path '')"
    add_events 85 5 || fail "deb: adding events to the fake"
    stats=$(wait_lines 90)
    expect_stats "deb: after the upgrade only the 5 new events were written" "90 90 0" "$stats"
    # Only a running service is restarted: stop it, reinstall, it must stay stopped.
    sc stop kube-event-pipe.service
    check "deb: reinstalling while the service is stopped leaves it stopped" \
        sh -c 'nsenter -t "$1" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i "/packages/$2" >/dev/null &&
               [ "$(nsenter -t "$1" -a systemctl show -p ActiveState --value kube-event-pipe.service)" = inactive ]' \
        _ "$CPID" "$(basename "$deb2")"

    log "-- 6. leader election: a standby is ready and says who leads"
    curl -fsS -X POST "$ADMIN/fake/leases/kube-system/kube-event-pipe?holder=cp-other&duration=3600" >/dev/null ||
        fail "deb: another program takes the Lease (fake admin API)"
    in_ct sh -c 'echo "leader_election = true" >> /etc/kube-event-pipe/config.toml'
    check "deb: with leader_election = true, systemctl start returns (READY=1 as a standby)" \
        sc start kube-event-pipe.service
    check "deb: the standby is active (running)" is_active
    check "deb: its status line says who leads (StatusText=\"$(prop StatusText)\")" \
        sh -c 'case "$1" in "standby; leader is cp-other since "*) true ;; *) false ;; esac' _ "$(prop StatusText)"
    add_events 90 5 || fail "deb: adding events to the fake"
    sleep 3
    expect_stats "deb: the standby wrote none of the 5 new events" "90 90 0" "$(log_stats)"

    log "-- 7. purge"
    sc start kube-event-pipe.service
    check "deb: dpkg --purge kube-event-pipe (with the service running)" in_ct dpkg --purge kube-event-pipe
    check "deb: the unit is gone (LoadState=$(prop LoadState))" test "$(prop LoadState)" = not-found
    check "deb: no kube-event-pipe process left" sh -c '! nsenter -t "$1" -a pgrep -u kube-event-pipe >/dev/null' _ "$CPID"
    check "deb: no /etc/kube-event-pipe, /var/lib/kube-event-pipe, /var/log/kube-event-pipe, logrotate snippet" \
        sh -c 'for p in /etc/kube-event-pipe /var/lib/kube-event-pipe /var/log/kube-event-pipe /etc/logrotate.d/kube-event-pipe; do [ ! -e "$1$p" ] || exit 1; done' \
        _ "$(ct_path '')"
    check "deb: no enablement symlink left" \
        sh -c '! find "$1/etc/systemd/system" -name "kube-event-pipe*" | grep -q .' _ "$(ct_path '')"
    check_no_user_files deb
    shutdown_ct
}

# ---- the .rpm ------------------------------------------------------------------------------

rpm_tests() {
    local rpmf=$1 rpm2=$2 stats inv n
    boot kep-rpm
    n=$(fake_event_count)

    log "-- 8. the .rpm: install, start, events, upgrade, erase"
    check "rpm: rpm -i --nodeps $(basename "$rpmf")" in_ct rpm -i --nodeps "/packages/$(basename "$rpmf")"
    check_user rpm
    check "rpm: the sysusers.d file installed is the one %pre applied" \
        sh -c 'grep -v "^#" "$1" | while read -r l; do [ -z "$l" ] || printf "%s" "$2" | grep -qxF "$l" || exit 1; done' \
        _ "$REPO/packaging/sysusers.d/kube-event-pipe.conf" "$(in_ct rpm -q --scripts kube-event-pipe)"
    check "rpm: unit enabled by the preset (is-enabled: $(in_ct systemctl is-enabled kube-event-pipe.service 2>&1))" \
        test "$(in_ct systemctl is-enabled kube-event-pipe.service 2>&1)" = enabled
    check "rpm: config.toml and the logrotate snippet are %config(noreplace)" \
        sh -c 'printf "%s" "$1" | grep -q "/etc/kube-event-pipe/config.toml" && printf "%s" "$1" | grep -q "/etc/logrotate.d/kube-event-pipe"' \
        _ "$(in_ct rpm -qc kube-event-pipe)"
    check_skipped rpm
    check_started rpm "$n"

    in_ct sh -c 'echo "# edited by the system test" >> /etc/kube-event-pipe/config.toml'
    inv=$(prop InvocationID)
    check "rpm: rpm -U --nodeps $(basename "$rpm2") (upgrade)" in_ct rpm -U --nodeps "/packages/$(basename "$rpm2")"
    check "rpm: the installed release is now $(in_ct rpm -q kube-event-pipe)" \
        test "$(in_ct rpm -q kube-event-pipe)" = "$(rpm -qp "$rpm2" 2>/dev/null)"
    check "rpm: the operator's edit of config.toml was kept" \
        grep -q "^# edited by the system test" "$(ct_path /etc/kube-event-pipe/config.toml)"
    check "rpm: the running service was restarted by the upgrade (new InvocationID) and is active" \
        sh -c '[ "$1" != "$2" ] && [ -n "$2" ]' _ "$inv" "$(prop InvocationID)"
    check "rpm: still active after the upgrade" is_active
    add_events "$n" 5 || fail "rpm: adding events to the fake"
    stats=$(wait_lines $((n + 5)))
    expect_stats "rpm: after the upgrade only the 5 new events were written" "$((n + 5)) $((n + 5)) 0" "$stats"

    check "rpm: rpm -e kube-event-pipe (with the service running)" in_ct rpm -e --nodeps kube-event-pipe
    check "rpm: the unit is gone (LoadState=$(prop LoadState))" test "$(prop LoadState)" = not-found
    check "rpm: no kube-event-pipe process left" sh -c '! nsenter -t "$1" -a pgrep -u kube-event-pipe >/dev/null' _ "$CPID"
    check "rpm: no enablement symlink left" \
        sh -c '! find "$1/etc/systemd/system" -name "kube-event-pipe*" | grep -q .' _ "$(ct_path '')"
    check "rpm: binary, unit, config and logrotate snippet removed (state and logs are kept, as RPM does)" \
        sh -c 'for p in /usr/bin/kube-event-pipe /usr/lib/systemd/system/kube-event-pipe.service /etc/kube-event-pipe/config.toml /etc/logrotate.d/kube-event-pipe; do [ ! -e "$1$p" ] || exit 1; done' \
        _ "$(ct_path '')"
    shutdown_ct
}

# ---- main ----------------------------------------------------------------------------------

main() {
    [ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn)"
    if [ "${1:-}" = --prepare-rootfs ]; then
        command -v debootstrap >/dev/null || die "debootstrap is missing"
        ensure_rootfs
        return 0
    fi
    local t
    for t in debootstrap systemd-nspawn nsenter python3 curl cargo dpkg-deb rpm; do
        command -v "$t" >/dev/null || die "$t is missing"
    done
    local deb deb2 rpmf rpm2
    deb=$(ls "$PKG_DIR"/kube-event-pipe_*.deb 2>/dev/null | head -1)
    deb2=$(ls "$PKG_DIR"/upgrade-test/kube-event-pipe_*.deb 2>/dev/null | head -1)
    rpmf=$(ls "$PKG_DIR"/kube-event-pipe-*.rpm 2>/dev/null | head -1)
    rpm2=$(ls "$PKG_DIR"/upgrade-test/kube-event-pipe-*.rpm 2>/dev/null | head -1)
    [ -n "$deb" ] && [ -n "$deb2" ] && [ -n "$rpmf" ] && [ -n "$rpm2" ] ||
        die "packages missing in $PKG_DIR: run packaging/build-packages.sh first"

    WORK=$(mktemp -d /var/tmp/kep-system-test.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local start=$SECONDS
    ensure_rootfs
    log "== unpacking the cached rootfs"
    mkdir -p "$WORK/root" "$WORK/pkgs"
    tar -C "$WORK/root" -xf "$TARBALL" || die "cannot unpack $TARBALL"
    cp "$deb" "$deb2" "$rpmf" "$rpm2" "$WORK/pkgs/" 2>/dev/null ||
        die "cannot copy the packages"
    start_fake

    deb_tests "$deb" "$deb2"
    rpm_tests "$rpmf" "$rpm2"

    log "== system test took $((SECONDS - start)) s"
    log "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

main "$@"

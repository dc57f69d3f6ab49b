#!/usr/bin/env bash
# Quality gates on the packages packaging/build-packages.sh made ($CARGO_TARGET_DIR/packages):
#
#  1. contents: every file the issue lists is in both packages, with its mode; the binary is
#     stripped; the config and logrotate snippet are conffiles / %config(noreplace).
#  2. lintian on the .deb: no error, no warning (--fail-on error,warning), and, when there is a
#     packaging/deb/lintian-overrides, every override in it still used.
#  3. rpmlint on the .rpm: exactly the reports listed, with reasons, in
#     packaging/rpmlint-expected.txt (a new one fails, and so does a listed one that is gone).
#  4. the RBAC manifest grants get/list/watch on core events and nothing else.
#
# Prints PASS/FAIL per check and "N passed, M failed"; exits 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TARGET/packages
DEB=$(ls "$OUT"/kube-event-pipe_*.deb 2>/dev/null | head -1)
RPM=$(ls "$OUT"/kube-event-pipe-*.rpm 2>/dev/null | head -1)
if [ -z "$DEB" ] || [ -z "$RPM" ]; then
    echo "no packages in $OUT: run packaging/build-packages.sh first" >&2
    exit 2
fi
PASSED=0
FAILED=0
pass() {
    PASSED=$((PASSED + 1))
    echo "PASS: $*"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $*"
}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== contents of $(basename "$DEB") and $(basename "$RPM")"
dpkg-deb -c "$DEB" | awk '{ sub(/^\./, "", $6); print $1, $6 }' >"$TMP/deb.list"
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null >"$TMP/rpm.list"
# path  mode  in: deb | rpm | both
while read -r path mode where; do
    [ -n "$path" ] || continue
    for fmt in deb rpm; do
        case $where in both | "$fmt") ;; *) continue ;; esac
        if grep -qxF -- "$mode $path" "$TMP/$fmt.list"; then
            pass "$fmt: $path ($mode)"
        else
            fail "$fmt: $path ($mode) missing; has: $(grep -F -- "$path" "$TMP/$fmt.list" | head -1)"
        fi
    done
done <<'EOF'
/usr/bin/kube-event-pipe -rwxr-xr-x both
/lib/systemd/system/kube-event-pipe.service -rw-r--r-- deb
/usr/lib/systemd/system/kube-event-pipe.service -rw-r--r-- rpm
/etc/kube-event-pipe/config.toml -rw-r--r-- both
/etc/logrotate.d/kube-event-pipe -rw-r--r-- both
/usr/lib/sysusers.d/kube-event-pipe.conf -rw-r--r-- both
/usr/share/man/man1/kube-event-pipe.1.gz -rw-r--r-- both
/usr/share/bash-completion/completions/kube-event-pipe -rw-r--r-- both
/usr/share/zsh/vendor-completions/_kube-event-pipe -rw-r--r-- deb
/usr/share/zsh/site-functions/_kube-event-pipe -rw-r--r-- rpm
/usr/share/fish/vendor_completions.d/kube-event-pipe.fish -rw-r--r-- both
/usr/share/doc/kube-event-pipe/changelog.Debian.gz -rw-r--r-- deb
/usr/share/doc/kube-event-pipe/copyright -rw-r--r-- deb
/usr/share/doc/kube-event-pipe/CHANGELOG.md -rw-r--r-- rpm
/usr/share/licenses/kube-event-pipe/LICENSE -rw-r--r-- rpm
/usr/share/doc/kube-event-pipe/rbac.yaml -rw-r--r-- both
/usr/share/doc/kube-event-pipe/KUBECONFIG.md -rw-r--r-- both
EOF

dpkg-deb -e "$DEB" "$TMP/control"
if [ "$(sort "$TMP/control/conffiles")" = "$(printf '%s\n' /etc/kube-event-pipe/config.toml /etc/logrotate.d/kube-event-pipe)" ]; then
    pass "deb: conffiles are exactly config.toml and the logrotate snippet"
else
    fail "deb: conffiles: $(tr '\n' ' ' <"$TMP/control/conffiles")"
fi
if [ "$(rpm -qp --configfiles "$RPM" 2>/dev/null | sort | tr '\n' ' ')" = "/etc/kube-event-pipe/config.toml /etc/logrotate.d/kube-event-pipe " ] &&
    [ "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null | grep -c '^cn /etc/')" = 2 ]; then
    pass "rpm: config.toml and the logrotate snippet are %config(noreplace)"
else
    fail "rpm: config files: $(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null | grep /etc/ | tr '\n' ' ')"
fi
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/bin/kube-event-pipe >"$TMP/bin"
if readelf -S "$TMP/bin" | grep -q '\.symtab'; then
    fail "deb: /usr/bin/kube-event-pipe is not stripped"
else
    pass "deb: /usr/bin/kube-event-pipe is stripped (no .symtab)"
fi
if [ "$(dpkg-deb -f "$DEB" Version)" = "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$RPM" 2>/dev/null)" ]; then
    pass "deb and rpm have the same version-revision ($(dpkg-deb -f "$DEB" Version))"
else
    fail "versions differ: deb $(dpkg-deb -f "$DEB" Version), rpm $(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$RPM" 2>/dev/null)"
fi
for script in postinst prerm postrm; do
    if [ -x "$TMP/control/$script" ] && sh -n "$TMP/control/$script" ; then
        pass "deb: $script is executable, valid sh"
    else
        fail "deb: $script"
    fi
done

echo "== lintian $(lintian --version | awk '{print $2}')"
lintian --fail-on error,warning --display-info --pedantic "$DEB" >"$TMP/lintian.out" 2>"$TMP/lintian.err"
rc=$?
cat "$TMP/lintian.out"
if [ "$rc" -eq 0 ]; then
    pass "lintian: no errors, no warnings"
else
    fail "lintian exited $rc: $(grep -E '^[EW]:' "$TMP/lintian.out" | wc -l) errors/warnings; $(grep -v 'root privileges' "$TMP/lintian.err")"
fi
if [ -e packaging/deb/lintian-overrides ]; then
    if grep -qE 'unused-override|mismatched-override' "$TMP/lintian.out"; then
        fail "lintian: an override in packaging/deb/lintian-overrides no longer matches anything"
    else
        pass "lintian: every override is used"
    fi
fi

echo "== rpmlint $(rpmlint --version 2>/dev/null | head -1)"
rpmlint -c packaging/rpmlint.toml "$RPM" >"$TMP/rpmlint.out" 2>&1
grep -E '^kube-event-pipe' "$TMP/rpmlint.out"
sed -nE 's/^kube-event-pipe[^:]*: ([EW]: .*)$/\1/p' "$TMP/rpmlint.out" | sed 's/ *$//' | sort -u >"$TMP/rpmlint.got"
sed -e 's/  # .*$//' -e '/^#/d' -e '/^$/d' packaging/rpmlint-expected.txt | sed 's/ *$//' | sort -u >"$TMP/rpmlint.expected"
new=$(comm -23 "$TMP/rpmlint.got" "$TMP/rpmlint.expected")
gone=$(comm -13 "$TMP/rpmlint.got" "$TMP/rpmlint.expected")
if [ -z "$new" ]; then
    pass "rpmlint: every report is one listed with its reason in packaging/rpmlint-expected.txt"
else
    fail "rpmlint: reports not in packaging/rpmlint-expected.txt: $new"
fi
if [ -z "$gone" ]; then
    pass "rpmlint: every listed report still occurs"
else
    fail "rpmlint: listed in packaging/rpmlint-expected.txt but no longer reported (remove them): $gone"
fi

echo "== RBAC manifest"
if /usr/bin/python3 - packaging/rbac.yaml <<'EOF'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret",
                 "ServiceAccount"], kinds
by = {d["kind"]: d for d in docs}
sa = by["ServiceAccount"]["metadata"]
assert (sa["name"], sa["namespace"]) == ("kube-event-pipe", "kube-system"), sa
rules = by["ClusterRole"]["rules"]
assert rules == [{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]}], rules
crb = by["ClusterRoleBinding"]
assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                          "name": by["ClusterRole"]["metadata"]["name"]}, crb["roleRef"]
assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "kube-event-pipe",
                            "namespace": "kube-system"}], crb["subjects"]
role = by["Role"]
assert role["metadata"]["namespace"] == "kube-system", role["metadata"]
assert role["rules"] == [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "resourceNames": ["kube-event-pipe"], "verbs": ["get", "update"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
], role["rules"]
rb = by["RoleBinding"]
assert rb["metadata"]["namespace"] == "kube-system", rb["metadata"]
assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": role["metadata"]["name"]}, rb["roleRef"]
assert rb["subjects"] == crb["subjects"], rb["subjects"]
sec = by["Secret"]
assert sec["type"] == "kubernetes.io/service-account-token", sec["type"]
assert sec["metadata"]["namespace"] == "kube-system"
assert sec["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "kube-event-pipe"
# The namespaced variant: `-l 'kube-event-pipe/scope!=cluster'` leaves the cluster-wide objects
# out (the namespaced leader-election Role stays), and the commented Role and RoleBinding grant
# the same, in one namespace.
scope = lambda d: d["metadata"].get("labels", {}).get("kube-event-pipe/scope")
assert sorted(d["kind"] for d in docs if scope(d) != "cluster") == [
    "Role", "RoleBinding", "Secret", "ServiceAccount"]
assert all(d["metadata"]["namespace"] == "kube-system" for d in docs if scope(d) != "cluster")
tail = open(sys.argv[1]).read().split("# The namespaced variant", 1)[1].splitlines()[1:]
variant = [d for d in yaml.safe_load_all("\n".join(l[2:] if l.startswith("# ") else "" for l in tail)) if d]
vb = {d["kind"]: d for d in variant}
assert sorted(vb) == ["Role", "RoleBinding"], sorted(vb)
assert vb["Role"]["rules"] == rules, vb["Role"]["rules"]
assert vb["RoleBinding"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                        "name": vb["Role"]["metadata"]["name"]}
assert vb["RoleBinding"]["subjects"] == crb["subjects"]
EOF
    pass "rbac.yaml: ServiceAccount kube-system/kube-event-pipe, ClusterRole exactly get/list/watch on core events, a Role with get/update on the one Lease and create on leases in kube-system, their bindings, a service-account-token Secret; the namespaced Role variant grants the same in one namespace"
else
    fail "rbac.yaml does not grant exactly what it should (see the assertion above)"
fi

echo "== docs"
# README's Install section repeats KUBECONFIG.md's commands; they must not drift apart.
if /usr/bin/python3 - <<'EOF'; then
import sys
kc = open("packaging/KUBECONFIG.md").read()
start = kc.index("```sh")
block = kc[start:kc.index("```\n", start + 5) + 4]
sys.exit(0 if block in open("README.md").read() else 1)
EOF
    pass "README's Install section has the commands of packaging/KUBECONFIG.md, verbatim"
else
    fail "README's Install section and packaging/KUBECONFIG.md give different commands"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

# %pre — what %sysusers_create_package does: create the system user and group before the
# files are unpacked (%post gives /etc/kube-event-pipe its group).
# The lines below are packaging/sysusers.d/kube-event-pipe.conf, which the package also
# installs as /usr/lib/sysusers.d/kube-event-pipe.conf (tests/system/run.sh checks that
# both say the same).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --replace=/usr/lib/sysusers.d/kube-event-pipe.conf - <<'SYSUSERS'
u kube-event-pipe - "kube-event-pipe daemon" /var/lib/kube-event-pipe
m kube-event-pipe adm
SYSUSERS
else
    getent group kube-event-pipe >/dev/null || groupadd -r kube-event-pipe
    getent passwd kube-event-pipe >/dev/null ||
        useradd -r -g kube-event-pipe -G adm -d /var/lib/kube-event-pipe -M \
            -s /sbin/nologin -c "kube-event-pipe daemon" kube-event-pipe
fi

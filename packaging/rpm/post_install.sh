# %post — %systemd_post kube-event-pipe.service, by hand. $1 is 1 on a first installation,
# 2 on an upgrade. On the first installation the unit is enabled or not as the distribution's
# presets say (Fedora-style presets disable it until the operator enables it; without presets
# systemd's default is "enable"). It is never started here: the operator starts it once the
# kubeconfig is in place (see /usr/share/doc/kube-event-pipe/KUBECONFIG.md).

# The service reads its configuration directory (and the kubeconfig the operator puts there)
# through its group; nobody else needs to. (cargo-generate-rpm 0.21 cannot package a directory
# entry with an owner, so it is set here, on every install and upgrade.)
chown root:kube-event-pipe /etc/kube-event-pipe /etc/kube-event-pipe/config.toml
chmod 0750 /etc/kube-event-pipe
# The daemon warns about a config file others can read (it names the kubeconfig).
chmod 0640 /etc/kube-event-pipe/config.toml
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload preset kube-event-pipe.service || :
fi
# rpmbuild packages get this daemon-reload from systemd's file trigger at the end of the
# transaction; a package built by cargo-generate-rpm cannot count on that trigger, so reload
# here, after the preset so the manager sees the new unit and its enablement together.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi

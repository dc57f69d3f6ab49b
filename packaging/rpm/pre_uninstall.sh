# %preun — %systemd_preun kube-event-pipe.service, by hand. $1 is 0 when the package is being
# erased, 1 when this is the old package of an upgrade (then nothing is stopped; %postun
# restarts the service after the new files are in place).
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable --now kube-event-pipe.service || :
fi

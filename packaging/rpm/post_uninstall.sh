# %postun — %systemd_postun_with_restart kube-event-pipe.service, by hand. $1 is 0 after an
# erase, 1 after the old package of an upgrade was removed: then restart the service, but only
# if it is running (try-restart). The dedup state in /var/lib/kube-event-pipe and the logs in
# /var/log/kube-event-pipe are kept on erase, as RPM packages keep data: remove them by hand.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    systemctl try-restart kube-event-pipe.service || :
fi

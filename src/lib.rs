//! kube-event-pipe library.

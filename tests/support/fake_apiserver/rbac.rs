//! Authorization: the 403 a real kube-apiserver sends a user without the right to read events
//! (`system:anonymous` when no credentials came, or an authenticated ServiceAccount whose
//! ClusterRoleBinding is missing), as captured in `raw-unauthorized.json`.

use http::Response;

use super::serve::{Body, json_response, status_json};
use super::{FakeApiServer, RecordedRequest, Shared, lock};

impl FakeApiServer {
    /// Refuses every authenticated request with 403 naming `user` (for example
    /// `system:serviceaccount:kube-system:kube-event-pipe`), as before its RBAC is applied;
    /// `None` grants access again.
    pub fn deny_reading_events(&self, user: Option<&str>) {
        *lock(&self.shared.denied_user) = user.map(str::to_owned);
    }
}

/// The user currently denied, if any.
pub(super) fn denied_user(shared: &Shared) -> Option<String> {
    lock(&shared.denied_user).clone()
}

/// The real server's 403 for `user` on this request.
pub(super) fn forbidden_response(
    user: &str,
    rec: &RecordedRequest,
    is_list: bool,
    is_watch: bool,
    pretty_print: bool,
) -> Response<Body> {
    let verb = if is_watch {
        "watch"
    } else if is_list {
        "list"
    } else {
        "get"
    };
    let message = if rec.is_events() {
        let scope = match rec.namespace() {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        format!(
            "events is forbidden: User \"{user}\" cannot {verb} resource \"events\" in API group \"\" {scope}"
        )
    } else {
        format!(
            "forbidden: User \"{user}\" cannot get path \"{}\"",
            rec.path
        )
    };
    let details = rec.is_events().then_some(r#"{"kind":"events"}"#);
    json_response(
        403,
        status_json(403, "Forbidden", &message, details, "{}"),
        pretty_print,
    )
}

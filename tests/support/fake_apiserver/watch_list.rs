//! Streaming lists (KEP-3157) as kube-apiserver v1.36 serves them (`watchlist*.jsonl`): the
//! list options it refuses with 422 (`watchlist-gate-off.json`, `watchlist-no-match.json`,
//! `watchlist-on-list.json`), the faults tests inject into a streaming list (cut or held
//! after some initial events), and the per-page cost of paged lists, which a real server
//! charges (~20 ms a page) and a fake serving from memory would not.

use std::time::Duration;

use http::Response;
use tokio::sync::mpsc;

use super::json::json_str;
use super::selectors::Selection;
use super::serve::{Body, bad_request, json_response, parse_bool, status_json};
use super::watches::WatchMsg;
use super::{FakeApiServer, RecordedRequest, Shared, lock};

/// What happens to the next streaming list, injected with
/// [`FakeApiServer::cut_next_streaming_list`].
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamingFault {
    /// Initial events sent before the cut.
    pub(super) after: usize,
    /// Keep the connection open, silent (true), or end the response cleanly (false).
    pub(super) hold: bool,
}

impl FakeApiServer {
    /// The next streaming list sends only its first `after` initial events: no end bookmark,
    /// no live changes. With `hold` the connection then stays open and silent; without, the
    /// response ends cleanly.
    pub fn cut_next_streaming_list(&self, after: usize, hold: bool) {
        *lock(&self.shared.streaming_fault) = Some(StreamingFault { after, hold });
    }

    /// Streaming list requests received (watches with `sendInitialEvents`).
    pub fn streaming_list_count(&self) -> usize {
        self.count_requests(RecordedRequest::is_streaming_list)
    }
}

impl RecordedRequest {
    /// A watch asking for the initial events first: a streaming list.
    pub fn is_streaming_list(&self) -> bool {
        self.is_watch() && self.param("sendInitialEvents").is_some_and(parse_bool)
    }
}

/// The fault for this streaming list, if one was injected (it applies once).
pub(super) fn take_fault(shared: &Shared) -> Option<StreamingFault> {
    lock(&shared.streaming_fault).take()
}

/// Keeps a held streaming list's channel open: nothing is ever sent on it.
pub(super) fn hold(shared: &Shared, tx: mpsc::UnboundedSender<WatchMsg>) {
    lock(&shared.held).push(tx);
}

/// What a list or watch request selects, or the answer that refuses it: a bad selector's 400,
/// else the 422 of [`invalid_options`].
pub(super) fn selection_or_refusal(
    shared: &Shared,
    rec: &RecordedRequest,
    watch: bool,
    pretty_print: bool,
) -> Result<Selection, Box<Response<Body>>> {
    let selection =
        Selection::of(rec).map_err(|message| Box::new(bad_request(&message, pretty_print)))?;
    match invalid_options(shared, rec, watch, pretty_print) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(selection),
    }
}

/// apimachinery's `ValidateListOptions`: the 422 a real server answers, or None.
fn invalid_options(
    shared: &Shared,
    rec: &RecordedRequest,
    watch: bool,
    pretty_print: bool,
) -> Option<Response<Body>> {
    let send_initial = rec.param("sendInitialEvents").is_some();
    let matching = rec.param("resourceVersionMatch").unwrap_or("");
    let rv = rec.param("resourceVersion").unwrap_or("");
    let mut causes: Vec<(&str, String)> = Vec::new();
    if watch {
        if send_initial {
            if matching != "NotOlderThan" {
                causes.push((
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                        .into(),
                ));
            }
            if !shared.opts.watch_list {
                causes.push((
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
                ));
            }
        }
        if !matching.is_empty() && !send_initial {
            causes.push((
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
                    .into(),
            ));
        }
    } else {
        if !matching.is_empty() && rv.is_empty() {
            causes.push((
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        if send_initial {
            causes.push((
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list".into(),
            ));
        }
    }
    if causes.is_empty() {
        return None;
    }
    let errors: Vec<String> = causes
        .iter()
        .map(|(field, detail)| format!("{field}: Forbidden: {detail}"))
        .collect();
    let listed = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let details = format!(
        r#"{{"group":"meta.k8s.io","kind":"ListOptions","causes":[{}]}}"#,
        causes
            .iter()
            .map(|(field, detail)| format!(
                r#"{{"reason":"FieldValueForbidden","message":{},"field":"{field}"}}"#,
                json_str(&format!("Forbidden: {detail}"))
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    Some(json_response(
        422,
        status_json(
            422,
            "Invalid",
            &format!("ListOptions.meta.k8s.io \"\" is invalid: {listed}"),
            Some(&details),
            "{}",
        ),
        pretty_print,
    ))
}

/// What a real server spends on one page of a paged list: a fixed cost per request plus a
/// cost per item, from [`super::Options::list_page_delay`] and `list_item_delay`.
pub(super) fn page_cost(shared: &Shared, rec: &RecordedRequest) -> Duration {
    let opts = &shared.opts;
    if opts.list_page_delay.is_zero() && opts.list_item_delay.is_zero() {
        return Duration::ZERO;
    }
    let live = lock(&shared.store).live;
    let limit = rec
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(live);
    let items = u32::try_from(limit.min(live)).unwrap_or(u32::MAX);
    opts.list_page_delay + opts.list_item_delay * items
}

//! List requests: paged `EventList` bodies read from a snapshot, and continue tokens.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use http::Response;

use super::json::json_str;
use super::serve::{Body, bad_request, json_response, status_json, too_large_rv};
use super::store::Store;
use super::watch_list::selection_or_refusal;
use super::{RecordedRequest, Shared, lock};

const EXPIRED_CONTINUE_MESSAGE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// The live `(etcd key, object, object decoded)` at one resourceVersion, in key order; the
/// decoded object only with `Options::encode_lists`.
pub(super) type Snapshot = Arc<Vec<(String, Arc<str>, Option<k8s_openapi::api::core::v1::Event>)>>;

fn continue_token(rv: i64, start: &str) -> String {
    let json = format!(
        "{{\"v\":\"meta.k8s.io/v1\",\"rv\":{rv},\"start\":{}}}",
        json_str(start)
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.as_bytes())
}

/// (rv, start key) of a continue token.
fn decode_continue(token: &str) -> Result<(i64, String), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| format!("continue key is not valid: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Tok {
        v: String,
        rv: i64,
        start: String,
    }
    let t: Tok =
        serde_json::from_slice(&bytes).map_err(|e| format!("continue key is not valid: {e}"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    if t.rv == 0 || t.rv < -1 {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    Ok((t.rv, t.start))
}

pub(super) fn list_response(
    shared: &Shared,
    rec: &RecordedRequest,
    pretty_print: bool,
) -> Response<Body> {
    let selection = match selection_or_refusal(shared, rec, false, pretty_print) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let limit: usize = match rec.param("limit").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => 0,
            Err(_) => return bad_request(&format!("limit: invalid value {s:?}"), pretty_print),
        },
    };
    let store = lock(&shared.store);
    // (snapshot rv, start key, inconsistent)
    let (read_rv, start) = match rec.param("continue").filter(|s| !s.is_empty()) {
        Some(tok) => match decode_continue(tok) {
            Err(e) => return bad_request(&e, pretty_print),
            Ok((-1, start)) => (store.rv, start),
            Ok((rv, start)) => {
                let rv = rv as u64;
                if rv < store.compact_rv {
                    let metadata = format!("{{\"continue\":\"{}\"}}", continue_token(-1, &start));
                    return json_response(
                        410,
                        status_json(410, "Expired", EXPIRED_CONTINUE_MESSAGE, None, &metadata),
                        pretty_print,
                    );
                }
                (rv, start)
            }
        },
        None => {
            let requested = rec
                .param("resourceVersion")
                .filter(|s| !s.is_empty() && *s != "0");
            let exact = rec.param("resourceVersionMatch") == Some("Exact");
            match requested {
                None => (store.rv, String::new()),
                Some(s) => match s.parse::<u64>() {
                    Err(_) => {
                        return bad_request(
                            &format!("resourceVersion: Invalid value: {s:?}"),
                            pretty_print,
                        );
                    }
                    Ok(rv) if rv > store.rv => return too_large_rv(rv, store.rv, pretty_print),
                    Ok(rv) if exact && rv < store.compact_rv => {
                        return json_response(
                            410,
                            status_json(
                                410,
                                "Expired",
                                "The resourceVersion for the provided list is too old.",
                                None,
                                "{}",
                            ),
                            pretty_print,
                        );
                    }
                    Ok(rv) if exact => (rv, String::new()),
                    Ok(_) => (store.rv, String::new()),
                },
            }
        }
    };

    let snapshot = {
        let mut cache = lock(&shared.list_snapshot);
        match &*cache {
            Some((rv, snap)) if *rv == read_rv => snap.clone(),
            _ => {
                let snap: Snapshot = Arc::new(
                    store
                        .keys
                        .iter()
                        .filter_map(|(k, v)| Store::at(v, read_rv).map(|b| (k.clone(), b.clone())))
                        .map(|(k, b)| {
                            let decoded = if shared.opts.encode_lists {
                                serde_json::from_str(&b).ok()
                            } else {
                                None
                            };
                            (k, b, decoded)
                        })
                        .collect(),
                );
                *cache = Some((read_rv, snap.clone()));
                snap
            }
        }
    };
    let from = snapshot.partition_point(|(k, _, _)| k.as_str() < start.as_str());
    let rest = &snapshot[from..];
    let (items, more, remaining_count) = if selection.is_everything() {
        let take = if limit == 0 {
            rest.len()
        } else {
            limit.min(rest.len())
        };
        let remaining = rest.len() - take;
        (
            rest[..take].iter().collect::<Vec<_>>(),
            remaining > 0,
            Some(remaining),
        )
    } else {
        // A filtered list has no remainingItemCount: the server cannot know it cheaply.
        let mut matching = rest.iter().filter(|(_, b, _)| selection.matches(b));
        let items: Vec<_> = if limit == 0 {
            matching.by_ref().collect()
        } else {
            matching.by_ref().take(limit).collect()
        };
        let more = matching.next().is_some();
        (items, more, None)
    };
    let last_key: Option<&str> = items.last().map(|(k, _, _)| k.as_str());
    let mut out =
        String::with_capacity(items.iter().map(|(_, b, _)| b.len() + 1).sum::<usize>() + 256);
    let _ = write!(
        out,
        "{{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{read_rv}\""
    );
    if more {
        let next = format!("{}\u{0}", last_key.unwrap_or(""));
        let _ = write!(
            out,
            ",\"continue\":\"{}\"",
            continue_token(read_rv as i64, &next)
        );
        if let Some(remaining) = remaining_count {
            let _ = write!(out, ",\"remainingItemCount\":{remaining}");
        }
    }
    out.push_str("},\"items\":[");
    for (i, (_, stored, decoded)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match decoded.as_ref().and_then(encode_list_item) {
            Some(encoded) => out.push_str(&encoded),
            None => out.push_str(stored),
        }
    }
    out.push_str("]}");
    drop(store);
    json_response(200, out, pretty_print)
}

/// A list item as kube-apiserver encodes it: the object without `apiVersion` and `kind`.
/// `None` if it cannot be encoded that way; the caller then serves the stored JSON.
fn encode_list_item(event: &k8s_openapi::api::core::v1::Event) -> Option<String> {
    let json = serde_json::to_string(event).ok()?;
    // k8s-openapi writes `apiVersion` and `kind` first.
    let rest = json.strip_prefix(r#"{"apiVersion":"v1","kind":"Event","#)?;
    Some(format!("{{{rest}"))
}

//! Event identity: reading an event object's [`EventView`] and the key the dedup store
//! remembers. The fast scan (`event_scan`) answers for the usual shapes; anything it declines
//! goes to the serde reader (`event_serde`), which is also the reference the scan is tested
//! against.

use crate::wire::event_scan;
use crate::wire::event_serde;
use crate::wire::event_view::{EventView, IdentityError, PrefixError};

/// Reads the identity fields of an event object: the fast scan when it answers, else serde.
pub fn parse_event(object: &[u8]) -> Result<EventView<'_>, IdentityError> {
    if let Some((view, end)) = event_scan::scan_event(object)
        && object[end..]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(view);
    }
    event_serde::parse_event_serde(object)
}

/// [`parse_event`] for the value at the start of `bytes` (after any whitespace), which may be
/// followed by anything, e.g. the rest of a list page: one pass reads the identity fields and
/// finds where the value ends. Returns the view and that end offset.
pub fn parse_event_prefix(bytes: &[u8]) -> Result<(EventView<'_>, usize), PrefixError> {
    if let Some(found) = event_scan::scan_event(bytes) {
        return Ok(found);
    }
    event_serde::parse_event_prefix_serde(bytes)
}

/// Parses `object` and writes its identity into `buf`; returns the view for logging.
pub fn identity_into<'a>(
    object: &'a [u8],
    buf: &mut Vec<u8>,
) -> Result<EventView<'a>, IdentityError> {
    let view = parse_event(object)?;
    view.identity_into(buf);
    Ok(view)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::wire::frame::parse_watch_frame;
    use crate::wire::frame::tests::fixture;

    fn id(obj: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        identity_into(obj.as_bytes(), &mut buf).unwrap();
        buf
    }

    fn event(ns: &str, name: &str, tail: &str) -> String {
        format!(r#"{{"kind":"Event","metadata":{{"name":"{name}","namespace":"{ns}"}}{tail}}}"#)
    }

    #[test]
    fn fixture_watch_identities() {
        let data = fixture("raw-watch.jsonl");
        let mut got = Vec::new();
        let mut ids = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let f = parse_watch_frame(line).unwrap();
            let mut buf = Vec::new();
            let v = identity_into(f.object, &mut buf).unwrap();
            got.push(format!(
                "{} {v} rv={}",
                f.frame_type,
                v.resource_version.as_deref().unwrap_or("")
            ));
            ids.push(buf);
        }
        let want = [
            "ADDED demo/web-7d4b9c.187a1f2e3c4d5e6f count=1 series.count=absent rv=210",
            "MODIFIED demo/web-7d4b9c.187a1f2e3c4d5e6f count=2 series.count=absent rv=211",
            "MODIFIED demo/web-7d4b9c.187a1f2e3c4d5e6f count=3 series.count=absent rv=212",
            "ADDED default/sched.187a1f2e3c4d0001 count=absent series.count=absent rv=213",
            "MODIFIED default/sched.187a1f2e3c4d0001 count=absent series.count=2 rv=214",
            "MODIFIED default/sched.187a1f2e3c4d0001 count=absent series.count=3 rv=215",
            "DELETED demo/web-7d4b9c.187a1f2e3c4d5e6f count=3 series.count=absent rv=216",
            "ADDED demo/job-1.7t2vv count=1 series.count=absent rv=217",
            "ADDED demo/job-2.tl4s2 count=1 series.count=absent rv=218",
            "ADDED demo/job-3.tkzfd count=1 series.count=absent rv=219",
            "ADDED demo/job-4.lmsx5 count=1 series.count=absent rv=220",
            "ADDED demo/job-5.qsmq6 count=1 series.count=absent rv=221",
            "ADDED demo/late.xsjhw count=1 series.count=absent rv=228",
        ];
        assert_eq!(got, want);
        // DELETED repeats the last MODIFIED identity, so the store skips it.
        assert_eq!(ids[6], ids[2]);
        // Every other frame is a new occurrence.
        let mut distinct = ids.clone();
        distinct.remove(6);
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len() - 1);
    }

    #[test]
    fn list_and_watch_copies_agree() {
        // The same event from a list page and from kubectl's re-serialized watch output.
        let body = fixture("raw-list-page1.json");
        let page = crate::wire::frame::parse_list(&body).unwrap();
        let kubectl = fixture("kubectl-watch.json");
        let first = kubectl.split(|&b| b == b'\n').next().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        identity_into(page.items[0], &mut a).unwrap();
        identity_into(parse_watch_frame(first).unwrap().object, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn events_k8s_io_copies_have_the_core_identities() {
        let ids = |name: &str| -> Vec<Vec<u8>> {
            let body = fixture(name);
            let page = crate::wire::frame::parse_list(&body).unwrap();
            page.items
                .iter()
                .map(|item| {
                    let mut buf = Vec::new();
                    identity_into(item, &mut buf).unwrap();
                    buf
                })
                .collect()
        };
        let core = ids("raw-list-compact.json");
        assert_eq!(core.len(), 7);
        assert_eq!(core, ids("raw-list-events-v1.json"));
        // Both spellings present: `count` wins.
        let both = id(&event("ns", "e", r#","deprecatedCount":5,"count":2"#));
        assert_eq!(both, id(&event("ns", "e", r#","count":2"#)));
    }

    #[test]
    fn counts_decide() {
        let c2 = id(&event("ns", "e", r#","count":2"#));
        let c3 = id(&event("ns", "e", r#","count":3"#));
        let c0 = id(&event("ns", "e", r#","count":0"#));
        let absent = id(&event("ns", "e", ""));
        let null = id(&event("ns", "e", r#","count":null"#));
        assert_ne!(c2, c3);
        assert_ne!(absent, c0);
        assert_eq!(absent, null);
        let s2 = id(&event(
            "ns",
            "e",
            r#","series":{"count":2,"lastObservedTime":"x"}"#,
        ));
        let s3 = id(&event(
            "ns",
            "e",
            r#","series":{"lastObservedTime":"y","count":3}"#,
        ));
        assert_ne!(s2, s3);
        assert_ne!(s2, absent);
        assert_ne!(s2, c2, "series.count 2 is not count 2");
        assert_eq!(id(&event("ns", "e", r#","series":null"#)), absent);
        assert_eq!(id(&event("ns", "e", r#","series":{}"#)), absent);
        assert_eq!(id(&event("ns", "e", r#","series":"odd""#)), absent);
        // Whitespace around numbers does not matter.
        assert_eq!(id(&event("ns", "e", " ,\"count\" :\n 2 \n")), c2);
        // Other fields do not matter.
        assert_eq!(
            id(&event(
                "ns",
                "e",
                r#","count":2,"message":"m","lastTimestamp":"t""#
            )),
            c2
        );
    }

    #[test]
    fn odd_counts_are_identities_not_errors() {
        let v = id(&event("ns", "e", r#","count":"7""#));
        assert_ne!(v, id(&event("ns", "e", r#","count":7"#)));
        let mut buf = Vec::new();
        let obj = event("ns", "e", r#","count":{"x": [1, 2]}"#);
        let view = identity_into(obj.as_bytes(), &mut buf).unwrap();
        assert_eq!(view.count, Some(r#"{"x": [1, 2]}"#));
    }

    #[test]
    fn namespace_absent_null_empty_are_one() {
        let a = id(r#"{"metadata":{"name":"e"}}"#);
        assert_eq!(a, id(r#"{"metadata":{"name":"e","namespace":null}}"#));
        assert_eq!(a, id(r#"{"metadata":{"name":"e","namespace":""}}"#));
        assert_ne!(a, id(r#"{"metadata":{"name":"e","namespace":"default"}}"#));
    }

    #[test]
    fn escaped_strings() {
        let obj = br#"{"metadata":{"namespace":"d\u00e9mo","name":"a\"b\\c\/d","resourceVersion":"\u0031"}}"#;
        let v = parse_event(obj).unwrap();
        assert_eq!(v.namespace.as_deref(), Some("démo"));
        assert_eq!(v.name, "a\"b\\c/d");
        assert_eq!(v.resource_version.as_deref(), Some("1"));
        let plain = parse_event(br#"{"metadata":{"name":"plain"}}"#).unwrap();
        assert!(
            matches!(plain.name, Cow::Borrowed(_)),
            "no copy without escapes"
        );
        // The decoded name is the identity, not its spelling on the wire.
        assert_eq!(
            id(r#"{"metadata":{"name":"\u0061"}}"#),
            id(r#"{"metadata":{"name":"a"}}"#)
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases: [(&str, &str); 12] = [
            ("", "not valid JSON"),
            (r#"{"metadata":{"name":"x"}"#, "not valid JSON"),
            ("[1,2]", "event is an array, not a JSON object"),
            (r#""s""#, "event is a string, not a JSON object"),
            ("{}", "event has no metadata"),
            (r#"{"metadata":null}"#, "event has no metadata"),
            (
                r#"{"metadata":[{"name":"x"}]}"#,
                "event metadata is an array, not an object",
            ),
            (r#"{"metadata":{}}"#, "event metadata has no name"),
            (
                r#"{"metadata":{"name":null}}"#,
                "event metadata has no name",
            ),
            (
                r#"{"metadata":{"name":5}}"#,
                "event metadata.name is a number, not a string",
            ),
            (
                r#"{"metadata":{"name":{"a":1}}}"#,
                "event metadata.name is an object, not a string",
            ),
            (
                r#"{"metadata":{"name":"x","namespace":true}}"#,
                "event metadata.namespace is a boolean, not a string",
            ),
        ];
        for (obj, want) in cases {
            let e = parse_event(obj.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{obj}: {e}");
        }
        let secret = r#"{"metadata":{"name":7},"message":"SECRET"}"#;
        assert!(
            !parse_event(secret.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("SECRET")
        );
        // A malformed resourceVersion costs nothing.
        assert!(parse_event(br#"{"metadata":{"name":"x","resourceVersion":5}}"#).is_ok());
    }

    #[test]
    fn separators_in_names_do_not_collide() {
        // Under a naive "ns/name/count" key these would all be "a/b/c/1".
        let x = id(&event("a", "b/c", r#","count":1"#));
        let y = id(&event("a/b", "c", r#","count":1"#));
        assert_ne!(x, y);
        let nul = id(&event("a", "b\\u0000\\u0001", ""));
        let plain = id(&event("a", "b", ""));
        assert_ne!(nul, plain);
    }

    /// Throughput of the per-event hot path (frame parse + identity) over the captured watch
    /// lines. Run optimised: `cargo test --release --lib -- --ignored --nocapture throughput`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn throughput() {
        let data = fixture("raw-watch.jsonl");
        let lines: Vec<&[u8]> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let rounds = 20_000;
        let start = std::time::Instant::now();
        let mut check = 0usize;
        for _ in 0..rounds {
            for line in &lines {
                let f = parse_watch_frame(line).unwrap();
                identity_into(f.object, &mut buf).unwrap();
                out.clear();
                crate::wire::frame::write_watch_object(f.object, &mut out);
                check += buf.len() + out.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let frames = (rounds * lines.len()) as f64;
        println!(
            "{frames} frames ({} B avg) in {secs:.3} s: {:.0} frames/s, {:.0} MB/s (check {check})",
            bytes / lines.len(),
            frames / secs,
            (rounds * bytes) as f64 / secs / 1e6
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        type Tuple = (Option<String>, String, Option<String>, Option<String>);

        fn count_text() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                ".{0,4}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ])
        }

        fn tuple() -> impl Strategy<Value = Tuple> {
            // Tiny alphabets containing separator-like bytes make collisions likely to be tried.
            (
                proptest::option::of("[a/\u{0}\u{1}-]{1,4}"),
                "[a/\u{0}\u{1}-]{0,4}",
                count_text(),
                count_text(),
            )
        }

        fn object((ns, name, count, series): &Tuple) -> String {
            let mut meta = serde_json::Map::new();
            meta.insert("name".into(), name.clone().into());
            if let Some(ns) = ns {
                meta.insert("namespace".into(), ns.clone().into());
            }
            let mut s = format!(r#"{{"metadata":{}"#, serde_json::Value::Object(meta));
            if let Some(c) = count {
                s.push_str(&format!(r#","count":{c}"#));
            }
            if let Some(c) = series {
                s.push_str(&format!(r#","series":{{"count":{c}}}"#));
            }
            s.push('}');
            s
        }

        proptest! {
            #[test]
            fn distinct_tuples_distinct_identities(a in tuple(), b in tuple()) {
                let ia = id(&object(&a));
                let ib = id(&object(&b));
                prop_assert_eq!(a == b, ia == ib, "{:?} {:?}", a, b);
            }

            #[test]
            fn buffer_reuse_gives_the_same_identity(a in tuple(), b in tuple()) {
                let mut buf = Vec::new();
                let oa = object(&a);
                let ob = object(&b);
                identity_into(ob.as_bytes(), &mut buf).unwrap();
                identity_into(oa.as_bytes(), &mut buf).unwrap();
                prop_assert_eq!(buf, id(&oa));
            }
        }
    }
}

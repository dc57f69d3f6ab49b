//! Generated data: RFC 3339 times, uuids, realistic core/v1 events and the pre-rendered watch
//! frames benchmarks are served from.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::json::json_str;

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    (y, m, day, secs % 86_400, d.subsec_micros())
}

/// `2026-11-26T06:41:46Z`
pub fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, s, _) = split_time(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-11-26T06:10:00.123456Z`
pub fn rfc3339_micros(t: SystemTime) -> String {
    let (y, m, d, s, us) = split_time(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

static PROCESS_SALT: AtomicU64 = AtomicU64::new(0);

/// Makes every uuid (and so every realistic event) the same in each process that calls this
/// before making any: the benchmark renders the fake's prepared frames again to check the
/// daemon's output. Without it, uuids differ between runs.
pub fn fix_uuid_salt() {
    PROCESS_SALT.store(0x5eed_5eed_5eed_5eed, Ordering::SeqCst);
}

pub(super) fn uuid(seq: u64, salt: u64) -> String {
    if PROCESS_SALT.load(Ordering::Relaxed) == 0 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let _ = PROCESS_SALT.compare_exchange(0, t | 1, Ordering::SeqCst, Ordering::SeqCst);
    }
    let base = PROCESS_SALT.load(Ordering::Relaxed) ^ salt.rotate_left(17);
    let a = splitmix(base ^ seq.wrapping_mul(2));
    let b = splitmix(a ^ seq.wrapping_mul(2).wrapping_add(1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "payments",
    "checkout",
    "search",
    "batch-jobs",
    "data-pipeline",
    "auth",
    "frontend",
    "logging",
    "istio-system",
    "argocd",
    "ml-training",
    "reporting",
    "billing",
    "staging",
    "team-a",
    "team-b",
    "team-c",
    "canary",
];

const APPS: &[&str] = &[
    "api",
    "web",
    "worker",
    "scheduler",
    "cache",
    "gateway",
    "indexer",
    "exporter",
    "db-proxy",
    "notifier",
    "uploader",
    "cron-sync",
];

/// `(namespace, name)` of the i-th realistic event; names are unique per i.
pub fn realistic_key(i: usize) -> (String, String) {
    let ns = NAMESPACES[i % NAMESPACES.len()];
    let app = APPS[(i / NAMESPACES.len()) % APPS.len()];
    let h = splitmix(i as u64);
    let pod = format!("{app}-{:08x}-{:05x}", (h >> 32) as u32, h & 0xfffff);
    (
        ns.to_string(),
        format!("{pod}.{:016x}", splitmix(h ^ i as u64)),
    )
}

/// About 1 KB of realistic core/v1 Event fields (no metadata) for the i-th event: an
/// involvedObject, reason, a 100-200 byte message, source, timestamps and count.
pub fn realistic_event(i: usize) -> String {
    let (ns, name) = realistic_key(i);
    let pod = name.split('.').next().unwrap_or("pod").to_string();
    let h = splitmix(i as u64 ^ 0xabcdef);
    let container = pod.split('-').next().unwrap_or("app");
    let node = format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        h % 16,
        (h >> 8) % 256,
        (h >> 16) % 256
    );
    let secs = 1_795_500_000 + (i as u64 % 86_400) * 7;
    let first = rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    let last = rfc3339(UNIX_EPOCH + Duration::from_secs(secs + (h % 600)));
    let count = 1 + h % 40;
    let (kind, reason, message) = match h % 6 {
        0 => (
            "Warning",
            "BackOff",
            format!(
                "Back-off restarting failed container {container} in pod {pod}_{ns}({}); last exit code 137 (OOMKilled), restart count {count}",
                uuid(i as u64, 7)
            ),
        ),
        1 => (
            "Normal",
            "Pulled",
            format!(
                "Successfully pulled image \"registry.example.com/{ns}/{container}:v1.{}.{}\" in 2.{}s (2.{}s including waiting). Image size: {} bytes.",
                h % 30,
                h % 7,
                h % 1000,
                h % 1000,
                40_000_000 + h % 90_000_000
            ),
        ),
        2 => (
            "Warning",
            "Unhealthy",
            format!(
                "Readiness probe failed: Get \"http://10.{}.{}.{}:8080/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                h % 256,
                (h >> 8) % 256,
                (h >> 16) % 256
            ),
        ),
        3 => (
            "Warning",
            "FailedScheduling",
            format!(
                "0/{} nodes are available: {} Insufficient cpu, {} node(s) had untolerated taint {{node-role.kubernetes.io/control-plane: }}. preemption: not helpful.",
                12 + h % 30,
                h % 10,
                3
            ),
        ),
        4 => (
            "Normal",
            "Scheduled",
            format!(
                "Successfully assigned {ns}/{pod} to {node} after waiting for volume binding and topology spread constraints"
            ),
        ),
        _ => (
            "Warning",
            "FailedMount",
            format!(
                "MountVolume.SetUp failed for volume \"{container}-config\" : configmap \"{container}-config-{:x}\" not found; retrying in {}s",
                h & 0xffff,
                h % 120
            ),
        ),
    };
    let uid = uuid(i as u64, 3);
    format!(
        concat!(
            "{{\"involvedObject\":{{\"kind\":\"Pod\",\"namespace\":{ns},\"name\":{pod},\"uid\":\"{uid}\",",
            "\"apiVersion\":\"v1\",\"resourceVersion\":\"{orv}\",\"fieldPath\":\"spec.containers{{{c}}}\"}},",
            "\"reason\":\"{reason}\",\"message\":{message},",
            "\"source\":{{\"component\":\"kubelet\",\"host\":\"{node}\"}},",
            "\"firstTimestamp\":\"{first}\",\"lastTimestamp\":\"{last}\",\"count\":{count},",
            "\"type\":\"{kind}\",\"eventTime\":null,\"reportingComponent\":\"kubelet\",",
            "\"reportingInstance\":\"{node}\"}}"
        ),
        ns = json_str(&ns),
        pod = json_str(&pod),
        uid = uid,
        orv = 1_000_000 + h % 9_000_000,
        c = container,
        reason = reason,
        message = json_str(&message),
        node = node,
        first = first,
        last = last,
        count = count,
        kind = kind,
    )
}

/// The object of prepared watch frames for the j-th realistic event at `rv`, as a watch frame
/// carries it (kind and apiVersion first, then metadata, then `realistic_event(j)`'s fields).
pub fn prepared_object(j: usize, rv: u64, out: &mut String) {
    let (ns, name) = realistic_key(j);
    let created =
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_500_000 + (j as u64 % 86_400) * 7));
    let fields = realistic_event(j);
    let _ = write!(
        out,
        "{{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":{},\"namespace\":{},\"uid\":\"{}\",\"resourceVersion\":\"{rv}\",\"creationTimestamp\":\"{created}\"}},{}",
        json_str(&name),
        json_str(&ns),
        uuid(j as u64, 11),
        &fields[1..]
    );
}

/// Whether prepared frame `i` repeats an earlier identity, and which event it carries: even
/// frames are new events (`i / 2`), odd ones repeat a pseudo-random earlier event (same
/// namespace, name and count; a newer resourceVersion), so half of all frames are repeats.
pub fn prepared_frame_event(i: usize) -> (bool, usize) {
    if i.is_multiple_of(2) {
        (false, i / 2)
    } else {
        (true, (splitmix(i as u64) % (i as u64 / 2 + 1)) as usize)
    }
}

/// Appends prepared watch frame `i` (with its `\n`): ADDED for a new event, MODIFIED for a
/// repeat; frame `i` carries resourceVersion `base_rv + 1 + i`.
pub fn prepared_watch_frame(i: usize, base_rv: u64, out: &mut String) {
    let (repeat, j) = prepared_frame_event(i);
    out.push_str(if repeat {
        "{\"type\":\"MODIFIED\",\"object\":"
    } else {
        "{\"type\":\"ADDED\",\"object\":"
    });
    prepared_object(j, base_rv + 1 + i as u64, out);
    out.push_str("}\n");
}

/// `n` prepared frames in chunks of about 256 KiB, each ending at a frame boundary.
pub fn prepared_watch_chunks(n: usize, base_rv: u64) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut chunk = String::with_capacity(260 * 1024);
    for i in 0..n {
        prepared_watch_frame(i, base_rv, &mut chunk);
        if chunk.len() >= 256 * 1024 {
            chunks.push(Bytes::from(std::mem::replace(
                &mut chunk,
                String::with_capacity(260 * 1024),
            )));
        }
    }
    if !chunk.is_empty() {
        chunks.push(Bytes::from(chunk));
    }
    chunks
}

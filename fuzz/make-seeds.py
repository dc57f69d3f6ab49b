#!/usr/bin/env python3
"""Writes the text seed corpora (fuzz/corpus/{watch_frames,identity,config_toml}) from the
captures in tests/fixtures/real-apiserver, samples/ and packaging/. The filter seeds
(filter_header, filter_file) are real .bloom files; see fuzz/README.md. Run from the repo root."""
import json, os, struct

FIX = "tests/fixtures/real-apiserver"
OUT = "fuzz/corpus"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def lines(path):
    return [l for l in read(path).split(b"\n") if l.strip()]


# watch_frames: control byte (low 3 bits = number of chunk sizes that follow, bit 3 = small
# object limit), chunk sizes, then the stream.
def wf(name, stream, sizes=b"", small=False):
    control = len(sizes) | (8 if small else 0)
    put("watch_frames", name, bytes([control]) + sizes + stream)


watch = lines(f"{FIX}/raw-watch.jsonl")
for i in (0, 1, 5, len(watch) - 1):
    wf(f"raw-watch-line{i}", watch[i] + b"\n")
wf("raw-watch-three-chunked", b"\n".join(watch[:3]) + b"\n", b"\x07\x40\x01")
wf("raw-watch-expired", read(f"{FIX}/raw-watch-expired.jsonl"))
wf("raw-watch-bookmarks", lines(f"{FIX}/raw-watch-bookmarks.jsonl")[0] + b"\n")
wf("raw-list-page1", read(f"{FIX}/raw-list-page1.json"))
wf("raw-list-expired-continue", read(f"{FIX}/raw-list-expired-continue.json"))
wf("raw-list-compact", read(f"{FIX}/raw-list-compact.json"))
wf("list-odd-items", b'{"metadata":{"continue":"t"},"items":[{"count":1},{"metadata":{"name":"s\\ud800"}},'
   b'[1],{"metadata":{"name":"u"},"message":"\xff"},{"metadata":{"name":"ok","namespace":"n"}}],"kind":"EventList"}\n')
wf("raw-unauthorized-pretty", read(f"{FIX}/raw-unauthorized.json"), b"\x10")
kubectl = lines(f"{FIX}/kubectl-watch.json")
wf("kubectl-two-frames", b"\n".join(kubectl[:2]) + b"\n", b"\x1f\x02")
pretty = b"".join(
    json.dumps(json.loads(l), indent=4, sort_keys=True).encode() + b"\n" for l in kubectl[:2]
)
wf("kubectl-two-frames-pretty", pretty, b"\x03\x80\x11")
wf("kubectl-pretty-truncated", pretty[: len(pretty) * 3 // 4], b"\x05")
wf("kubectl-small-limit", kubectl[0] + b"\n" + kubectl[1] + b"\n", small=True)
wf("kubectl-glued", kubectl[0] + kubectl[1])
wf("kubectl-garbage-then-frame", b"x}\n" + kubectl[0] + b'\n{"cut": "a\n' + kubectl[1] + b"\n")
chunked = lines(f"{FIX}/kubectl-watch-chunked.json")
wf("kubectl-list-chunks", b"\n".join(chunked) + b"\n", b"\x40\x07")
wf("kubectl-list-chunk-pretty", json.dumps(json.loads(chunked[2]), indent=4, sort_keys=True).encode() + b"\n")
wf("kubectl-list-chunk-odd-items", b'{"type":"ADDED","object":{"apiVersion":"v1","items":[{"metadata":{"name":"a"}},{"count":1},'
   b'[1],{"metadata":{"name":"s\\ud800"}}],"kind":"EventList","metadata":{"resourceVersion":"7"}}}\n'
   b'{"type":"ADDED","object":{"items":[],"kind":"EventList"}}\n')
sample = read("samples/kubectl-watch-events.json")
wf("samples-head", sample[:3000], b"\x02\x00")

# identity: event objects as a watch frame or a list page carries them.
for i in (0, 1, 7):
    put("identity", f"watch-object{i}", json.dumps(json.loads(watch[i])["object"], separators=(",", ":")))
for name in ("raw-list-page1", "raw-list-events-v1"):
    items = json.loads(read(f"{FIX}/{name}.json"))["items"]
    put("identity", f"{name}-item0", json.dumps(items[0], separators=(",", ":")))
    put("identity", f"{name}-item-last", json.dumps(items[-1], indent=2))
put("identity", "escaped-name", r'{"metadata":{"name":"a\u0062c","namespace":""},"count":null,"deprecatedCount":2,"series":{"count": 3 }}')
put("identity", "dup-keys", '{"metadata":{"name":"x"},"metadata":{"name":"y","namespace":null},"count":1,"count":1.50}')

# config_toml
put("config_toml", "packaging", read("packaging/config.toml"))
put("config_toml", "all-keys", """destination = "-"
log_level = "warn"
persistence_path = "/tmp"
filter_capacity = 1_000
filter_error_rate = 1e-3
batch_count = "3"
batch_duration_sec = 60
filter_max_mib = 0.5
kubeconfig = '/etc/kube/config'
context = "a \\"b\\" c"
log_target = "journald"
watch_idle_timeout_sec = 300
metrics_address = "[::1]:9784"
""")
put("config_toml", "errors", """destinaton = "x"
batch_count = 0
filter_error_rate = 1.5
log_level = ["a"]
[table]
k = 1
""")
put("config_toml", "syntax", "destination = \n")
put("config_toml", "empty", "")

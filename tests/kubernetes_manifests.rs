//! The manifests under `packaging/kubernetes/` as `kubectl apply -k` would send them: every
//! object is read into its k8s-openapi type and must come back out unchanged, so a misspelt or
//! misplaced field (which the API server would drop silently, or reject) fails here; the
//! StatefulSet's settings are checked against what the daemon accepts and what the image
//! provides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kube-event-pipe");

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes")
}

/// The YAML documents of a file, as JSON values (comment-only documents left out).
fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| format!("not YAML: {e}"))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Where `typed` (the value read into its type and written back) differs from `raw`: the field
/// the type does not know, or the value it would not keep.
fn difference(raw: &Value, typed: &Value, path: &str) -> Option<String> {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let here = format!("{path}.{k}");
                match t.get(k) {
                    None => return Some(format!("{here}: no such field")),
                    Some(tv) => {
                        if let Some(d) = difference(v, tv, &here) {
                            return Some(d);
                        }
                    }
                }
            }
            // A resource nested in another (a StatefulSet's claim templates) is written back
            // with its apiVersion and kind, which the manifest may leave out.
            t.keys()
                .find(|k| !r.contains_key(*k) && !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|k| format!("{path}.{k}: added by the type"))
        }
        (Value::Array(r), Value::Array(t)) if r.len() == t.len() => r
            .iter()
            .zip(t)
            .enumerate()
            .find_map(|(i, (a, b))| difference(a, b, &format!("{path}[{i}]"))),
        _ if raw == typed => None,
        _ => Some(format!("{path}: {raw} is read as {typed}")),
    }
}

fn roundtrip<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match difference(doc, &back, "") {
        None => Ok(back),
        Some(d) => Err(d),
    }
}

/// Checks one object against its type: `Err` names the kind, the object and the field.
fn check_object(doc: &Value) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    let result = match (api_version, kind) {
        ("v1", "ServiceAccount") => roundtrip::<ServiceAccount>(doc),
        ("v1", "Service") => roundtrip::<Service>(doc),
        ("apps/v1", "StatefulSet") => roundtrip::<StatefulSet>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<ClusterRoleBinding>(doc)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<RoleBinding>(doc),
        _ => Err(format!("unexpected apiVersion/kind {api_version}/{kind}")),
    };
    result
        .map(|_| ())
        .map_err(|e| format!("{kind} {name}: {e}"))
}

/// `kustomization.yaml`: only the fields kustomize knows that this one uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: String,
    resources: Vec<String>,
    images: Vec<KustomizeImage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

fn kustomization(text: &str) -> Result<Kustomization, String> {
    let k: Kustomization = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if k.api_version != "kustomize.config.k8s.io/v1beta1" || k.kind != "Kustomization" {
        return Err(format!("apiVersion/kind {}/{}", k.api_version, k.kind));
    }
    Ok(k)
}

/// Every object of the files the kustomization lists, checked.
fn objects() -> Vec<Value> {
    let k =
        kustomization(&std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap()).unwrap();
    let mut all = Vec::new();
    for file in &k.resources {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        for doc in documents(&text).unwrap_or_else(|e| panic!("{file}: {e}")) {
            check_object(&doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            all.push(doc);
        }
    }
    all
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_manifest_is_read_by_its_kubernetes_type_with_nothing_unknown_and_kustomize_lists_them_all()
{
    let k =
        kustomization(&std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap()).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    let mut listed = k.resources.clone();
    listed.sort();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");

    let objects = objects();
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| format!("{} {}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole \"kube-event-pipe\"",
            "ClusterRoleBinding \"kube-event-pipe\"",
            "Role \"kube-event-pipe-leader-election\"",
            "RoleBinding \"kube-event-pipe-leader-election\"",
            "Service \"kube-event-pipe\"",
            "ServiceAccount \"kube-event-pipe\"",
            "StatefulSet \"kube-event-pipe\"",
        ]
    );
    // Each namespaced object in the kustomization's namespace.
    for o in &objects {
        if !matches!(
            o["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        ) {
            assert_eq!(o["metadata"]["namespace"], k.namespace.as_str(), "{o}");
        }
    }
}

#[test]
fn a_misspelt_or_misplaced_field_is_caught() {
    let text = std::fs::read_to_string(dir().join("statefulset.yaml")).unwrap();
    let check =
        |text: &str| -> Result<(), String> { documents(text)?.iter().try_for_each(check_object) };
    assert_eq!(check(&text), Ok(()));

    let typo = text.replace("serviceAccountName:", "serviceAcountName:");
    assert_eq!(
        check(&typo),
        Err(
            "StatefulSet kube-event-pipe: .spec.template.spec.serviceAcountName: no such field"
                .into()
        )
    );
    // A field at the wrong level: `image` in the pod spec instead of the container.
    let misplaced = text.replace(
        "      serviceAccountName: kube-event-pipe\n",
        "      serviceAccountName: kube-event-pipe\n      image: x\n",
    );
    assert_eq!(
        check(&misplaced),
        Err("StatefulSet kube-event-pipe: .spec.template.spec.image: no such field".into())
    );
    // A value of the wrong type is refused by the type itself.
    let wrong = text.replace("replicas: 2", "replicas: two");
    assert!(
        check(&wrong)
            .unwrap_err()
            .contains("StatefulSet kube-event-pipe")
    );

    let k = std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap();
    assert!(kustomization(&k).is_ok());
    let err = kustomization(&k.replace("resources:", "resource:")).unwrap_err();
    assert!(err.contains("unknown field `resource`"), "{err}");
}

#[test]
fn the_access_granted_is_that_of_packaging_rbac_yaml() {
    // The same ServiceAccount, roles and bindings the packages ship (README "Install"), minus
    // the long-lived token a daemon outside the cluster needs.
    let shipped = documents(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/rbac.yaml"))
            .unwrap(),
    )
    .unwrap();
    let objects = objects();
    let mut compared = 0;
    for o in shipped.iter().filter(|o| o["kind"] != "Secret") {
        let name = o["metadata"]["name"].as_str().unwrap();
        assert_eq!(find(&objects, o["kind"].as_str().unwrap(), name), o);
        compared += 1;
    }
    assert_eq!(compared, 5);
    // Read-only on Events, nothing else cluster-wide.
    assert_eq!(
        find(&objects, "ClusterRole", "kube-event-pipe")["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]}])
    );
}

/// The daemon's effective settings for the StatefulSet's environment, as `--check-config`
/// prints them, with the downward API's values filled in for the pod kube-event-pipe-1.
fn effective_settings(env: &[Value]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(tmp.path())
        // The image's own setting.
        .env("KUBE_EVENT_PIPE_PERSISTENCE_PATH", "/var/filters")
        .args(["--config", config.to_str().unwrap(), "--check-config"]);
    for e in env {
        let name = e["name"].as_str().unwrap();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "kube-event-pipe-1".to_string(),
            Some("metadata.namespace") => "kube-system".to_string(),
            Some(other) => panic!("{name}: fieldPath {other} not filled in by this test"),
            None => e["value"].as_str().unwrap().to_string(),
        };
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_statefulset_runs_two_electing_replicas_each_with_its_own_filters_probed_on_the_metrics_port()
{
    let objects = objects();
    let sts = find(&objects, "StatefulSet", "kube-event-pipe");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        find(&objects, "ServiceAccount", "kube-event-pipe")["metadata"]["name"]
    );
    assert_eq!(
        spec["serviceName"],
        find(&objects, "Service", "kube-event-pipe")["metadata"]["name"]
    );
    // The image's user, and the volume made writable for it.
    assert_eq!(pod["securityContext"]["runAsUser"], 12341);
    assert_eq!(pod["securityContext"]["fsGroup"], 12341);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The environment is accepted by the daemon as it is, with no warning about an unknown
    // variable, and gives leader election with the pod's name as identity.
    let (ok, settings, log) = effective_settings(c["env"].as_array().unwrap());
    assert!(ok, "{log}");
    assert!(!log.contains("unknown"), "{log}");
    for line in [
        "leader_election = true",
        "identity = \"kube-event-pipe-1\"",
        "lease_namespace = \"kube-system\"",
        "metrics_address = \"0.0.0.0:9784\"",
        "persistence_path = \"/var/filters\"",
        "destination = \"-\"",
    ] {
        assert!(
            settings.lines().any(|l| l.starts_with(line)),
            "{line} in:\n{settings}"
        );
    }
    // The Lease the Role lets it update is the one it uses (the default lease_name).
    assert!(
        settings
            .lines()
            .any(|l| l.starts_with("lease_name = \"kube-event-pipe\""))
    );
    assert_eq!(
        find(&objects, "Role", "kube-event-pipe-leader-election")["rules"][0]["resourceNames"],
        serde_json::json!(["kube-event-pipe"])
    );

    // The metrics port is the one metrics_address listens on; the probes use it.
    let port = &c["ports"][0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["containerPort"], 9784);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    let svc = find(&objects, "Service", "kube-event-pipe");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(svc["spec"]["selector"], spec["selector"]["matchLabels"]);
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        spec["selector"]["matchLabels"]
    );

    // Each replica's own claim, mounted where the image keeps its filters.
    let claim = &spec["volumeClaimTemplates"][0];
    assert_eq!(c["volumeMounts"][0]["name"], claim["metadata"]["name"]);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/filters");
    assert_eq!(
        claim["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );

    // Memory in MiB, the request below the limit.
    let mib = |q: &Value| -> u64 {
        q.as_str()
            .and_then(|s| s.strip_suffix("Mi"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{q} is not in Mi"))
    };
    let r = &c["resources"];
    assert!(mib(&r["requests"]["memory"]) < mib(&r["limits"]["memory"]));

    // Nothing more than the daemon needs.
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
}

#[test]
fn the_image_is_this_version() {
    // The tag tests/container/run.sh gives the image it builds, in both places a user reads it.
    let version = env!("CARGO_PKG_VERSION");
    let objects = objects();
    let sts = find(&objects, "StatefulSet", "kube-event-pipe");
    // A new version in Cargo.toml needs its tag here, in statefulset.yaml and
    // kustomization.yaml, and as the Containerfile's ARG VERSION.
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("localhost/kube-event-pipe:{version}"),
        "statefulset.yaml: the image tag is the version in Cargo.toml"
    );
    let k =
        kustomization(&std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap()).unwrap();
    assert_eq!(k.images.len(), 1);
    assert_eq!(k.images[0].name, "localhost/kube-event-pipe");
    assert_eq!(k.images[0].new_name, None);
    assert_eq!(
        k.images[0].new_tag.as_deref(),
        Some(version),
        "kustomization.yaml: newTag is the version in Cargo.toml"
    );
    // And the image's own version label (the Containerfile's default).
    let containerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"))
            .unwrap();
    assert!(
        containerfile
            .lines()
            .any(|l| l == format!("ARG VERSION={version}")),
        "Containerfile: ARG VERSION={version}"
    );
}

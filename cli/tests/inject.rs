//! `conduit inject` and `conduit uninject` on a corpus of realistic
//! manifests (`tests/inject/input/`): multi-container pods, existing init
//! containers, volumes and annotations, every workload kind, `kubectl get
//! -o yaml` Lists, JSON, comments, objects that pass through.
//!
//! Each input has reviewed goldens in `tests/inject/golden/`: the injected
//! stream and the per-object summary. `CONDUIT_BLESS=1` rewrites them; read
//! the diff before committing it.

mod manifests;

use std::path::{Path, PathBuf};

use manifests::{KUBERNETES_VERSION, conduit, conduit_ok, kubernetes_validate, objects};

struct Case {
    stem: String,
    input: PathBuf,
    args: Vec<String>,
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/input");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .map(|input| {
            let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
            let args = std::fs::read_to_string(dir.join(format!("{stem}.args")))
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            Case { stem, input, args }
        })
        .collect();
    cases.sort_by(|a, b| a.stem.cmp(&b.stem));
    assert!(cases.len() >= 9, "the corpus is missing");
    cases
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inject/golden")
        .join(name)
}

/// Compares with a golden file, or rewrites it under `CONDUIT_BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("CONDUIT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CONDUIT_BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden file; got:\n{actual}"
    );
}

fn inject(case: &Case, input: &str) -> (String, String) {
    let mut args = vec!["inject"];
    args.extend(case.args.iter().map(String::as_str));
    args.push("-");
    conduit_ok(&args, input)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn inject_matches_the_reviewed_goldens() {
    for case in corpus() {
        let (out, summary) = inject(&case, &read(&case.input));
        check_golden(&format!("{}.injected.yaml", case.stem), &out);
        check_golden(&format!("{}.summary", case.stem), &summary);
    }
}

#[test]
fn injecting_twice_equals_injecting_once() {
    for case in corpus() {
        let (once, _) = inject(&case, &read(&case.input));
        let (twice, _) = inject(&case, &once);
        assert_eq!(once, twice, "{}", case.stem);
    }
}

/// `uninject(inject(x)) == uninject(x)`: for a stream that was not
/// injected that is `x` itself. The one exception, a workload that already
/// said `conduit.io/inject: enabled`, has its own reviewed golden.
#[test]
fn uninject_reverses_inject() {
    for case in corpus() {
        let input = read(&case.input);
        let (injected, _) = inject(&case, &input);
        let (round_trip, summary) = conduit_ok(&["uninject", "-"], &injected);
        let exception = golden_path(&format!("{}.uninjected.yaml", case.stem));
        let expected = if exception.exists() {
            read(&exception)
        } else {
            conduit_ok(&["uninject", "-"], &input).0
        };
        assert_eq!(
            objects(&round_trip),
            objects(&expected),
            "{}: uninject(inject(x)) != uninject(x)\n{round_trip}",
            case.stem
        );
        let injected_count = inject(&case, &input).1.matches(" injected").count();
        assert_eq!(
            summary.matches(" uninjected").count(),
            injected_count,
            "{}: {summary}",
            case.stem
        );
    }
}

#[test]
fn uninject_leaves_streams_without_proxies_unchanged() {
    for case in corpus().iter().filter(|c| c.stem != "old-proxy") {
        let input = read(&case.input);
        let (out, summary) = conduit_ok(&["uninject", "-"], &input);
        assert_eq!(objects(&out), objects(&input), "{}", case.stem);
        assert!(!summary.contains(" uninjected"), "{}: {summary}", case.stem);
    }
}

/// Objects flattened out of Lists, in stream order: one per summary line.
fn flat_objects(yaml: &str) -> Vec<serde_json::Value> {
    objects(yaml)
        .into_iter()
        .flat_map(|v| {
            if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
                v["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            }
        })
        .collect()
}

#[test]
fn skipped_objects_pass_through_unchanged_and_injected_ones_gain_only_the_proxy() {
    for case in corpus().iter().filter(|c| c.stem != "old-proxy") {
        let input = read(&case.input);
        let (out, summary) = inject(case, &input);
        let before = flat_objects(&input);
        let after = flat_objects(&out);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(before.len(), lines.len(), "{}", case.stem);
        assert_eq!(after.len(), lines.len(), "{}", case.stem);
        for ((b, a), line) in before.iter().zip(&after).zip(&lines) {
            if line.contains(" skipped") {
                assert_eq!(a, b, "{}: {line}", case.stem);
                continue;
            }
            assert!(line.ends_with(" injected"), "{line}");
            // Everything the object had is still there, except that lists
            // it had grew.
            assert_contains(a, b, &format!("{}: {line}", case.stem));
        }
    }
}

/// `big` holds all of `small`: same scalars, maps with at least its keys,
/// lists with its items in order (possibly among others).
fn assert_contains(big: &serde_json::Value, small: &serde_json::Value, at: &str) {
    use serde_json::Value::{Array, Object};
    match (big, small) {
        (Object(b), Object(s)) => {
            for (k, v) in s {
                let inner = b.get(k).unwrap_or_else(|| panic!("{at}: lost {k}"));
                assert_contains(inner, v, &format!("{at}.{k}"));
            }
        }
        (Array(b), Array(s)) => {
            let mut rest = b.iter();
            for item in s {
                assert!(rest.any(|x| x == item), "{at}: lost or reordered {item}");
            }
        }
        _ => assert_eq!(big, small, "{at}"),
    }
}

#[test]
fn an_old_injection_is_upgraded_as_if_injected_afresh() {
    let case = corpus()
        .into_iter()
        .find(|c| c.stem == "old-proxy")
        .unwrap();
    let old = read(&case.input);
    assert!(old.contains("proxy:0.0.9") && old.contains("\"1234\""));
    let (upgraded, _) = inject(&case, &old);
    let (clean, _) = conduit_ok(&["uninject", "-"], &old);
    let (fresh, _) = inject(&case, &clean);
    assert_eq!(upgraded, fresh);
    assert!(!upgraded.contains("0.0.9") && !upgraded.contains("1234"));
}

#[test]
fn every_injected_stream_passes_kubernetes_validate() {
    let outputs: Vec<(String, String)> = corpus()
        .iter()
        .map(|case| {
            let (out, _) = inject(case, &read(&case.input));
            (format!("{}.yaml", case.stem), out)
        })
        .collect();
    let files: Vec<(&str, &str)> = outputs
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    if let Err(e) = kubernetes_validate("inject", &files) {
        panic!("injected manifests are not valid Kubernetes {KUBERNETES_VERSION}:\n{e}");
    }
}

#[test]
fn json_output_is_the_same_objects_as_yaml() {
    for case in corpus() {
        let input = read(&case.input);
        let (yaml, _) = inject(&case, &input);
        let mut args = vec!["inject", "-o", "json"];
        args.extend(case.args.iter().map(String::as_str));
        args.push("-");
        let (json, _) = conduit_ok(&args, &input);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let flatten = |v: serde_json::Value| -> Vec<serde_json::Value> {
            if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
                v["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            }
        };
        let from_yaml: Vec<serde_json::Value> =
            objects(&yaml).into_iter().flat_map(flatten).collect();
        assert_eq!(flatten(json), from_yaml, "{}", case.stem);
    }
}

#[test]
fn a_directory_is_read_in_file_name_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/input");
    let (out, summary) = conduit_ok(&["inject", dir.to_str().unwrap()], "");
    let mut expected_summary = String::new();
    for case in corpus() {
        // Flags of a case file apply to that file only when it is injected
        // alone; compare object identities, not content.
        let (_, s) = conduit_ok(&["inject", case.input.to_str().unwrap()], "");
        expected_summary.push_str(&s);
    }
    assert_eq!(summary, expected_summary);
    assert_eq!(
        objects(&out).len(),
        corpus()
            .iter()
            .map(|c| objects(&read(&c.input)).len())
            .sum::<usize>()
    );
}

/// Errors name the file, the document and the line; nothing reaches
/// stdout, not even the documents before the bad one.
fn assert_fails(args: &[&str], stdin: &str, expected: &str) {
    let out = conduit(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "printed half: {:?}", out.stdout);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

const GOOD_DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ok\nspec:\n  template:\n    spec:\n      containers:\n      - name: ok\n        image: ok\n";

#[test]
fn broken_yaml_is_an_error_naming_document_and_line() {
    let input = format!(
        "{GOOD_DEPLOYMENT}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n"
    );
    assert_fails(
        &["inject", "-"],
        &input,
        "<stdin>: document 2 (line 15, column",
    );
    assert_fails(&["uninject", "-"], &input, "document 2 (line 15");
}

#[test]
fn broken_json_is_an_error_naming_document_and_line() {
    assert_fails(
        &["inject", "-"],
        "{\"apiVersion\": \"v1\", \"kind\": \"Service\"}\n{\"kind\": \"Service\",\n \"metadata\": }\n",
        "<stdin>: document 2 (line 3, column 14): invalid JSON",
    );
}

#[test]
fn unknown_kinds_are_errors() {
    let typo = GOOD_DEPLOYMENT.replace("kind: Deployment", "kind: Deploymnet");
    let input = format!("{GOOD_DEPLOYMENT}---\n{typo}");
    assert_fails(
        &["inject", "-"],
        &input,
        "<stdin>: document 2 (line 12): Deploymnet \"ok\": unknown kind \"Deploymnet\" in apps/v1; did you mean Deployment?",
    );
    let old = GOOD_DEPLOYMENT.replace("apps/v1", "extensions/v1beta1");
    assert_fails(
        &["inject", "-"],
        &old,
        "no longer served by Kubernetes: use apiVersion: apps/v1",
    );
    assert_fails(
        &["inject", "-"],
        "metadata:\n  name: what\n",
        "document 1 (line 1): not a Kubernetes object: it has no kind",
    );
}

#[test]
fn a_workload_without_containers_is_an_error() {
    let empty = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: empty\nspec:\n  template:\n    spec:\n      containers: []\n";
    assert_fails(
        &["inject", "-"],
        &format!("{GOOD_DEPLOYMENT}---\n{empty}"),
        "<stdin>: document 2 (line 12): Deployment \"empty\": spec.template.spec.containers is empty: a pod needs at least one container",
    );
    let no_template =
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: bare\nspec:\n  replicas: 1\n";
    assert_fails(
        &["inject", "-"],
        no_template,
        "StatefulSet \"bare\": spec.template is missing",
    );
}

#[test]
fn errors_in_list_items_name_the_item_and_its_line() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n  spec:\n    containers:\n    - image: x\n";
    assert_fails(
        &["inject", "-"],
        list,
        "<stdin>: document 1, item 2 (line 7): Pod \"p\": spec.containers[0] has no name",
    );
}

#[test]
fn errors_in_files_name_the_file() {
    let dir = manifests::scratch("inject-bad-file");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "kind: Service\napiVersion: v1\nmetadata: {name: s}\n---\n: :\n",
    )
    .unwrap();
    assert_fails(
        &["inject", file.to_str().unwrap()],
        "",
        &format!("{}: document 2 (line 5", file.display()),
    );
    assert_fails(
        &["inject", dir.join("missing.yaml").to_str().unwrap()],
        "",
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_port_flags_are_usage_errors() {
    let out = conduit(&["inject", "--skip-inbound-ports", "80,http", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"http\" is not a port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers: [{name: web, image: web:1}]
";

#[test]
fn with_trust_anchors_proxies_certify_themselves_and_speak_mtls() {
    let dir = conduit_testbed::TempDir::new("anchors");
    let anchors = dir.path().join("ca.crt");
    let roots = conduit_deploy::IdentityRoots::generate(time::OffsetDateTime::now_utc()).unwrap();
    std::fs::write(&anchors, &roots.trust_anchors_pem).unwrap();
    let (out, _) = conduit_ok(
        &[
            "inject",
            "--identity-trust-anchors-file",
            anchors.to_str().unwrap(),
            "-",
        ],
        DEPLOYMENT,
    );
    let deployment = &objects(&out)[0];
    let spec = &deployment["spec"]["template"]["spec"];
    let proxy = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "conduit-proxy")
        .unwrap();
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} missing: {proxy}"))
            .to_string()
    };
    assert_eq!(
        env("CONDUIT_PROXY_IDENTITY_ADDR"),
        "https://conduit-controller.conduit.svc.cluster.local:8086"
    );
    assert_eq!(
        env("CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS_PEM"),
        roots.trust_anchors_pem
    );
    assert!(env("CONDUIT_PROXY_DESTINATION_ADDR").starts_with("https://"));
    assert!(env("CONDUIT_PROXY_TELEMETRY_ADDR").starts_with("https://"));
    let token = &spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "conduit-identity-token")
        .unwrap()["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "identity.conduit.io");
    assert_eq!(proxy["volumeMounts"][0]["name"], "conduit-identity-token");
    assert_eq!(
        env("CONDUIT_PROXY_IDENTITY_TOKEN_FILE"),
        format!(
            "{}/{}",
            proxy["volumeMounts"][0]["mountPath"].as_str().unwrap(),
            "token"
        )
    );
    if let Err(e) = kubernetes_validate("inject-identity", &[("web.yaml", &out)]) {
        panic!("{e}");
    }
    let (back, _) = conduit_ok(&["uninject", "-"], &out);
    assert_eq!(
        objects(&back),
        objects(&conduit_ok(&["uninject", "-"], DEPLOYMENT).0)
    );

    let bad = dir.path().join("bad.crt");
    std::fs::write(&bad, "not a certificate").unwrap();
    let failed = conduit(
        &[
            "inject",
            "--identity-trust-anchors-file",
            bad.to_str().unwrap(),
            "-",
        ],
        DEPLOYMENT,
    );
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no usable trust anchor"));
}

/// The proxy's environment variable `name`, if its container sets it.
fn proxy_env(injected: &str, name: &str) -> Option<String> {
    let deployment = &objects(injected)[0];
    deployment["spec"]["template"]["spec"]["initContainers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "conduit-proxy")?["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

/// What a proxy admits before the policy controller first answers it: the
/// cluster's default given to inject, unless the workload's annotation
/// says otherwise; a misspelt annotation is refused by name.
#[test]
fn the_default_inbound_policy_reaches_the_proxy_and_the_workload_annotation_wins() {
    const VAR: &str = "CONDUIT_PROXY_DEFAULT_INBOUND_POLICY";
    let (plain, _) = conduit_ok(&["inject", "-"], DEPLOYMENT);
    assert_eq!(proxy_env(&plain, VAR), None, "the proxy's own default");
    let (cluster, _) = conduit_ok(
        &[
            "inject",
            "--default-inbound-policy",
            "all-authenticated",
            "-",
        ],
        DEPLOYMENT,
    );
    assert_eq!(
        proxy_env(&cluster, VAR).as_deref(),
        Some("all-authenticated")
    );

    let annotated = DEPLOYMENT.replace(
        "    metadata: {labels: {app: web}}",
        "    metadata: {labels: {app: web}, annotations: {config.conduit.io/default-inbound-policy: deny}}",
    );
    let (out, _) = conduit_ok(
        &[
            "inject",
            "--default-inbound-policy",
            "all-authenticated",
            "-",
        ],
        &annotated,
    );
    assert_eq!(proxy_env(&out, VAR).as_deref(), Some("deny"));
    if let Err(e) = kubernetes_validate("inject-default-policy", &[("web.yaml", &out)]) {
        panic!("{e}");
    }

    let misspelt = annotated.replace(": deny}", ": deny-all}");
    let failed = conduit(&["inject", "-"], &misspelt);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("config.conduit.io/default-inbound-policy"),
        "{err}"
    );
}

/// A Deployment's proxy learns its pod's version (the ReplicaSet's
/// `pod-template-hash` label) from the downward API, so its series tell
/// the versions of a rollout apart; a bare pod has no such label and gets
/// no such variable.
#[test]
fn a_deployments_proxy_reads_its_pods_version_from_the_downward_api() {
    const VAR: &str = "CONDUIT_PROXY_WORKLOAD_VERSION";
    let (out, _) = conduit_ok(&["inject", "-"], DEPLOYMENT);
    let deployment = &objects(&out)[0];
    let proxy = deployment["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "conduit-proxy")
        .unwrap();
    let var = proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == VAR)
        .unwrap_or_else(|| panic!("{VAR} missing: {proxy}"));
    assert_eq!(
        var["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['pod-template-hash']"
    );
    if let Err(e) = kubernetes_validate("inject-version", &[("web.yaml", &out)]) {
        panic!("{e}");
    }

    let pod = "apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: demo}
spec:
  containers: [{name: debug, image: debug:1}]
";
    let (out, _) = conduit_ok(&["inject", "-"], pod);
    assert!(!out.contains(VAR), "{out}");
}

//! `conduit install` and `conduit uninstall`: every manifest is valid
//! Kubernetes (checked by the real `kubernetes-validate`), meets the
//! restricted Pod Security Standard, and the identity certificates chain up
//! (checked by OpenSSL). With fixed identity files the output is
//! deterministic and compared with reviewed goldens in `tests/install/`
//! (`CONDUIT_BLESS=1` rewrites them).

mod manifests;

use std::path::{Path, PathBuf};
use std::process::Command;

use manifests::{
    KUBERNETES_VERSION, conduit, conduit_ok, kubernetes_validate, objects,
    validate_custom_resources,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/install")
        .join(name)
}

fn identity_args() -> Vec<String> {
    let file = |n: &str| fixture(&format!("identity/{n}")).display().to_string();
    vec![
        "--identity-trust-anchors-file".into(),
        file("ca.crt"),
        "--identity-issuer-certificate-file".into(),
        file("issuer.crt"),
        "--identity-issuer-key-file".into(),
        file("issuer.key"),
    ]
}

fn install(extra: &[&str]) -> String {
    let mut args = vec!["install".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    conduit_ok(&args, "").0
}

fn install_with_identity(extra: &[&str]) -> String {
    let identity = identity_args();
    let mut args: Vec<&str> = identity.iter().map(String::as_str).collect();
    args.extend(extra);
    install(&args)
}

fn check_golden(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("CONDUIT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CONDUIT_BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden; got:\n{actual}"
    );
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                &o["spec"]["template"]["spec"],
            )
        })
        .collect()
}

#[test]
fn install_matches_the_reviewed_goldens() {
    check_golden("install.golden.yaml", &install_with_identity(&[]));
    check_golden(
        "install-ha.golden.yaml",
        &install_with_identity(&["--ha", "--namespace", "mesh-system"]),
    );
}

#[test]
fn every_manifest_passes_kubernetes_validate() {
    let plain = install(&[]);
    let ha = install(&["--ha", "-n", "mesh"]);
    let json = install(&["-o", "json"]);
    let result = kubernetes_validate(
        "install",
        &[
            ("install.yaml", &plain),
            ("ha.yaml", &ha),
            ("install.json", &json),
        ],
    );
    if let Err(e) = result {
        panic!("install is not valid Kubernetes {KUBERNETES_VERSION}:\n{e}");
    }
}

/// The validator is strict enough to catch a mistake: without this, the
/// test above would pass against a validator that accepts anything.
#[test]
fn kubernetes_validate_rejects_what_kubernetes_would() {
    let plain = install(&[]);
    let bad_field = plain.replacen(
        "automountServiceAccountToken: false",
        "automountToken: false",
        1,
    );
    assert!(kubernetes_validate("bad-field", &[("bad.yaml", &bad_field)]).is_err());
    let bad_type = plain.replacen("replicas: 1", "replicas: one", 1);
    assert!(kubernetes_validate("bad-type", &[("bad.yaml", &bad_type)]).is_err());
}

#[test]
fn install_has_the_whole_control_plane() {
    let objects = objects(&install(&[]));
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace/conduit",
            "CustomResourceDefinition/servers.policy.conduit.io",
            "CustomResourceDefinition/httproutes.policy.conduit.io",
            "CustomResourceDefinition/authorizationpolicies.policy.conduit.io",
            "CustomResourceDefinition/meshtlsauthentications.policy.conduit.io",
            "CustomResourceDefinition/networkauthentications.policy.conduit.io",
            "ServiceAccount/conduit-controller",
            "ServiceAccount/conduit-telemetry-store",
            "ClusterRole/conduit-conduit-controller",
            "ClusterRoleBinding/conduit-conduit-controller",
            "ClusterRole/conduit-conduit-tap",
            "ConfigMap/conduit-config",
            "Secret/conduit-identity-trust-anchors",
            "Secret/conduit-identity-issuer",
            "ConfigMap/conduit-grafana-dashboards",
            "Deployment/conduit-controller",
            "Service/conduit-controller",
            "Service/conduit-web",
            "StatefulSet/conduit-telemetry-store",
            "Service/conduit-telemetry-store",
            "Service/conduit-telemetry-store-headless",
            "NetworkPolicy/conduit-controller",
            "NetworkPolicy/conduit-telemetry-store",
        ]
    );
    let store = find(&objects, "StatefulSet", "conduit-telemetry-store");
    assert_eq!(
        store["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let controller = find(&objects, "Deployment", "conduit-controller");
    let args = &controller["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().unwrap().contains(&Value::from(
            "--store-addr=https://conduit-telemetry-store.conduit.svc.cluster.local:9096"
        )),
        "{args}"
    );
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    for (name, spec) in pod_specs(&objects(&install(&["--ha"]))) {
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for container in spec["containers"].as_array().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
            assert!(
                container["resources"]["requests"]["cpu"].is_string(),
                "{name}"
            );
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "{name}"
            );
            assert!(container["readinessProbe"].is_object(), "{name}");
            assert!(container["livenessProbe"].is_object(), "{name}");
        }
    }
}

#[test]
fn ha_replicates_the_controller_across_nodes() {
    let single = objects(&install(&[]));
    assert!(!single.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    let ha = objects(&install(&["--ha"]));
    let controller = find(&ha, "Deployment", "conduit-controller");
    assert_eq!(controller["spec"]["replicas"], 3);
    let term = &controller["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        controller["spec"]["selector"]["matchLabels"]
    );
    let pdb = find(&ha, "PodDisruptionBudget", "conduit-controller");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["selector"], controller["spec"]["selector"]);
}

/// A pair of stores on different nodes, each named to the controller by
/// its own DNS name (a query one cannot answer goes to the other), and to
/// proxies injected with `--ha` the same way (each gets every report).
#[test]
fn ha_runs_a_pair_of_stores_that_controller_and_proxies_both_name() {
    let single = objects(&install(&[]));
    let store = find(&single, "StatefulSet", "conduit-telemetry-store");
    assert_eq!(store["spec"]["replicas"], 1);
    let ha = objects(&install(&["--ha", "-n", "mesh"]));
    let store = find(&ha, "StatefulSet", "conduit-telemetry-store");
    assert_eq!(store["spec"]["replicas"], 2);
    let term = &store["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    let pdb = find(&ha, "PodDisruptionBudget", "conduit-telemetry-store");
    assert_eq!(pdb["spec"]["selector"], store["spec"]["selector"]);
    // The replicas' names come from the StatefulSet and its headless Service.
    let headless = store["spec"]["serviceName"].as_str().unwrap();
    assert!(find(&ha, "Service", headless)["spec"]["clusterIP"] == "None");
    let pair: Vec<String> = (0..2)
        .map(|i| {
            format!("https://conduit-telemetry-store-{i}.{headless}.mesh.svc.cluster.local:9096")
        })
        .collect();
    let controller = find(&ha, "Deployment", "conduit-controller");
    let args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(
        args.contains(&Value::from(format!("--store-addr={}", pair.join(",")))),
        "{args:?}"
    );

    let anchors = fixture("identity/ca.crt").display().to_string();
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: app}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web}]}\n";
    let telemetry_addr = |extra: &[&str]| {
        let args = [
            &["inject", "-", "--control-plane-namespace", "mesh"][..],
            &["--identity-trust-anchors-file", &anchors],
            extra,
        ]
        .concat();
        let (out, _) = conduit_ok(&args, deployment);
        let injected = objects(&out);
        // The proxy runs as a native sidecar (an init container that stays).
        let pod = &injected[0]["spec"]["template"]["spec"];
        ["initContainers", "containers"]
            .iter()
            .flat_map(|k| pod[k].as_array().cloned().unwrap_or_default())
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
            .find(|e| e["name"] == "CONDUIT_PROXY_TELEMETRY_ADDR")
            .map(|e| e["value"].as_str().unwrap().to_string())
            .expect("the proxy's telemetry address")
    };
    assert_eq!(telemetry_addr(&["--ha"]), pair.join(","));
    assert_eq!(
        telemetry_addr(&[]),
        "https://conduit-telemetry-store.mesh.svc.cluster.local:9096"
    );
}

#[test]
fn json_output_holds_the_same_objects() {
    let yaml = objects(&install_with_identity(&[]));
    let json: Value = serde_json::from_str(&install_with_identity(&["-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap(), &yaml);
}

#[test]
fn given_identity_files_are_installed_verbatim() {
    let objects = objects(&install_with_identity(&[]));
    let read = |n: &str| std::fs::read_to_string(fixture(&format!("identity/{n}"))).unwrap();
    let issuer = find(&objects, "Secret", "conduit-identity-issuer");
    assert_eq!(issuer["type"], "kubernetes.io/tls");
    assert_eq!(issuer["stringData"]["tls.crt"], read("issuer.crt"));
    assert_eq!(issuer["stringData"]["tls.key"], read("issuer.key"));
    assert_eq!(issuer["stringData"]["ca.crt"], read("ca.crt"));
    let anchors = find(&objects, "Secret", "conduit-identity-trust-anchors");
    assert_eq!(anchors["stringData"]["ca.crt"], read("ca.crt"));
}

/// The generated issuer really is signed by the generated anchor, as a
/// real X.509 implementation (OpenSSL) sees it; each install makes new
/// ones.
#[test]
fn generated_identity_chains_to_its_trust_anchor() {
    let dir = manifests::scratch("install-identity");
    let mut anchors = Vec::new();
    for run in 0..2 {
        let objects = objects(&install(&[]));
        let issuer = find(&objects, "Secret", "conduit-identity-issuer");
        let ca = dir.join(format!("ca-{run}.crt"));
        let crt = dir.join(format!("issuer-{run}.crt"));
        std::fs::write(&ca, issuer["stringData"]["ca.crt"].as_str().unwrap()).unwrap();
        std::fs::write(&crt, issuer["stringData"]["tls.crt"].as_str().unwrap()).unwrap();
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca)
            .arg(&crt)
            .output()
            .expect("openssl is needed (Debian package `openssl`)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anchors.push(issuer["stringData"]["ca.crt"].clone());
    }
    assert_ne!(anchors[0], anchors[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_identity_files_are_refused_before_printing_anything() {
    let mut args: Vec<String> = vec!["install".into()];
    args.extend(identity_args());
    // The trust anchor in the key's place.
    let last = args.len() - 1;
    args[last] = fixture("identity/ca.crt").display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = conduit(&args, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("issuer key: expected -----BEGIN PRIVATE KEY-----, found CERTIFICATE"),
        "{stderr}"
    );

    let anchors_only = ["install", "--identity-trust-anchors-file", args[2]];
    let out = conduit(&anchors_only, "");
    assert_eq!(out.status.code(), Some(2), "clap requires all three files");
}

#[test]
fn bad_flags_are_usage_errors() {
    for (args, expected) in [
        (
            &["install", "--namespace", "Conduit"][..],
            "not a valid namespace name",
        ),
        (
            &["install", "--store-volume-size", "lots"][..],
            "not a storage size",
        ),
        (
            &["install", "--cluster-domain", "Corp_Internal"][..],
            "not a DNS domain",
        ),
        (
            &["install", "--default-inbound-policy", "allow"][..],
            "unknown default inbound policy \"allow\"",
        ),
        (
            &["install", "--metrics-backend", "influx:http://x"][..],
            "unknown metrics backend",
        ),
        (
            &["install", "--metrics-backend", "prometheus:https://x"][..],
            "TLS-terminating",
        ),
        (
            &["install", "--remote-write-url", "prometheus:9090"][..],
            "not an http:// URL",
        ),
        (
            &[
                "install",
                "--remote-write-url",
                "http://prometheus:9090/api/v1/write",
                "--remote-write-external-label",
                "replica",
            ][..],
            "\"replica\": expected NAME=VALUE",
        ),
        (
            &[
                "install",
                "--remote-write-url",
                "http://prometheus:9090/api/v1/write",
                "--remote-write-external-label",
                "1replica=x",
            ][..],
            "\"1replica\" is not a valid label name",
        ),
        (
            &["install", "--remote-write-external-label", "cluster=eu-1"][..],
            "--remote-write-url <URL>",
        ),
    ] {
        let out = conduit(args, "");
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn uninstall_names_everything_install_creates() {
    let installed = objects(&install(&["--ha", "-n", "mesh"]));
    let (out, _) = conduit_ok(&["uninstall", "-n", "mesh"], "");
    let removed = objects(&out);
    let key = |o: &Value| {
        format!(
            "{} {} {}",
            o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]
        )
    };
    let mut a: Vec<String> = installed.iter().map(key).collect();
    let mut b: Vec<String> = removed.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(removed.last().unwrap()["kind"], "Namespace");
    assert!(
        removed
            .iter()
            .all(|o| o.get("spec").is_none() && o.get("stringData").is_none())
    );
}

fn definitions(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .cloned()
        .collect()
}

/// The policy example operators start from passes the definitions install
/// registers (and `api/controller`'s mock API server test compiles it).
#[test]
fn the_policy_example_passes_the_custom_resource_definitions() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/policy.yaml"),
    )
    .unwrap();
    let crds = definitions(&objects(&install(&[])));
    let checked = validate_custom_resources("policy-example", &crds, &example);
    let mut kinds: Vec<&str> = checked
        .iter()
        .map(|(object, _)| object.split('/').next().unwrap())
        .collect();
    kinds.dedup();
    let defined: Vec<&str> = crds
        .iter()
        .map(|c| c["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    for kind in &defined {
        assert!(kinds.contains(kind), "the example has no {kind}");
    }
    for (object, errors) in &checked {
        assert!(errors.is_empty(), "{object}: {errors:?}");
    }
}

/// What no API server is here to refuse, the definitions' schemas refuse:
/// each malformed resource below fails with the complaint given.
#[test]
fn the_custom_resource_definitions_refuse_malformed_resources() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "Server",
            "{podSelector: {}}",
            "'port' is a required property",
        ),
        (
            "Server",
            "{port: 80}",
            "'podSelector' is a required property",
        ),
        (
            "Server",
            "{podSelector: {}, port: 80, proxyProtocol: HTTP/3}",
            "spec/proxyProtocol: 'HTTP/3' is not one of",
        ),
        (
            "Server",
            "{podSelector: {}, port: 0}",
            "spec/port: 0 is less than the minimum of 1",
        ),
        (
            "Server",
            "{podSelector: {}, port: 70000}",
            "spec/port: 70000 is greater than the maximum of 65535",
        ),
        (
            "Server",
            "{podSelector: {}, port: Http_Port}",
            "spec/port: 'Http_Port' does not match",
        ),
        (
            "Server",
            "{podSelector: {matchExpressions: [{key: app, operator: Equals}]}, port: 80}",
            "operator: 'Equals' is not one of",
        ),
        (
            "HTTPRoute",
            "{parentRefs: [{kind: Service, name: web}]}",
            "kind: 'Service' is not one of ['Server']",
        ),
        (
            "HTTPRoute",
            "{parentRefs: [{kind: Server, name: a}, {kind: Server, name: b}]}",
            "spec/parentRefs: [",
        ),
        (
            "HTTPRoute",
            "{parentRefs: [{kind: Server, name: a}], rules: [{matches: [{headers: [{type: RegularExpression, name: x, value: y}]}]}]}",
            "type: 'RegularExpression' is not one of ['Exact']",
        ),
        (
            "HTTPRoute",
            "{parentRefs: [{kind: Server, name: a}], rules: [{matches: [{method: FETCH}]}]}",
            "method: 'FETCH' is not one of",
        ),
        (
            "AuthorizationPolicy",
            "{targetRef: {kind: Pod, name: web}, requiredAuthenticationRefs: []}",
            "targetRef/kind: 'Pod' is not one of",
        ),
        (
            "AuthorizationPolicy",
            "{targetRef: {kind: Server, name: web}}",
            "'requiredAuthenticationRefs' is a required property",
        ),
        (
            "AuthorizationPolicy",
            "{targetRef: {kind: Server, name: web}, requiredAuthenticationRefs: [{kind: ServiceAccount, name: web}]}",
            "kind: 'ServiceAccount' is not one of",
        ),
        (
            "MeshTLSAuthentication",
            "{}",
            "is not valid under any of the given schemas",
        ),
        (
            "MeshTLSAuthentication",
            "{identities: [Web.Demo]}",
            "identities/0: 'Web.Demo' does not match",
        ),
        (
            "MeshTLSAuthentication",
            "{identities: ['*demo']}",
            "'*demo' does not match",
        ),
        (
            "NetworkAuthentication",
            "{networks: []}",
            "spec/networks: [] should be non-empty",
        ),
        (
            "NetworkAuthentication",
            "{networks: [{except: [10.0.0.0/8]}]}",
            "'cidr' is a required property",
        ),
    ];
    let stream: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (kind, spec, _))| {
            format!(
                "apiVersion: policy.conduit.io/v1\nkind: {kind}\nmetadata: {{name: case-{i}, namespace: demo}}\nspec: {spec}\n"
            )
        })
        .collect();
    let crds = definitions(&objects(&install(&[])));
    let checked = validate_custom_resources("policy-malformed", &crds, &stream.join("---\n"));
    assert_eq!(checked.len(), cases.len());
    for ((kind, spec, expected), (_, errors)) in cases.iter().zip(&checked) {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{kind} {spec}: expected {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn the_controller_may_watch_every_policy_kind_and_namespaces() {
    let objects = objects(&install(&[]));
    let role = find(&objects, "ClusterRole", "conduit-conduit-controller");
    let rules = role["rules"].as_array().unwrap();
    let may_watch = |group: &str, resource: &str| {
        rules.iter().any(|r| {
            let has = |key: &str, v: &str| r[key].as_array().unwrap().iter().any(|x| x == v);
            has("apiGroups", group)
                && has("resources", resource)
                && ["get", "list", "watch"].iter().all(|v| has("verbs", v))
        })
    };
    for crd in definitions(&objects) {
        let group = crd["spec"]["group"].as_str().unwrap();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
        assert!(may_watch(group, plural), "{plural}.{group}");
    }
    assert!(may_watch("", "namespaces"));
    assert!(!rules.iter().any(|r| {
        r["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "update" || v == "patch" || v == "delete")
    }));
}

/// Tap is authorized by RBAC: the controller may review a caller's token
/// and ask whether it may tap; the right itself is a ClusterRole nobody is
/// bound to until an operator binds it.
#[test]
fn tapping_is_an_rbac_verb_the_controller_checks_and_nobody_has_by_default() {
    let objects = objects(&install(&[]));
    let role = find(&objects, "ClusterRole", "conduit-conduit-controller");
    let may_create = |group: &str, resource: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            let has = |key: &str, v: &str| r[key].as_array().unwrap().iter().any(|x| x == v);
            has("apiGroups", group) && has("resources", resource) && has("verbs", "create")
        })
    };
    assert!(may_create("authentication.k8s.io", "tokenreviews"));
    assert!(may_create("authorization.k8s.io", "subjectaccessreviews"));
    let tap = find(&objects, "ClusterRole", "conduit-conduit-tap");
    assert_eq!(
        tap["rules"],
        serde_json::json!([{"apiGroups": ["tap.conduit.io"], "resources": ["deployments"], "verbs": ["tap"]}])
    );
    let bound = objects.iter().any(|o| {
        o["kind"].as_str().is_some_and(|k| k.ends_with("Binding"))
            && o["roleRef"]["name"] == "conduit-conduit-tap"
    });
    assert!(!bound, "nobody may tap until an operator says so");
}

/// The NetworkPolicies fence each control plane component in, and let
/// through exactly the pods that carry the label `conduit inject` gives
/// meshed pods (of this control plane), and the control plane's own.
#[test]
fn network_policies_admit_meshed_pods_and_the_control_plane_only() {
    let objects = objects(&install(&["-n", "mesh"]));
    let web = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n\
               spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
               spec: {containers: [{name: web, image: web}]}\n";
    let (injected, _) = conduit_ok(&["inject", "--control-plane-namespace", "mesh", "-"], web);
    let (elsewhere, _) = conduit_ok(&["inject", "-"], web);
    let labels_of = |o: &Value| o["spec"]["template"]["metadata"]["labels"].clone();
    let meshed = labels_of(&manifests::objects(&injected)[0]);
    let other_mesh = labels_of(&manifests::objects(&elsewhere)[0]);
    let unmeshed = serde_json::json!({"app": "web"});
    let selects = |selector: &Value, labels: &Value| {
        selector["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    let workloads = pod_specs(&objects);
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), workloads.len(), "one per component");
    for policy in policies {
        let spec = &policy["spec"];
        assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
        let fenced: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
            .filter(|o| selects(&spec["podSelector"], &labels_of(o)))
            .collect();
        assert_eq!(fenced.len(), 1, "{}", policy["metadata"]["name"]);
        let [rule] = spec["ingress"].as_array().unwrap().as_slice() else {
            panic!("one ingress rule: {spec}");
        };
        let [peer] = rule["from"].as_array().unwrap().as_slice() else {
            panic!("one peer: {rule}");
        };
        assert_eq!(
            peer["namespaceSelector"],
            serde_json::json!({}),
            "any namespace"
        );
        let from = &peer["podSelector"];
        assert!(selects(from, &meshed), "meshed pods get through: {from}");
        assert!(
            !selects(from, &other_mesh),
            "another control plane's pods do not"
        );
        assert!(!selects(from, &unmeshed), "unmeshed pods do not");
        for o in objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        {
            assert!(
                selects(from, &labels_of(o)),
                "the control plane gets through"
            );
        }
        // Every port of the fenced pods is named in the rule.
        let open: Vec<&Value> = rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["port"])
            .collect();
        for container in fenced[0]["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            for port in container["ports"].as_array().unwrap() {
                assert!(
                    open.contains(&&port["name"]),
                    "{} not admitted",
                    port["name"]
                );
            }
        }
    }
}

#[test]
fn the_default_inbound_policy_reaches_the_controller() {
    let objects = objects(&install(&[
        "--default-inbound-policy",
        "cluster-authenticated",
    ]));
    let controller = find(&objects, "Deployment", "conduit-controller");
    let args = &controller["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().unwrap().contains(&Value::from(
            "--default-inbound-policy=cluster-authenticated"
        )),
        "{args}"
    );
    let config = find(&objects, "ConfigMap", "conduit-config");
    assert_eq!(
        config["data"]["defaultInboundPolicy"],
        "cluster-authenticated"
    );
}

fn container_args(objects: &[Value], kind: &str, name: &str) -> Vec<String> {
    find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Under `--ha` too: both stores of the pair forward (one StatefulSet
/// template), and each can tell itself apart with its pod name.
#[test]
fn an_external_metrics_backend_reaches_the_controller_and_remote_write_the_store() {
    let flags = [
        "--ha",
        "--metrics-backend",
        "prometheus:http://prometheus.monitoring:9090/",
        "--remote-write-url",
        "http://prometheus.monitoring:9090/api/v1/write",
        "--remote-write-external-label",
        "replica=$(POD_NAME),cluster=eu-1",
    ];
    let yaml = install(&flags);
    let installed = objects(&yaml);
    let store = find(&installed, "StatefulSet", "conduit-telemetry-store");
    assert_eq!(store["spec"]["replicas"], 2);
    let container = &store["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        "$(POD_NAME) in the args needs the variable: {container}"
    );
    let controller = container_args(&installed, "Deployment", "conduit-controller");
    assert!(
        controller
            .contains(&"--metrics-backend=prometheus:http://prometheus.monitoring:9090".into()),
        "{controller:?}"
    );
    let store = container_args(&installed, "StatefulSet", "conduit-telemetry-store");
    assert!(
        store.contains(&"--remote-write-url=http://prometheus.monitoring:9090/api/v1/write".into()),
        "{store:?}"
    );
    for label in ["replica=$(POD_NAME)", "cluster=eu-1"] {
        assert!(
            store.contains(&format!("--remote-write-external-label={label}")),
            "{store:?}"
        );
    }
    if let Err(e) = kubernetes_validate("metrics-backend", &[("install.yaml", &yaml)]) {
        panic!("install with an external metrics backend is not valid Kubernetes:\n{e}");
    }
    // The default: the store is the backend, nothing is forwarded.
    let plain = objects(&install(&[]));
    let controller = container_args(&plain, "Deployment", "conduit-controller");
    let store = container_args(&plain, "StatefulSet", "conduit-telemetry-store");
    assert!(
        !controller
            .iter()
            .any(|a| a.starts_with("--metrics-backend")),
        "{controller:?}"
    );
    assert!(
        !store.iter().any(|a| a.starts_with("--remote-write")),
        "{store:?}"
    );
    let store = find(&plain, "StatefulSet", "conduit-telemetry-store");
    assert!(store["spec"]["template"]["spec"]["containers"][0]["env"].is_null());
}

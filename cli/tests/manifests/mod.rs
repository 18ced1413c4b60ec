//! Running `conduit` on manifests, and checking manifests with the real
//! `kubernetes-validate` (PyPI), for the install and inject tests.

#![allow(dead_code)] // each test binary uses part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Kubernetes version manifests are validated against: recent, and at
/// least 1.29 (native sidecars).
pub(crate) const KUBERNETES_VERSION: &str = "1.37.0";

/// Runs `conduit ARGS` with `stdin` as its standard input.
pub(crate) fn conduit(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run conduit");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write conduit's stdin");
    child.wait_with_output().expect("wait for conduit")
}

/// Runs `conduit ARGS` and returns its stdout, failing on a non-zero exit.
pub(crate) fn conduit_ok(args: &[&str], stdin: &str) -> (String, String) {
    let out = conduit(args, stdin);
    assert!(
        out.status.success(),
        "conduit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `target/` (or `$CARGO_TARGET_DIR`): two levels above the binary.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_conduit"));
    bin.ancestors().nth(2).expect("target dir").to_path_buf()
}

/// A scratch directory under the target dir, unique to this test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = target_dir()
        .join("test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn validator() -> PathBuf {
    let path = std::env::var_os("CONDUIT_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("venv/bin/kubernetes-validate"));
    assert!(
        path.exists(),
        "kubernetes-validate not found at {}. `cargo xtask test` installs it; by hand: \
         `python3 -m venv {venv} && {venv}/bin/pip install kubernetes-validate==1.37.0` \
         (or point CONDUIT_KUBERNETES_VALIDATE at an installed one)",
        path.display(),
        venv = target_dir().join("venv").display(),
    );
    path
}

/// Validates every document of each manifest text in strict mode (unknown
/// fields are errors) against [`KUBERNETES_VERSION`].
pub(crate) fn kubernetes_validate(name: &str, manifests: &[(&str, &str)]) -> Result<(), String> {
    let dir = scratch(name);
    let files: Vec<PathBuf> = manifests
        .iter()
        .map(|(file, text)| {
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let out = Command::new(validator())
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Checks custom resources against the OpenAPI schemas of their
/// CustomResourceDefinitions, as an API server would (none runs here),
/// with the `jsonschema` package kubernetes-validate itself runs on.
/// Returns each document of `resources` as `Kind/name` with the schema's
/// complaints, empty when it is valid.
pub(crate) fn validate_custom_resources(
    name: &str,
    definitions: &[serde_json::Value],
    resources: &str,
) -> Vec<(String, Vec<String>)> {
    const SCRIPT: &str = r#"
import json, sys, yaml, jsonschema
schemas = {}
for crd in json.load(open(sys.argv[1])):
    for v in crd["spec"]["versions"]:
        key = (crd["spec"]["group"] + "/" + v["name"], crd["spec"]["names"]["kind"])
        schemas[key] = v["schema"]["openAPIV3Schema"]
out = []
for doc in yaml.safe_load_all(open(sys.argv[2])):
    if not doc:
        continue
    schema = schemas[(doc["apiVersion"], doc["kind"])]
    errors = jsonschema.Draft4Validator(schema).iter_errors(doc)
    messages = sorted("/".join(map(str, e.absolute_path)) + ": " + e.message for e in errors)
    out.append([doc["kind"] + "/" + doc["metadata"]["name"], messages])
print(json.dumps(out))
"#;
    let dir = scratch(name);
    let crds = dir.join("crds.json");
    let docs = dir.join("resources.yaml");
    std::fs::write(&crds, serde_json::to_vec(definitions).unwrap()).unwrap();
    std::fs::write(&docs, resources).unwrap();
    // The validator's own interpreter, next to it in its virtualenv.
    let python = validator().with_file_name("python3");
    let out = Command::new(&python)
        .args(["-c", SCRIPT])
        .args([&crds, &docs])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "schema check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Parses a manifest stream the way inject does, into JSON values, for
/// comparisons that ignore formatting and key order.
pub(crate) fn objects(yaml: &str) -> Vec<serde_json::Value> {
    let docs = conduit_deploy::stream::read("test", yaml).unwrap_or_else(|e| panic!("{e}"));
    docs.iter()
        .map(|d| serde_json::to_value(&d.value).unwrap())
        .collect()
}

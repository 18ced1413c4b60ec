//! `conduit inject`: adds the Conduit proxy to every workload of a manifest
//! stream, for `kubectl apply`.
//!
//! The rules:
//! - Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
//!   CronJob, ReplicationController, Pod) get, in their pod template: the
//!   `conduit-init` init container (iptables) and the `conduit-proxy`
//!   native sidecar, first among the init containers and in that order; the
//!   `conduit-init-xtables-lock` volume; the annotations
//!   `conduit.io/inject: enabled` and `conduit.io/proxy-version`; the label
//!   `conduit.io/control-plane-ns`, which lets the pods through the control
//!   plane's NetworkPolicies.
//! - A workload annotated `conduit.io/inject: disabled` (on itself or its
//!   pod template) or running on the host's network is skipped.
//! - Every other object passes through unchanged.
//! - An already injected workload is uninjected first, so injecting twice
//!   equals injecting once and re-injecting upgrades the proxy.

use crate::kinds::{Class, classify};
use crate::sidecar::{
    CONTROL_PLANE_NS_LABEL, INJECT_ANNOTATION, PROXY_VERSION_ANNOTATION, Sidecar, init_container,
    proxy_container, xtables_volume,
};
use crate::stream::{Document, ManifestError};
use crate::template::pod_template;
use crate::value::{Map, Value};
use crate::workload::{Outcome, Report, each_object, is_injected, remove_proxy, spec_of};

/// What inject puts into pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectOptions {
    /// The containers it adds.
    pub sidecar: Sidecar,
    /// Written to the `conduit.io/proxy-version` annotation.
    pub proxy_version: String,
    /// What proxies apply before the policy service first answers them
    /// (the cluster's default); a workload's
    /// `config.conduit.io/default-inbound-policy` annotation wins.
    pub default_inbound_policy: Option<conduit_api::policy::DefaultPolicy>,
}

impl InjectOptions {
    /// The images and version of this release, control plane in `namespace`.
    pub fn new(control_plane_namespace: &str) -> Self {
        Self {
            sidecar: Sidecar::new(control_plane_namespace),
            proxy_version: conduit_api::VERSION.to_string(),
            default_inbound_policy: None,
        }
    }
}

/// Injects every workload of `documents` in place. On error nothing is
/// reported as done: the caller prints nothing of a stream that failed.
pub fn inject_documents(
    documents: &mut [Document],
    options: &InjectOptions,
) -> Result<Vec<Report>, ManifestError> {
    each_object(documents, |object| inject(object, options))
}

/// Injects one object.
pub fn inject(object: &mut Value, options: &InjectOptions) -> Result<Outcome, String> {
    let Class::Workload(workload) = classify(object)? else {
        return Ok(Outcome::Skipped(None));
    };
    let deployment = deployment_of(object, workload.kind);
    let disabled_on_object = is_disabled(object.get_path(&["metadata"]));
    let template = pod_template(object, workload)?;
    if disabled_on_object || is_disabled(template.get("metadata")) {
        return Ok(Outcome::Skipped(Some(format!(
            "annotated {INJECT_ANNOTATION}: disabled"
        ))));
    }
    let spec = spec_of(template);
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::Skipped(Some(
            "uses the host's network (hostNetwork: true)".to_string(),
        )));
    }

    if is_injected(template) {
        remove_proxy(template);
    }

    let metadata = template
        .map_entry_before("metadata", "spec")
        .ok_or("the pod template's metadata must be a map")?;
    metadata
        .map_entry("labels")
        .ok_or("the pod template's labels must be a map")?
        .insert(
            CONTROL_PLANE_NS_LABEL,
            options.sidecar.control_plane_namespace.as_str(),
        );
    let annotations = metadata
        .map_entry("annotations")
        .ok_or("the pod template's annotations must be a map")?;
    annotations.insert(INJECT_ANNOTATION, "enabled");
    annotations.insert(PROXY_VERSION_ANNOTATION, options.proxy_version.as_str());

    let default_policy = workload_default_policy(template)?.or(options.default_inbound_policy);
    let spec = spec_of(template);
    let init = vec![
        init_container(&options.sidecar),
        proxy_container(&options.sidecar, deployment.as_deref(), default_policy),
    ];
    match spec.get_mut("initContainers").and_then(Value::as_seq_mut) {
        Some(existing) => {
            existing.splice(0..0, init);
        }
        None => spec.insert_before("containers", "initContainers", Value::Seq(init)),
    }
    let mut volumes = vec![xtables_volume()];
    if options.sidecar.trust_anchors_pem.is_some() {
        volumes.push(crate::identity::token_volume());
    }
    match spec.get_mut("volumes").and_then(Value::as_seq_mut) {
        Some(existing) => existing.extend(volumes),
        None => spec.insert("volumes", Value::Seq(volumes)),
    }
    Ok(Outcome::Injected)
}

/// The default policy the pod template's annotation names, refused when
/// it names none (the controller would refuse it too).
fn workload_default_policy(
    template: &Map,
) -> Result<Option<conduit_api::policy::DefaultPolicy>, String> {
    use conduit_api::policy::DEFAULT_POLICY_ANNOTATION;
    let Some(value) = template
        .get("metadata")
        .and_then(|m| m.str_at(&["annotations", DEFAULT_POLICY_ANNOTATION]))
    else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|e| format!("annotation {DEFAULT_POLICY_ANNOTATION}: {e}"))
}

fn is_disabled(metadata: Option<&Value>) -> bool {
    metadata
        .and_then(|m| m.str_at(&["annotations", INJECT_ANNOTATION]))
        .is_some_and(|v| v == "disabled")
}

/// The Deployment a workload's pods belong to: metrics are per Deployment,
/// so the proxy labels its series with it. Known for Deployments, for
/// ReplicaSets a Deployment owns, and for Pods of such a ReplicaSet (as
/// `kubectl get -o yaml` prints them); other workloads have none.
fn deployment_of(object: &Value, kind: &str) -> Option<String> {
    match kind {
        "Deployment" => object.str_at(&["metadata", "name"]).map(str::to_string),
        "ReplicaSet" => owner(object, "Deployment").map(str::to_string),
        "Pod" => {
            let replica_set = owner(object, "ReplicaSet")?;
            let hash = object.str_at(&["metadata", "labels", "pod-template-hash"])?;
            replica_set
                .strip_suffix(hash)?
                .strip_suffix('-')
                .map(str::to_string)
        }
        _ => None,
    }
}

fn owner<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .get_path(&["metadata", "ownerReferences"])?
        .as_seq()?
        .iter()
        .find(|o| o.str_at(&["kind"]) == Some(kind))?
        .str_at(&["name"])
}

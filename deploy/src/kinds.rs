//! Which Kubernetes objects run pods, and where their pod template is.
//!
//! Inject passes objects it does not know through untouched (custom
//! resources, Services, ConfigMaps), but a typo in a built-in workload kind
//! (`kind: Deploymnet`) or an API version Kubernetes stopped serving would
//! silently leave a workload unmeshed, so for the built-in groups that hold
//! workloads the kind must be one that group really serves.

use crate::value::Value;

/// An object kind that runs pods.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) kind: &'static str,
    /// Path of the pod template (the map holding `metadata` and `spec`);
    /// empty for a Pod, which is its own template.
    pub(crate) template: &'static [&'static str],
}

const TEMPLATE: &[&str] = &["spec", "template"];

const POD: Workload = Workload {
    kind: "Pod",
    template: &[],
};

/// Built-in API groups whose every kind is known, with their workloads.
const GROUPS: &[(&str, &[&str], &[Workload])] = &[
    (
        "v1",
        &[
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "PodTemplate",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
        &[
            POD,
            Workload {
                kind: "ReplicationController",
                template: TEMPLATE,
            },
        ],
    ),
    (
        "apps/v1",
        &["ControllerRevision"],
        &[
            Workload {
                kind: "Deployment",
                template: TEMPLATE,
            },
            Workload {
                kind: "StatefulSet",
                template: TEMPLATE,
            },
            Workload {
                kind: "DaemonSet",
                template: TEMPLATE,
            },
            Workload {
                kind: "ReplicaSet",
                template: TEMPLATE,
            },
        ],
    ),
    (
        "batch/v1",
        &[],
        &[
            Workload {
                kind: "Job",
                template: TEMPLATE,
            },
            Workload {
                kind: "CronJob",
                template: &["spec", "jobTemplate", "spec", "template"],
            },
        ],
    ),
];

/// API versions Kubernetes no longer serves, and what replaced them.
const REMOVED: &[(&str, &str)] = &[
    ("extensions/v1beta1", "apps/v1"),
    ("apps/v1beta1", "apps/v1"),
    ("apps/v1beta2", "apps/v1"),
    ("batch/v1beta1", "batch/v1"),
    ("batch/v2alpha1", "batch/v1"),
];

/// What inject does with an object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Workload(&'static Workload),
    /// Passed through unchanged.
    Other,
}

/// Sorts an object into workload or other; errors for what is not a
/// Kubernetes object or names a kind its API group does not serve.
pub(crate) fn classify(object: &Value) -> Result<Class, String> {
    let Some(map) = object.as_map() else {
        return Err(format!(
            "expected a Kubernetes object (a map with apiVersion and kind), found {}",
            object.type_name()
        ));
    };
    let field = |name: &str| match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        Some(other) => Err(format!(
            "{name} must be a non-empty string, found {}",
            other.type_name()
        )),
        None => Err(format!("not a Kubernetes object: it has no {name}")),
    };
    let kind = field("kind")?;
    let api_version = field("apiVersion")?;

    if let Some((_, replacement)) = REMOVED.iter().find(|(removed, _)| *removed == api_version) {
        let served = GROUPS
            .iter()
            .find(|(version, ..)| version == replacement)
            .is_some_and(|(_, others, workloads)| {
                others.contains(&kind) || workloads.iter().any(|w| w.kind == kind)
            });
        let advice = if served {
            format!("use apiVersion: {replacement}")
        } else {
            "see the Kubernetes deprecated API migration guide".to_string()
        };
        return Err(format!(
            "{kind} in {api_version} is no longer served by Kubernetes: {advice}"
        ));
    }

    let Some((_, others, workloads)) = GROUPS.iter().find(|(version, ..)| *version == api_version)
    else {
        return Ok(Class::Other);
    };
    if let Some(workload) = workloads.iter().find(|w| w.kind == kind) {
        return Ok(Class::Workload(workload));
    }
    if others.contains(&kind) || kind.ends_with("List") {
        return Ok(Class::Other);
    }
    let known: Vec<&str> = workloads
        .iter()
        .map(|w| w.kind)
        .chain(others.iter().copied())
        .collect();
    let hint = known
        .iter()
        .find(|k| close(k, kind))
        .map(|k| format!("; did you mean {k}?"))
        .unwrap_or_default();
    Err(format!(
        "unknown kind {kind:?} in {api_version}{hint} ({api_version} serves {})",
        sorted(known).join(", ")
    ))
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// A likely typo: same letters ignoring case, or at most two edits apart.
fn close(known: &str, typed: &str) -> bool {
    known.eq_ignore_ascii_case(typed) || edit_distance(known, typed) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::map;

    fn object(api_version: &str, kind: &str) -> Value {
        map([("apiVersion", api_version.into()), ("kind", kind.into())])
    }

    #[test]
    fn workloads_are_found_with_their_template() {
        let Class::Workload(w) = classify(&object("apps/v1", "Deployment")).unwrap() else {
            panic!("a Deployment is a workload")
        };
        assert_eq!(w.template, ["spec", "template"]);
        let Class::Workload(w) = classify(&object("batch/v1", "CronJob")).unwrap() else {
            panic!("a CronJob is a workload")
        };
        assert_eq!(w.template, ["spec", "jobTemplate", "spec", "template"]);
        assert_eq!(
            classify(&object("v1", "Pod")).unwrap(),
            Class::Workload(&POD)
        );
    }

    #[test]
    fn other_objects_pass() {
        for (v, k) in [
            ("v1", "Service"),
            ("v1", "List"),
            ("apps/v1", "DeploymentList"),
            ("cert-manager.io/v1", "Certificate"),
            ("networking.k8s.io/v1", "Ingress"),
        ] {
            assert_eq!(classify(&object(v, k)), Ok(Class::Other), "{v} {k}");
        }
    }

    #[test]
    fn typos_in_built_in_kinds_are_errors_with_a_hint() {
        let err = classify(&object("apps/v1", "Deploymnet")).unwrap_err();
        assert!(
            err.contains("unknown kind \"Deploymnet\" in apps/v1"),
            "{err}"
        );
        assert!(err.contains("did you mean Deployment?"), "{err}");
        let err = classify(&object("v1", "service")).unwrap_err();
        assert!(err.contains("did you mean Service?"), "{err}");
    }

    #[test]
    fn removed_api_versions_say_what_replaced_them() {
        let err = classify(&object("extensions/v1beta1", "Deployment")).unwrap_err();
        assert_eq!(
            err,
            "Deployment in extensions/v1beta1 is no longer served by Kubernetes: use apiVersion: apps/v1"
        );
    }

    #[test]
    fn objects_without_kind_or_api_version_are_errors() {
        let err = classify(&map([("kind", "Service".into())])).unwrap_err();
        assert_eq!(err, "not a Kubernetes object: it has no apiVersion");
        let err = classify(&Value::from("text")).unwrap_err();
        assert!(err.contains("found a string"), "{err}");
    }
}

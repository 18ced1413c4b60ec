//! `conduit uninject`: removes exactly what inject added.
//!
//! A workload counts as injected when its pod template has the
//! `conduit.io/proxy-version` annotation or a `conduit-proxy` container.
//! Uninject removes the `conduit-init` and `conduit-proxy` containers, the
//! `conduit-init-xtables-lock` volume, the annotations
//! `conduit.io/proxy-version` and `conduit.io/inject: enabled`, and the
//! label `conduit.io/control-plane-ns`; lists and maps that end up empty
//! are removed, since inject created them. So `uninject(inject(x)) == x`
//! for every `x`, except that an `x` which already said
//! `conduit.io/inject: enabled` (or carried that label) comes back without
//! it: after uninject the workload is no longer meshed and must not claim
//! to be.

use crate::kinds::{Class, classify};
use crate::sidecar::{CONTROL_PLANE_NS_LABEL, INJECT_ANNOTATION, PROXY_VERSION_ANNOTATION};
use crate::stream::{Document, ManifestError};
use crate::template::pod_template;
use crate::value::{Map, Value};
use crate::workload::{Outcome, Report, each_object, is_injected, remove_proxy};

/// Uninjects every workload of `documents` in place.
pub fn uninject_documents(documents: &mut [Document]) -> Result<Vec<Report>, ManifestError> {
    each_object(documents, uninject)
}

/// Uninjects one object.
pub fn uninject(object: &mut Value) -> Result<Outcome, String> {
    let Class::Workload(workload) = classify(object)? else {
        return Ok(Outcome::Skipped(None));
    };
    let template = pod_template(object, workload)?;
    if strip(template) {
        Ok(Outcome::Uninjected)
    } else {
        Ok(Outcome::Skipped(Some("not injected".to_string())))
    }
}

/// Removes inject's additions from a checked pod template; returns whether
/// it was injected.
fn strip(template: &mut Map) -> bool {
    if !is_injected(template) {
        return false;
    }
    remove_proxy(template);
    strip_metadata(template);
    true
}

fn strip_metadata(template: &mut Map) {
    let Some(metadata) = template.get_mut("metadata").and_then(Value::as_map_mut) else {
        return;
    };
    if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_map_mut) {
        labels.remove(CONTROL_PLANE_NS_LABEL);
        if labels.is_empty() {
            metadata.remove("labels");
        }
    }
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_map_mut) {
        annotations.remove(PROXY_VERSION_ANNOTATION);
        if annotations.get(INJECT_ANNOTATION).and_then(Value::as_str) == Some("enabled") {
            annotations.remove(INJECT_ANNOTATION);
        }
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    if metadata.is_empty() {
        template.remove("metadata");
    }
}

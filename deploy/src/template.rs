//! A workload's pod template, checked before inject or uninject touch it.
//!
//! Kubernetes would reject a workload without containers anyway, but only
//! at `kubectl apply` time and far from the file; checking here lets the
//! error name the document and line, and lets inject assume the shapes it
//! edits.

use crate::kinds::Workload;
use crate::value::{Map, Value};

/// The pod template of `object` (the map holding `metadata` and `spec`).
pub(crate) fn pod_template<'a>(
    object: &'a mut Value,
    workload: &Workload,
) -> Result<&'a mut Map, String> {
    let path = workload.template;
    let template = object
        .get_path_mut(path)
        .ok_or_else(|| format!("{} is missing", dotted(path)))?;
    let type_name = template.type_name();
    let template = template
        .as_map_mut()
        .ok_or_else(|| format!("{} must be a map, found {type_name}", dotted(path)))?;
    check(template, path)?;
    Ok(template)
}

fn check(template: &Map, path: &[&str]) -> Result<(), String> {
    let at = |field: &str| {
        let mut full: Vec<&str> = path.to_vec();
        full.extend(field.split('.'));
        dotted(&full)
    };
    if let Some(metadata) = template.get("metadata") {
        match metadata {
            Value::Null => {}
            Value::Map(m) => check_string_map(m.get("annotations"), &at("metadata.annotations"))?,
            other => {
                return Err(format!(
                    "{} must be a map, found {}",
                    at("metadata"),
                    other.type_name()
                ));
            }
        }
    }
    let spec = match template.get("spec") {
        Some(Value::Map(spec)) => spec,
        Some(other) => {
            return Err(format!(
                "{} must be a map, found {}",
                at("spec"),
                other.type_name()
            ));
        }
        None => {
            return Err(format!(
                "{} is missing: a pod needs at least one container",
                at("spec")
            ));
        }
    };
    match spec.get("containers") {
        Some(Value::Seq(containers)) if !containers.is_empty() => {
            check_containers(containers, &at("spec.containers"))?
        }
        Some(Value::Seq(_)) | Some(Value::Null) | None => {
            return Err(format!(
                "{} is empty: a pod needs at least one container",
                at("spec.containers")
            ));
        }
        Some(other) => {
            return Err(format!(
                "{} must be a list, found {}",
                at("spec.containers"),
                other.type_name()
            ));
        }
    }
    if let Some(init) = spec.get("initContainers") {
        match init {
            Value::Null => {}
            Value::Seq(containers) => check_containers(containers, &at("spec.initContainers"))?,
            other => {
                return Err(format!(
                    "{} must be a list, found {}",
                    at("spec.initContainers"),
                    other.type_name()
                ));
            }
        }
    }
    match spec.get("volumes") {
        None | Some(Value::Null) | Some(Value::Seq(_)) => Ok(()),
        Some(other) => Err(format!(
            "{} must be a list, found {}",
            at("spec.volumes"),
            other.type_name()
        )),
    }
}

fn check_containers(containers: &[Value], at: &str) -> Result<(), String> {
    for (i, container) in containers.iter().enumerate() {
        match container.str_at(&["name"]) {
            Some(name) if !name.is_empty() => {}
            _ => return Err(format!("{at}[{i}] has no name")),
        }
    }
    Ok(())
}

fn check_string_map(value: Option<&Value>, at: &str) -> Result<(), String> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Map(m)) => match m.iter().find(|(_, v)| v.as_str().is_none()) {
            None => Ok(()),
            Some((key, v)) => Err(format!(
                "{at}.{key} must be a string, found {} (quote it)",
                v.type_name()
            )),
        },
        Some(other) => Err(format!("{at} must be a map, found {}", other.type_name())),
    }
}

fn dotted(path: &[&str]) -> String {
    if path.is_empty() {
        "the pod".to_string()
    } else {
        path.join(".")
    }
}

//! What inject and uninject share: the outcome of each object of a
//! manifest stream, and how an injected pod template is recognised and
//! its proxy removed (uninject removes it; inject removes an old one before
//! adding the new).

use std::fmt;

use crate::sidecar::{INIT_CONTAINER, PROXY_CONTAINER, PROXY_VERSION_ANNOTATION, XTABLES_VOLUME};
use crate::stream::{Document, ManifestError, Origin};
use crate::value::{Map, Value};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Uninjected,
    /// Left unchanged, and why when it is a workload.
    Skipped(Option<String>),
}

/// One line of the summary printed to stderr: `deployment "web" injected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub kind: String,
    pub name: String,
    pub outcome: Outcome,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} ", self.kind.to_lowercase(), self.name)?;
        match &self.outcome {
            Outcome::Injected => f.write_str("injected"),
            Outcome::Uninjected => f.write_str("uninjected"),
            Outcome::Skipped(None) => f.write_str("skipped"),
            Outcome::Skipped(Some(why)) => write!(f, "skipped: {why}"),
        }
    }
}

/// Applies `f` to every object of every document, turning its errors into
/// errors that say where the object is and which one it is.
pub(crate) fn each_object(
    documents: &mut [Document],
    mut f: impl FnMut(&mut Value) -> Result<Outcome, String>,
) -> Result<Vec<Report>, ManifestError> {
    let mut reports = Vec::new();
    for document in documents {
        document.try_for_each_object(|origin, object| {
            let outcome = f(object).map_err(|message| error(origin, object, message))?;
            reports.push(Report {
                kind: object.str_at(&["kind"]).unwrap_or("object").to_string(),
                name: name_of(object),
                outcome,
            });
            Ok(())
        })?;
    }
    Ok(reports)
}

fn error(origin: &Origin, object: &Value, message: String) -> ManifestError {
    let message = match object.str_at(&["kind"]) {
        Some(kind) if object.get_path(&["metadata"]).is_some() => {
            format!("{kind} {:?}: {message}", name_of(object))
        }
        _ => message,
    };
    ManifestError {
        origin: origin.clone(),
        message,
    }
}

fn name_of(object: &Value) -> String {
    let metadata = |field| object.str_at(&["metadata", field]);
    match (metadata("name"), metadata("generateName")) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "<unnamed>".to_string(),
    }
}

/// The pod spec of a checked template.
pub(crate) fn spec_of(template: &mut Map) -> &mut Map {
    template
        .get_mut("spec")
        .and_then(Value::as_map_mut)
        .expect("pod_template checked that spec is a map")
}

/// Removes the containers and volumes inject adds, leaving annotations:
/// re-injecting rewrites those in place.
pub(crate) fn remove_proxy(template: &mut Map) {
    let spec = spec_of(template);
    for key in ["initContainers", "containers"] {
        remove_named(spec, key, &[INIT_CONTAINER, PROXY_CONTAINER]);
    }
    remove_named(
        spec,
        "volumes",
        &[XTABLES_VOLUME, crate::identity::TOKEN_VOLUME],
    );
}

pub(crate) fn is_injected(template: &Map) -> bool {
    let annotated = template
        .get("metadata")
        .and_then(|m| m.str_at(&["annotations", PROXY_VERSION_ANNOTATION]))
        .is_some();
    let has_proxy = ["initContainers", "containers"].iter().any(|key| {
        template
            .get("spec")
            .and_then(|spec| spec.get_path(&[key]))
            .and_then(Value::as_seq)
            .is_some_and(|list| {
                list.iter()
                    .any(|c| c.str_at(&["name"]) == Some(PROXY_CONTAINER))
            })
    });
    annotated || has_proxy
}

/// Removes the entries of the list `key` whose name is one of `names`,
/// and the list itself when that empties it.
fn remove_named(spec: &mut Map, key: &str, names: &[&str]) {
    let Some(list) = spec.get_mut(key).and_then(Value::as_seq_mut) else {
        return;
    };
    let before = list.len();
    list.retain(|entry| {
        !entry
            .str_at(&["name"])
            .is_some_and(|name| names.contains(&name))
    });
    if list.len() != before && list.is_empty() {
        spec.remove(key);
    }
}

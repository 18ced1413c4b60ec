//! What Conduit deploys on Kubernetes, as data: `conduit install`'s control
//! plane ([`install`]), `conduit inject`/`uninject` ([`inject`],
//! [`uninject`]), the identity roots install packages ([`identity`]), their
//! local-mode files ([`local_identity`]) and the
//! Grafana dashboards ([`grafana`]).
//!
//! Manifests are built as [`value::Value`] trees in Rust, not text
//! templates: a tree can be edited structurally (inject must change one
//! field of a user's manifest and leave the rest as it was), is always
//! well-formed YAML and JSON, and needs no escaping of user input. The CLI
//! only parses flags and prints what this crate returns, so `kubectl
//! apply`-ready output is tested here and by `kubernetes-validate` in the
//! CLI's tests.
//!
//! YAML is read with `serde-saphyr` (already the workspace's YAML crate:
//! maintained, pure Rust, line-accurate errors; `serde_yaml` is deprecated)
//! and written by [`emit`], which quotes exactly what Kubernetes' YAML 1.1
//! parser would otherwise misread.

mod emit;
pub mod grafana;
pub mod identity;
pub mod images;
pub mod inject;
pub mod install;
mod kinds;
pub mod local_identity;
pub mod scrape;
pub mod sidecar;
pub mod stream;
mod template;
pub mod uninject;
pub mod value;
mod workload;

pub use identity::IdentityRoots;

/// Kubernetes' default DNS domain, `--cluster-domain` to change.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub use inject::{InjectOptions, inject_documents};
pub use install::{InstallOptions, control_plane, uninstall};
pub use sidecar::Sidecar;
pub use stream::{Document, Format, ManifestError, Origin};
pub use uninject::uninject_documents;
pub use workload::{Outcome, Report};

//! The images of this release. Tags follow the CLI's version so that
//! `conduit install` and `conduit inject` of one release deploy that
//! release.

/// Where the images are published.
pub const REGISTRY: &str = "ghcr.io/conduit-mesh";

fn image(name: &str) -> String {
    format!("{REGISTRY}/{name}:{}", conduit_api::VERSION)
}

/// The sidecar (`deploy/docker/Dockerfile`, target `proxy`).
pub fn proxy() -> String {
    image("proxy")
}

/// `conduit-proxy init` with iptables (target `proxy-init`).
pub fn proxy_init() -> String {
    image("proxy-init")
}

/// Target `controller` (with the dashboard bundle).
pub fn controller() -> String {
    image("controller")
}

/// Target `telemetry-store`.
pub fn telemetry_store() -> String {
    image("telemetry-store")
}

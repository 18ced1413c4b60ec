//! Configuration the control plane reads: what was installed
//! (`conduit-config`), the identity roots as Secrets, and the Grafana
//! dashboards of `deploy/grafana/` as a ConfigMap that Grafana's dashboard
//! sidecar picks up by its `grafana_dashboard` label.

use conduit_api::VERSION;

use crate::grafana;
use crate::value::{Value, map};

use super::{InstallOptions, labels, metadata};

pub(super) const TRUST_ANCHORS_SECRET: &str = "conduit-identity-trust-anchors";
pub(super) const ISSUER_SECRET: &str = "conduit-identity-issuer";

pub(super) fn objects(options: &InstallOptions) -> Vec<Value> {
    vec![
        install_config(options),
        trust_anchors(options),
        issuer(options),
        grafana_dashboards(&options.namespace),
    ]
}

fn install_config(options: &InstallOptions) -> Value {
    map([
        ("apiVersion", "v1".into()),
        ("kind", "ConfigMap".into()),
        (
            "metadata",
            metadata("conduit-config", &options.namespace, "controller"),
        ),
        (
            "data",
            map([
                ("version", VERSION.into()),
                ("namespace", options.namespace.as_str().into()),
                ("ha", options.ha.to_string().into()),
                ("controllerImage", options.controller_image.as_str().into()),
                ("storeImage", options.store_image.as_str().into()),
                ("proxyImage", options.proxy_image.as_str().into()),
                ("proxyInitImage", options.proxy_init_image.as_str().into()),
                (
                    "defaultInboundPolicy",
                    options.default_inbound_policy.as_str().into(),
                ),
            ]),
        ),
    ])
}

fn trust_anchors(options: &InstallOptions) -> Value {
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Secret".into()),
        (
            "metadata",
            metadata(TRUST_ANCHORS_SECRET, &options.namespace, "identity"),
        ),
        ("type", "Opaque".into()),
        (
            "stringData",
            map([("ca.crt", options.identity.trust_anchors_pem.as_str().into())]),
        ),
    ])
}

fn issuer(options: &InstallOptions) -> Value {
    let identity = &options.identity;
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Secret".into()),
        (
            "metadata",
            metadata(ISSUER_SECRET, &options.namespace, "identity"),
        ),
        ("type", "kubernetes.io/tls".into()),
        (
            "stringData",
            map([
                ("tls.crt", identity.issuer_certificate_pem.as_str().into()),
                ("tls.key", identity.issuer_key_pem.as_str().into()),
                ("ca.crt", identity.trust_anchors_pem.as_str().into()),
            ]),
        ),
    ])
}

fn grafana_dashboards(namespace: &str) -> Value {
    let mut labels = labels("grafana", namespace);
    labels.insert("grafana_dashboard", "1");
    map([
        ("apiVersion", "v1".into()),
        ("kind", "ConfigMap".into()),
        (
            "metadata",
            map([
                ("name", "conduit-grafana-dashboards".into()),
                ("namespace", namespace.into()),
                ("labels", labels.into()),
            ]),
        ),
        (
            "data",
            Value::Map(
                grafana::DASHBOARDS
                    .iter()
                    .map(|(file, json)| (*file, Value::from(*json)))
                    .collect(),
            ),
        ),
    ])
}

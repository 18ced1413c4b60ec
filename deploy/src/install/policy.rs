//! The CustomResourceDefinitions of `policy.conduit.io/v1`, the kinds the
//! controller compiles into inbound policy.
//!
//! Their schemas are structural (every field typed, junctors holding only
//! validations), so the API server prunes unknown fields and refuses what
//! is malformed in shape: a missing Server port, a protocol or a reference
//! kind the mesh does not know, an identity that is no mesh identity. What
//! needs more than one object to check (references, a port name, CIDRs,
//! regexes) the controller checks, naming the resource in `conduit check`.
//!
//! The fields are Linkerd's (`policy.linkerd.io`), minus what the mesh
//! cannot enforce: HTTPRoute filters, hostnames and regex header matches,
//! and authentication references to other namespaces.
//!
//! CustomResourceDefinitions are cluster-wide: control planes installed in
//! several namespaces share them, so they carry no namespace label.

use conduit_api::VERSION;
use conduit_api::policy::resources::{self as api, Kind};

use crate::value::{Map, Value, map, seq};

/// What `proxyProtocol` accepts: `unknown` (Linkerd's word) and `detect`
/// both detect the protocol.
const PROXY_PROTOCOLS: [&str; 6] = ["unknown", "detect", "HTTP/1", "HTTP/2", "gRPC", "opaque"];

/// A mesh identity, `*`, or `*.` and a suffix: the controller's rule.
const IDENTITY_PATTERN: &str = r"^(\*|(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*)$";
/// A container port's name (an IANA service name), as Kubernetes has it.
const PORT_NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";
const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$";

pub(super) fn objects() -> Vec<Value> {
    vec![
        definition(api::SERVER, &["srv"], server(), server_columns()),
        definition(api::HTTP_ROUTE, &[], http_route(), Vec::new()),
        definition(
            api::AUTHORIZATION_POLICY,
            &["authzpolicy"],
            authorization_policy(),
            policy_columns(),
        ),
        definition(
            api::MESH_TLS_AUTHENTICATION,
            &["meshtlsauthn"],
            mesh_tls_authentication(),
            Vec::new(),
        ),
        definition(
            api::NETWORK_AUTHENTICATION,
            &["netauthn"],
            network_authentication(),
            Vec::new(),
        ),
    ]
}

fn definition(kind: Kind, short_names: &[&str], spec: Value, columns: Vec<Value>) -> Value {
    let mut names = Map::from_iter([
        ("kind", Value::from(kind.kind)),
        ("listKind", format!("{}List", kind.kind).into()),
        ("plural", kind.plural.into()),
        ("singular", kind.kind.to_lowercase().into()),
    ]);
    if !short_names.is_empty() {
        names.insert("shortNames", seq(short_names.iter().copied()));
    }
    names.insert("categories", seq(["conduit", "policy"]));
    let mut version = Map::from_iter([
        ("name", Value::from(api::VERSION)),
        ("served", true.into()),
        ("storage", true.into()),
        (
            "schema",
            map([("openAPIV3Schema", object(&["spec"], [("spec", spec)]))]),
        ),
    ]);
    if !columns.is_empty() {
        version.insert("additionalPrinterColumns", Value::Seq(columns));
    }
    map([
        ("apiVersion", "apiextensions.k8s.io/v1".into()),
        ("kind", "CustomResourceDefinition".into()),
        (
            "metadata",
            map([
                ("name", format!("{}.{}", kind.plural, api::GROUP).into()),
                (
                    "labels",
                    map([
                        ("app.kubernetes.io/part-of", "conduit".into()),
                        ("app.kubernetes.io/version", VERSION.into()),
                    ]),
                ),
            ]),
        ),
        (
            "spec",
            map([
                ("group", api::GROUP.into()),
                ("scope", "Namespaced".into()),
                ("names", names.into()),
                ("versions", seq([Value::from(version)])),
            ]),
        ),
    ])
}

fn server() -> Value {
    let port = map([
        (
            "description",
            "The application's port: a number, or the name of a container port of the \
             selected pods."
                .into(),
        ),
        ("x-kubernetes-int-or-string", true.into()),
        (
            "anyOf",
            seq([
                map([("type", "integer".into())]),
                map([("type", "string".into())]),
            ]),
        ),
        // Each applies to its own type only: numbers to a number, the
        // pattern and length to a name.
        ("minimum", 1.into()),
        ("maximum", 65535.into()),
        ("pattern", PORT_NAME_PATTERN.into()),
        ("maxLength", 15.into()),
    ]);
    described(
        "The pods and port a policy applies to. Once a Server selects a port, only what \
         an AuthorizationPolicy admits reaches it.",
        object(
            &["podSelector", "port"],
            [
                (
                    "podSelector",
                    described(
                        "The pods whose port this is; it applies to their Deployments.",
                        label_selector(),
                    ),
                ),
                ("port", port),
                (
                    "proxyProtocol",
                    with(
                        string_enum(&PROXY_PROTOCOLS),
                        [("default", "unknown".into())],
                    ),
                ),
            ],
        ),
    )
}

fn label_selector() -> Value {
    let requirement = object(
        &["key", "operator"],
        [
            ("key", string()),
            (
                "operator",
                string_enum(&["In", "NotIn", "Exists", "DoesNotExist"]),
            ),
            ("values", array(string())),
        ],
    );
    object(
        &[],
        [
            (
                "matchLabels",
                map([
                    ("type", "object".into()),
                    ("additionalProperties", string()),
                ]),
            ),
            ("matchExpressions", array(requirement)),
        ],
    )
}

fn http_route() -> Value {
    let parent = object(
        &["kind", "name"],
        [
            ("group", string_enum(&[api::GROUP])),
            ("kind", string_enum(&[api::SERVER.kind])),
            ("name", string()),
            ("namespace", string()),
        ],
    );
    let path = object(
        &[],
        [
            (
                "type",
                with(
                    string_enum(&["Exact", "PathPrefix", "RegularExpression"]),
                    [("default", "PathPrefix".into())],
                ),
            ),
            (
                "value",
                with(
                    string(),
                    [("default", "/".into()), ("maxLength", 1024.into())],
                ),
            ),
        ],
    );
    let header = object(
        &["name", "value"],
        [
            (
                "type",
                with(string_enum(&["Exact"]), [("default", "Exact".into())]),
            ),
            (
                "name",
                with(string(), [("pattern", HEADER_NAME_PATTERN.into())]),
            ),
            ("value", string()),
        ],
    );
    let method = string_enum(&[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ]);
    let matches = object(
        &[],
        [
            ("path", path),
            ("headers", array(header)),
            ("method", method),
        ],
    );
    let rule = object(
        &[],
        [(
            "matches",
            described("Any of them; none matches every request.", array(matches)),
        )],
    );
    described(
        "Requests to a Server that an AuthorizationPolicy can target on their own. With \
         routes on a Server, a request on none of them is denied.",
        object(
            &["parentRefs"],
            [
                (
                    "parentRefs",
                    with(
                        array(parent),
                        [("minItems", 1.into()), ("maxItems", 1.into())],
                    ),
                ),
                ("rules", array(rule)),
            ],
        ),
    )
}

fn authorization_policy() -> Value {
    let target = object(
        &["kind", "name"],
        [
            ("group", string()),
            (
                "kind",
                string_enum(&[api::SERVER.kind, api::HTTP_ROUTE.kind, "Namespace"]),
            ),
            ("name", string()),
        ],
    );
    let authentication = object(
        &["kind", "name"],
        [
            ("group", string()),
            (
                "kind",
                string_enum(&[
                    api::MESH_TLS_AUTHENTICATION.kind,
                    api::NETWORK_AUTHENTICATION.kind,
                ]),
            ),
            ("name", string()),
            ("namespace", string()),
        ],
    );
    described(
        "Admits the clients that satisfy all of its required authentications to its target.",
        object(
            &["targetRef", "requiredAuthenticationRefs"],
            [
                (
                    "targetRef",
                    described(
                        "A Server, an HTTPRoute, or the policy's own Namespace (every Server of it).",
                        target,
                    ),
                ),
                (
                    "requiredAuthenticationRefs",
                    described(
                        "At most one MeshTLSAuthentication and one NetworkAuthentication of the \
                         policy's namespace; none admits every client.",
                        with(array(authentication), [("maxItems", 2.into())]),
                    ),
                ),
                (
                    "audit",
                    described(
                        "Trying the policy out: what nothing admits on its target is let \
                         through, logged and counted as audited.",
                        with(boolean(), [("default", false.into())]),
                    ),
                ),
            ],
        ),
    )
}

fn mesh_tls_authentication() -> Value {
    let identity_ref = object(
        &["kind", "name"],
        [
            ("group", string()),
            ("kind", string_enum(&["ServiceAccount", "Namespace"])),
            ("name", string()),
            ("namespace", string()),
        ],
    );
    let spec = object(
        &[],
        [
            (
                "identities",
                described(
                    "Mesh identities, `*` for any, or `*.SUFFIX`.",
                    with(
                        array(with(string(), [("pattern", IDENTITY_PATTERN.into())])),
                        [("minItems", 1.into())],
                    ),
                ),
            ),
            (
                "identityRefs",
                described(
                    "ServiceAccounts (namespace: the resource's own unless given), or every \
                     ServiceAccount of a Namespace.",
                    with(array(identity_ref), [("minItems", 1.into())]),
                ),
            ),
        ],
    );
    described(
        "Clients proving one of these mesh identities over mTLS.",
        with(
            spec,
            [(
                "anyOf",
                seq([
                    map([("required", seq(["identities"]))]),
                    map([("required", seq(["identityRefs"]))]),
                ]),
            )],
        ),
    )
}

fn network_authentication() -> Value {
    let network = object(&["cidr"], [("cidr", string()), ("except", array(string()))]);
    described(
        "Clients from one of these networks.",
        object(
            &["networks"],
            [("networks", with(array(network), [("minItems", 1.into())]))],
        ),
    )
}

fn server_columns() -> Vec<Value> {
    vec![
        column("Port", "string", ".spec.port"),
        column("Protocol", "string", ".spec.proxyProtocol"),
        column("Age", "date", ".metadata.creationTimestamp"),
    ]
}

fn policy_columns() -> Vec<Value> {
    vec![
        column("Target Kind", "string", ".spec.targetRef.kind"),
        column("Target", "string", ".spec.targetRef.name"),
        column("Audit", "boolean", ".spec.audit"),
        column("Age", "date", ".metadata.creationTimestamp"),
    ]
}

fn column(name: &str, kind: &str, path: &str) -> Value {
    map([
        ("name", name.into()),
        ("type", kind.into()),
        ("jsonPath", path.into()),
    ])
}

fn object<const N: usize>(required: &[&str], properties: [(&str, Value); N]) -> Value {
    let mut schema = Map::from_iter([("type", Value::from("object"))]);
    if !required.is_empty() {
        schema.insert("required", seq(required.iter().copied()));
    }
    schema.insert("properties", Value::Map(properties.into_iter().collect()));
    schema.into()
}

fn array(items: Value) -> Value {
    map([("type", "array".into()), ("items", items)])
}

fn string() -> Value {
    map([("type", "string".into())])
}

fn boolean() -> Value {
    map([("type", "boolean".into())])
}

fn string_enum(values: &[&str]) -> Value {
    map([
        ("type", "string".into()),
        ("enum", seq(values.iter().copied())),
    ])
}

/// `schema` with a description, which reads first.
fn described(description: &str, schema: Value) -> Value {
    let Value::Map(mut m) = schema else {
        unreachable!("schemas are maps")
    };
    m.insert_before("type", "description", description);
    m.into()
}

/// `schema` with more keywords.
fn with<const N: usize>(schema: Value, more: [(&str, Value); N]) -> Value {
    let Value::Map(mut m) = schema else {
        unreachable!("schemas are maps")
    };
    for (k, v) in more {
        m.insert(k, v);
    }
    m.into()
}

#[cfg(test)]
mod tests {
    use conduit_api::discovery_file::ServerProtocol;

    use super::*;

    /// What Kubernetes asks of a structural schema (no API server runs
    /// here to refuse a CRD that breaks it): every node typed unless it is
    /// int-or-string; junctors holding validations only, about fields
    /// specified outside them too; no map that is also an object with
    /// properties; defaults among their enums.
    fn check(path: &str, schema: &Map, in_junctor: bool, errors: &mut Vec<String>) {
        let has = |k: &str| schema.contains_key(k);
        let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&true.into());
        if in_junctor {
            for k in [
                "type",
                "description",
                "default",
                "additionalProperties",
                "nullable",
            ] {
                if has(k) {
                    errors.push(format!("{path}: {k} inside a junctor"));
                }
            }
        } else if !has("type") && !int_or_string {
            errors.push(format!("{path}: no type"));
        }
        if has("properties") && has("additionalProperties") {
            errors.push(format!("{path}: both properties and additionalProperties"));
        }
        if let (Some(d), Some(Value::Seq(e))) = (schema.get("default"), schema.get("enum"))
            && !e.contains(d)
        {
            errors.push(format!("{path}: default {d:?} not in its enum"));
        }
        let own = |key: &str| -> Vec<&String> {
            schema
                .get(key)
                .and_then(Value::as_map)
                .map(|m| m.keys().collect())
                .unwrap_or_default()
        };
        for (name, sub) in schema
            .get("properties")
            .and_then(Value::as_map)
            .into_iter()
            .flatten()
        {
            check(
                &format!("{path}.{name}"),
                sub.as_map().unwrap(),
                in_junctor,
                errors,
            );
        }
        for key in ["items", "additionalProperties"] {
            if let Some(Value::Map(sub)) = schema.get(key) {
                check(&format!("{path}[]"), sub, in_junctor, errors);
            }
        }
        for junctor in ["allOf", "anyOf", "oneOf"] {
            for branch in schema
                .get(junctor)
                .and_then(Value::as_seq)
                .into_iter()
                .flatten()
            {
                let branch = branch.as_map().unwrap();
                let is_int_or_string_type = int_or_string && branch.len() == 1;
                if !is_int_or_string_type {
                    check(&format!("{path}/{junctor}"), branch, true, errors);
                }
                let fields = branch.get("properties").and_then(Value::as_map);
                for name in fields.into_iter().flat_map(|m| m.keys()) {
                    if !own("properties").contains(&name) {
                        errors.push(format!("{path}/{junctor}: {name} only inside the junctor"));
                    }
                }
            }
        }
    }

    fn schemas() -> Vec<(String, Value)> {
        objects()
            .into_iter()
            .map(|crd| {
                let name = crd.str_at(&["metadata", "name"]).unwrap().to_string();
                let schema = crd
                    .get_path(&["spec", "versions"])
                    .and_then(Value::as_seq)
                    .unwrap()[0]
                    .get_path(&["schema", "openAPIV3Schema"])
                    .unwrap()
                    .clone();
                (name, schema)
            })
            .collect()
    }

    #[test]
    fn schemas_are_structural() {
        let mut errors = Vec::new();
        for (name, schema) in schemas() {
            check(&name, schema.as_map().unwrap(), false, &mut errors);
        }
        assert!(errors.is_empty(), "{errors:#?}");
        // The check finds what it looks for.
        let mut broken = Vec::new();
        let bad = map([
            ("type", "object".into()),
            ("anyOf", seq([map([("type", "string".into())])])),
            (
                "properties",
                map([("x", map([("description", "untyped".into())]))]),
            ),
        ]);
        check("bad", bad.as_map().unwrap(), false, &mut broken);
        assert_eq!(
            broken,
            ["bad.x: no type", "bad/anyOf: type inside a junctor"]
        );
    }

    #[test]
    fn every_proxy_protocol_the_schema_accepts_is_one_the_controller_reads() {
        for p in PROXY_PROTOCOLS {
            let parsed: Result<ServerProtocol, _> = serde_json::from_value(p.into());
            assert!(parsed.is_ok(), "{p}: {parsed:?}");
        }
    }

    #[test]
    fn one_definition_per_kind_of_the_api() {
        let names: Vec<String> = schemas().into_iter().map(|(n, _)| n).collect();
        let expected: Vec<String> = api::KINDS
            .iter()
            .map(|k| format!("{}.{}", k.plural, api::GROUP))
            .collect();
        assert_eq!(names, expected);
    }
}

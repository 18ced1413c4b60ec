//! `conduit diagnostics proxy-metrics|endpoints|policy deploy/NAME`: what
//! one pod's proxy sees, as `linkerd diagnostics` shows it, read from the
//! proxy through the controller (the proxies' ports stay closed to
//! everyone else).

use conduit_api::DeploymentRef;
use conduit_api::json::socket_addr;
use conduit_api::proto::diagnostics::v1::{self as diag, Kind};
use conduit_api::proto::public::v1::{PodDiagnostics, ProxyDiagnosticsRequest};
use serde::Serialize;

use crate::api;
use crate::args::{DiagnosticsArgs, DiagnosticsKind};
use crate::cmd::{block_on, required_name};
use crate::output::{Format, Table, outln, print_json};

/// One pod's answer, as `-o json` prints it.
#[derive(Serialize)]
struct Pod {
    pod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destinations: Option<Vec<Destination>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<Vec<Policy>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Serialize)]
struct Destination {
    authority: String,
    /// Resolved by DNS or the original destination, not the control plane.
    fallback: bool,
    endpoints: Vec<Endpoint>,
}

#[derive(Serialize)]
struct Endpoint {
    address: String,
    deployment: Option<DeploymentRef>,
    identity: String,
    protocol_hint: String,
    available: bool,
}

#[derive(Serialize)]
struct Policy {
    port: u32,
    server: String,
    source: String,
    protocol: String,
    routes: Vec<String>,
    authorizations: Vec<String>,
    audit: bool,
}

pub(crate) fn run(args: DiagnosticsArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "diagnostics")?;
    let kind = match args.kind {
        DiagnosticsKind::ProxyMetrics => Kind::Metrics,
        DiagnosticsKind::Endpoints => Kind::Endpoints,
        DiagnosticsKind::Policy => Kind::Policy,
    };
    let reply = block_on(async {
        let mut conn = api::connect(&args.common.api).await?;
        let req = ProxyDiagnosticsRequest {
            deployment: Some(DeploymentRef::new(&args.namespaces.namespace, &name).into()),
            kind: kind.into(),
            pod: args.pod.clone().unwrap_or_default(),
        };
        let reply = conn
            .client
            .proxy_diagnostics(conn.request(req))
            .await
            .map_err(api::status_error)?;
        anyhow::Ok(reply.into_inner())
    })?;
    let pods: Vec<Pod> = reply.pods.into_iter().map(|p| pod(p, kind)).collect();
    if args.common.output == Format::Json {
        print_json(&pods)?;
    } else {
        print(&pods, kind)?;
    }
    let failed: Vec<String> = pods
        .iter()
        .filter(|p| !p.error.is_empty())
        .map(|p| format!("{}: {}", p.pod, p.error))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("cannot read the proxy of {}", failed.join("; "));
    }
    Ok(())
}

fn pod(p: PodDiagnostics, kind: Kind) -> Pod {
    let mut out = Pod {
        pod: p.pod,
        metrics: None,
        destinations: None,
        policies: None,
        error: p.error,
    };
    let Some(d) = p.diagnostics else {
        return out;
    };
    match kind {
        Kind::Metrics => out.metrics = Some(d.metrics),
        Kind::Endpoints => {
            out.destinations = Some(d.destinations.into_iter().map(destination).collect())
        }
        Kind::Policy => out.policies = Some(d.policies.into_iter().map(policy).collect()),
        Kind::Unspecified => {}
    }
    out
}

fn destination(d: diag::Destination) -> Destination {
    Destination {
        authority: d.authority,
        fallback: d.fallback,
        endpoints: d
            .endpoints
            .into_iter()
            .map(|e| Endpoint {
                address: e.address.as_ref().map(socket_addr).unwrap_or_default(),
                deployment: e.deployment.map(Into::into),
                identity: e.identity,
                protocol_hint: e.protocol_hint,
                available: e.available,
            })
            .collect(),
    }
}

fn policy(p: diag::PortPolicy) -> Policy {
    Policy {
        port: p.port,
        server: p.server,
        source: p.source,
        protocol: p.protocol,
        routes: p.routes,
        authorizations: p.authorizations,
        audit: p.audit,
    }
}

/// Each pod under its own heading, as several pods' answers differ.
fn print(pods: &[Pod], kind: Kind) -> anyhow::Result<()> {
    for (i, p) in pods.iter().enumerate() {
        if i > 0 {
            outln!()?;
        }
        outln!("# POD {}", p.pod)?;
        if !p.error.is_empty() {
            outln!("error: {}", p.error)?;
            continue;
        }
        match kind {
            Kind::Metrics => write_text(p.metrics.as_deref().unwrap_or_default())?,
            Kind::Endpoints => {
                endpoints_table(p.destinations.as_deref().unwrap_or_default()).print()?
            }
            Kind::Policy => policy_table(p.policies.as_deref().unwrap_or_default()).print()?,
            Kind::Unspecified => {}
        }
    }
    Ok(())
}

fn write_text(text: &str) -> std::io::Result<()> {
    for line in text.lines() {
        outln!("{line}")?;
    }
    Ok(())
}

fn endpoints_table(destinations: &[Destination]) -> Table {
    let mut t = Table::new([
        "AUTHORITY",
        "ENDPOINT",
        "DEPLOYMENT",
        "IDENTITY",
        "HINT",
        "AVAILABLE",
    ]);
    for d in destinations {
        if d.endpoints.is_empty() {
            t.row([d.authority.as_str(), "-", "-", "-", "-", "-"]);
        }
        for e in &d.endpoints {
            let deployment = e
                .deployment
                .as_ref()
                .map_or("-".to_string(), ToString::to_string);
            let identity = if e.identity.is_empty() {
                "-"
            } else {
                &e.identity
            };
            let available = if e.available {
                "yes"
            } else {
                "no (breaker open)"
            };
            t.row([
                d.authority.clone(),
                e.address.clone(),
                deployment,
                identity.to_string(),
                e.protocol_hint.clone(),
                available.to_string(),
            ]);
        }
    }
    t
}

fn policy_table(policies: &[Policy]) -> Table {
    let mut t = Table::new([
        "PORT",
        "SERVER",
        "SOURCE",
        "PROTOCOL",
        "ROUTES",
        "AUTHORIZATIONS",
        "AUDIT",
    ]);
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(",")
        }
    };
    for p in policies {
        t.row([
            p.port.to_string(),
            p.server.clone(),
            p.source.clone(),
            p.protocol.clone(),
            list(&p.routes),
            list(&p.authorizations),
            p.audit.to_string(),
        ]);
    }
    t
}

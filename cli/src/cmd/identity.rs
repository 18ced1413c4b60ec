//! `conduit identity deploy/NAME`: each pod's certificate, as `linkerd
//! identity` prints it: who it names, who issued it, and for how long.

use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::CertificatesRequest;
use conduit_identity::cert::{self, CertInfo};
use conduit_identity::credentials::unix_now;
use serde::Serialize;

use crate::api;
use crate::args::IdentityArgs;
use crate::cmd::{block_on, required_name};
use crate::output::{Format, outln, print_json};

/// One pod's certificate, as `-o json` prints it.
#[derive(Serialize)]
struct Pod {
    pod: String,
    identity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<Certificate>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Serialize)]
struct Certificate {
    subject: String,
    issuer: String,
    serial: String,
    dns_names: Vec<String>,
    uris: Vec<String>,
    not_before: String,
    not_after: String,
    /// The chain up to the trust anchor, leaf excluded: issuers' subjects.
    chain: Vec<String>,
}

pub(crate) fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "identity")?;
    let reply = block_on(async {
        let mut conn = api::connect(&args.common.api).await?;
        let req = CertificatesRequest {
            deployment: Some(DeploymentRef {
                namespace: args.namespaces.namespace.clone(),
                name,
            }),
        };
        let reply = conn
            .client
            .certificates(req)
            .await
            .map_err(api::status_error)?;
        anyhow::Ok(reply.into_inner())
    })?;
    let pods: Vec<Pod> = reply.pods.into_iter().map(pod).collect();
    if args.common.output == Format::Json {
        return print_json(&pods);
    }
    if pods.is_empty() {
        outln!("No meshed pods found.")?;
        return Ok(());
    }
    for p in &pods {
        print_pod(p)?;
    }
    Ok(())
}

fn pod(p: conduit_api::proto::public::v1::PodCertificate) -> Pod {
    let read = |der: &Vec<u8>| cert::info(der);
    let certificate = match p.chain.first().map(read) {
        Some(Ok(leaf)) => Some(certificate(&leaf, &p.chain[1..])),
        Some(Err(e)) => {
            return Pod {
                pod: p.pod,
                identity: p.identity,
                certificate: None,
                error: format!("unreadable certificate: {e}"),
            };
        }
        None => None,
    };
    Pod {
        pod: p.pod,
        identity: p.identity,
        certificate,
        error: p.error,
    }
}

fn certificate(leaf: &CertInfo, rest: &[Vec<u8>]) -> Certificate {
    Certificate {
        subject: leaf.subject.clone(),
        issuer: leaf.issuer.clone(),
        serial: leaf.serial.clone(),
        dns_names: leaf.dns_names.clone(),
        uris: leaf.uris.clone(),
        not_before: utc(leaf.not_before_unix),
        not_after: utc(leaf.not_after_unix),
        chain: rest
            .iter()
            .filter_map(|der| cert::info(der).ok())
            .map(|c| c.subject)
            .collect(),
    }
}

fn print_pod(p: &Pod) -> std::io::Result<()> {
    outln!("POD {} ({})", p.pod, p.identity)?;
    let Some(c) = &p.certificate else {
        return outln!("  error: {}\n", p.error);
    };
    outln!("  Subject:     {}", c.subject)?;
    let names: Vec<String> = c
        .dns_names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .chain(c.uris.iter().map(|u| format!("URI:{u}")))
        .collect();
    outln!("  Names:       {}", names.join(", "))?;
    outln!("  Issuer:      {}", c.issuer)?;
    for (i, ca) in c.chain.iter().enumerate() {
        outln!("  Chain[{}]:    {ca}", i + 1)?;
    }
    outln!("  Serial:      {}", c.serial)?;
    outln!("  Not before:  {}", c.not_before)?;
    outln!("  Not after:   {}", c.not_after)?;
    outln!()
}

/// `2026-12-02T16:17:23Z (in 23h59m)`.
fn utc(unix: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return unix.to_string();
    };
    let left = unix - unix_now();
    let relative = if left >= 0 {
        format!("in {}", span(left))
    } else {
        format!("{} ago", span(-left))
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z ({relative})",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn span(s: i64) -> String {
    match s {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}m{}s", s / 60, s % 60),
    }
}

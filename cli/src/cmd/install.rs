//! `conduit install` and `conduit uninstall`: the control plane as
//! manifests for `kubectl apply -f -` and `kubectl delete -f -`. The
//! manifests themselves are built by `conduit-deploy`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use conduit_deploy::{IdentityRoots, InstallOptions, value::Value};
use time::OffsetDateTime;

use crate::args::{InstallArgs, ManifestFormat, UninstallArgs};

pub(crate) fn install(args: InstallArgs) -> anyhow::Result<()> {
    if args.prometheus_scrape_config {
        let job = conduit_deploy::scrape::prometheus_job(&args.namespace);
        return Ok(std::io::stdout().lock().write_all(job.as_bytes())?);
    }
    check_quantity(&args.store_volume_size)?;
    let now = OffsetDateTime::now_utc();
    let identity = match &args.identity_trust_anchors_file {
        Some(anchors) => {
            let certificate = required(&args.identity_issuer_certificate_file, "certificate")?;
            let key = required(&args.identity_issuer_key_file, "key")?;
            IdentityRoots::from_pem(&read(anchors)?, &read(certificate)?, &read(key)?, now)
                .context("the identity certificates given cannot be used")?
        }
        None => {
            eprintln!(
                "Generated a new identity trust anchor and issuer; the anchor's private key \
                 was not kept. Pass --identity-trust-anchors-file and the issuer files to \
                 keep the same identity across reinstalls."
            );
            IdentityRoots::generate(now)?
        }
    };
    let options = InstallOptions {
        ha: args.ha,
        controller_image: args.controller_image,
        store_image: args.store_image,
        proxy_image: args.proxy_image,
        proxy_init_image: args.proxy_init_image,
        store_volume_size: args.store_volume_size,
        cluster_domain: args.cluster.cluster_domain,
        default_inbound_policy: args.default_inbound_policy,
        metrics_backend: args.metrics_backend,
        remote_write_url: args.remote_write_url,
        remote_write_external_labels: args.remote_write_external_label,
        ..InstallOptions::new(&args.namespace, identity)
    };
    print(&conduit_deploy::control_plane(&options), args.output)
}

pub(crate) fn uninstall(args: UninstallArgs) -> anyhow::Result<()> {
    print(&conduit_deploy::uninstall(&args.namespace), args.output)
}

/// Writes the whole stream at once: a failure never leaves half of it on
/// stdout for `kubectl` to apply.
pub(crate) fn print(objects: &[Value], format: ManifestFormat) -> anyhow::Result<()> {
    let refs: Vec<&Value> = objects.iter().collect();
    let text = conduit_deploy::stream::write(&refs, stream_format(format));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub(crate) fn stream_format(format: ManifestFormat) -> conduit_deploy::Format {
    match format {
        ManifestFormat::Yaml => conduit_deploy::Format::Yaml,
        ManifestFormat::Json => conduit_deploy::Format::Json,
    }
}

fn required<'a>(path: &'a Option<std::path::PathBuf>, what: &str) -> anyhow::Result<&'a Path> {
    path.as_deref().with_context(|| {
        format!("--identity-trust-anchors-file needs --identity-issuer-{what}-file too")
    })
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A Kubernetes storage quantity: digits, an optional fraction, and an
/// optional binary or decimal suffix (`10Gi`, `500M`).
fn check_quantity(quantity: &str) -> anyhow::Result<()> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|s| quantity.strip_suffix(s))
        .unwrap_or(quantity);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    anyhow::ensure!(
        digits(whole) && digits(fraction),
        "{quantity:?} is not a storage size: use a number with a unit, like 10Gi or 500Mi"
    );
    Ok(())
}

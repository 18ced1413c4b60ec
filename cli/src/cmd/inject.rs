//! `conduit inject` and `conduit uninject`: read a manifest stream, add or
//! remove the proxy, print the stream for `kubectl apply -f -`, and say
//! what happened to each object on stderr. The rules live in
//! `conduit-deploy`.
//!
//! Output is printed only when the whole input was read and transformed:
//! on any error, stdout stays empty and the error names the file, document
//! and line.

use std::path::Path;

use anyhow::Context;
use conduit_deploy::stream::{self, Document, ManifestError};
use conduit_deploy::{InjectOptions, Report, Sidecar, inject_documents, uninject_documents};

use crate::args::{InjectArgs, ManifestFormat, UninjectArgs};
use crate::cmd::install::print;

pub(crate) fn inject(args: InjectArgs) -> anyhow::Result<()> {
    // Without anchors the proxies run in plaintext, as `--help` says; the
    // summary on stderr stays one line per object.
    let trust_anchors_pem = match &args.identity_trust_anchors_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            check_anchors(&pem)
                .with_context(|| format!("{} holds no usable trust anchor", path.display()))?;
            Some(pem)
        }
        None => None,
    };
    let options = InjectOptions {
        sidecar: Sidecar {
            trust_anchors_pem,
            proxy_image: args.proxy_image,
            init_image: args.init_image,
            skip_inbound_ports: args.skip_inbound_ports,
            skip_outbound_ports: args.skip_outbound_ports,
            opaque_ports: args.opaque_ports,
            proxy_log_level: args.proxy_log_level,
            cluster_domain: args.cluster.cluster_domain,
            store_pair: args.ha,
            ..Sidecar::new(&args.control_plane_namespace)
        },
        default_inbound_policy: args.default_inbound_policy,
        ..InjectOptions::new(&args.control_plane_namespace)
    };
    transform(&args.input, args.output, |docs| {
        inject_documents(docs, &options)
    })
}

/// The anchors must parse as certificates: a wrong file is an error here,
/// not proxies that never become ready.
fn check_anchors(pem: &str) -> anyhow::Result<()> {
    conduit_deploy::IdentityRoots::check_anchors(pem).map_err(anyhow::Error::msg)
}

pub(crate) fn uninject(args: UninjectArgs) -> anyhow::Result<()> {
    transform(&args.input, args.output, uninject_documents)
}

fn transform(
    input: &str,
    format: ManifestFormat,
    f: impl FnOnce(&mut [Document]) -> Result<Vec<Report>, ManifestError>,
) -> anyhow::Result<()> {
    let mut documents = Vec::new();
    for (name, text) in read_input(input)? {
        documents.extend(stream::read(&name, &text)?);
    }
    let reports = f(&mut documents)?;
    let values: Vec<_> = documents.into_iter().map(|d| d.value).collect();
    print(&values, format)?;
    for report in reports {
        eprintln!("{report}");
    }
    Ok(())
}

/// `(name, text)` of each input: standard input, one file, or the
/// manifests of a directory in name order (not recursive, like `kubectl
/// apply -f DIR`).
fn read_input(input: &str) -> anyhow::Result<Vec<(String, String)>> {
    if input == "-" {
        let text =
            std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?;
        return Ok(vec![("<stdin>".to_string(), text)]);
    }
    let path = Path::new(input);
    if !path.is_dir() {
        return Ok(vec![(input.to_string(), read(path)?)]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read directory {input}"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read directory {input}"))?;
    files.retain(|f| {
        f.is_file()
            && f.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
    });
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "{input} holds no manifests (*.yaml, *.yml or *.json files)"
    );
    files
        .iter()
        .map(|f| Ok((f.display().to_string(), read(f)?)))
        .collect()
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

//! Identity without Kubernetes: the roots and workload tokens of a mesh on
//! one machine (`conduit demo`, tests), as files in `<dir>/identity`.
//!
//! A trust anchor and an issuer (as `conduit install` generates them), the
//! key the controller checks tokens with, and one token per ServiceAccount:
//! the local stand-ins for the Secrets and projected tokens of a cluster.
//! Keys and tokens are written readable by their owner only.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use conduit_api::IdentityName;
use conduit_api::identity::TOKEN_AUDIENCE;
use conduit_identity::credentials::unix_now;
use conduit_identity::token::{TokenKey, hex};

use crate::IdentityRoots;

/// How long local tokens are valid: longer than any demo runs.
const TOKEN_VALIDITY_S: i64 = 30 * 24 * 3600;

/// Where a local mesh's identity files are.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    dir: PathBuf,
}

impl IdentityFiles {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("identity"),
        }
    }

    pub fn trust_anchors(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn issuer_certificate(&self) -> PathBuf {
        self.dir.join("issuer.crt")
    }

    pub fn issuer_key(&self) -> PathBuf {
        self.dir.join("issuer.key")
    }

    pub fn token_key(&self) -> PathBuf {
        self.dir.join("token.key")
    }

    /// The token file of `identity`'s ServiceAccount.
    pub fn token(&self, identity: &IdentityName) -> PathBuf {
        self.dir.join("tokens").join(format!(
            "{}.{}.token",
            identity.namespace, identity.service_account
        ))
    }

    /// Generates new roots, a token key, and a token for each of
    /// `identities`.
    pub fn generate(&self, identities: &[IdentityName]) -> anyhow::Result<()> {
        let roots = IdentityRoots::generate(time::OffsetDateTime::now_utc())?;
        self.write_roots(&roots)?;
        self.write_tokens(identities)
    }

    /// Writes `roots` (replacing any there).
    pub fn write_roots(&self, roots: &IdentityRoots) -> anyhow::Result<()> {
        self.create_dirs()?;
        write(
            &self.trust_anchors(),
            roots.trust_anchors_pem.as_bytes(),
            0o644,
        )?;
        write(
            &self.issuer_certificate(),
            roots.issuer_certificate_pem.as_bytes(),
            0o644,
        )?;
        write(&self.issuer_key(), roots.issuer_key_pem.as_bytes(), 0o600)
    }

    /// A new token key, and a token signed with it for each of
    /// `identities`.
    pub fn write_tokens(&self, identities: &[IdentityName]) -> anyhow::Result<()> {
        self.create_dirs()?;
        let (key, bytes) = TokenKey::generate();
        write(&self.token_key(), hex(&bytes).as_bytes(), 0o600)?;
        let expires = unix_now() + TOKEN_VALIDITY_S;
        for id in identities {
            let token = key.sign(id, TOKEN_AUDIENCE, expires);
            write(&self.token(id), token.as_bytes(), 0o600)?;
        }
        Ok(())
    }
}

impl IdentityFiles {
    fn create_dirs(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("tokens"))
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }
}

/// Replaces `path` with `contents`, created with `mode`.
fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

//! Local mode's stand-in for projected ServiceAccount tokens.
//!
//! Without Kubernetes there is no API server to review a token, so
//! `conduit demo` holds a secret key and signs one token per workload:
//! `v1:<identity>:<audience>:<expiry>:<HMAC-SHA256>`. The identity service
//! checks the signature with the same key, the audience (a token minted
//! for something else is not accepted here) and the expiry, and learns
//! from the token which identity its bearer may claim. The key and the
//! tokens are files readable by their owner only.

use conduit_api::IdentityName;
use conduit_api::identity::TOKEN_AUDIENCE;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: &str = "v1";

/// The key tokens are signed and checked with.
pub struct TokenKey(hmac::Key);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed (expected v1:IDENTITY:AUDIENCE:EXPIRY:SIGNATURE)")]
    Malformed,
    #[error("the token's signature is invalid: it was not issued by this control plane")]
    BadSignature,
    #[error("the token is for the audience {0:?}, not {TOKEN_AUDIENCE:?}")]
    WrongAudience(String),
    #[error("the token expired at {0} (Unix time)")]
    Expired(i64),
    #[error("the token names {0:?}, which is not an identity")]
    BadIdentity(String),
}

impl TokenKey {
    /// A new random key, and its bytes to store.
    pub fn generate() -> (Self, Vec<u8>) {
        let mut bytes = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        (Self::from_bytes(&bytes), bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// A token for `identity` for `audience`, valid until `expires_unix`.
    pub fn sign(&self, identity: &IdentityName, audience: &str, expires_unix: i64) -> String {
        let claims = format!("{VERSION}:{identity}:{audience}:{expires_unix}");
        let tag = hmac::sign(&self.0, claims.as_bytes());
        format!("{claims}:{}", hex(tag.as_ref()))
    }

    /// The identity a token's bearer may claim, if the token is ours, for
    /// the identity service, and unexpired at `now_unix`.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<IdentityName, TokenError> {
        let token = token.trim();
        let (claims, tag) = token.rsplit_once(':').ok_or(TokenError::Malformed)?;
        let tag = unhex(tag).ok_or(TokenError::Malformed)?;
        let mut parts = claims.split(':');
        let (Some(VERSION), Some(identity), Some(audience), Some(expiry), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        hmac::verify(&self.0, claims.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        if audience != TOKEN_AUDIENCE {
            return Err(TokenError::WrongAudience(audience.to_string()));
        }
        let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        if expiry <= now_unix {
            return Err(TokenError::Expired(expiry));
        }
        identity
            .parse()
            .map_err(|_| TokenError::BadIdentity(identity.to_string()))
    }
}

/// Lower-case hex, as key files and token signatures are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_prove_their_identity_only() {
        let (key, _) = TokenKey::generate();
        let web = IdentityName::new("web", "demo");
        let token = key.sign(&web, TOKEN_AUDIENCE, 2_000);
        assert_eq!(key.verify(&token, 1_000), Ok(web.clone()));
        assert_eq!(key.verify(&token, 2_000), Err(TokenError::Expired(2_000)));

        let (other, _) = TokenKey::generate();
        assert_eq!(other.verify(&token, 1_000), Err(TokenError::BadSignature));
        let forged = token.replace("web.demo", "vote-store.demo");
        assert_eq!(key.verify(&forged, 1_000), Err(TokenError::BadSignature));

        let elsewhere = key.sign(&web, "store.conduit.io", 2_000);
        assert!(matches!(
            key.verify(&elsewhere, 1_000),
            Err(TokenError::WrongAudience(_))
        ));
        for bad in ["", "v1", "v1:a:b:c:zz", "v2:web:aud:1:00"] {
            assert!(key.verify(bad, 1_000).is_err(), "{bad}");
        }
    }
}

//! X25519MLKEM768: the hybrid post-quantum key exchange every mesh
//! connection prefers (TLS group 0x11EC, draft-ietf-tls-ecdhe-mlkem, as
//! Linkerd 2.19 and the browsers use it).
//!
//! rustls' ring provider has no ML-KEM, and its hybrid groups live in the
//! aws-lc-rs provider (a second, C crypto library). So the group is
//! assembled here from ring's X25519 and RustCrypto's pure-Rust ML-KEM-768,
//! laid out as the draft says, post-quantum part first everywhere:
//!
//! - client share: ML-KEM encapsulation key (1184 bytes) ‖ X25519 public (32)
//! - server share: ML-KEM ciphertext (1088 bytes) ‖ X25519 public (32)
//! - shared secret: ML-KEM shared key (32) ‖ X25519 shared secret (32)
//!
//! A harvested recording stays safe as long as either part holds. The
//! client also offers its X25519 half on its own (rustls' hybrid
//! component), so a peer without the hybrid group needs no extra round
//! trip.

use ml_kem::array::Array;
use ml_kem::ml_kem_768::{DecapsulationKey, EncapsulationKey};
use ml_kem::{Decapsulate, KeyExport, Seed};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved, ProtocolVersion};

const ENCAPSULATION_KEY_LEN: usize = 1184;
const CIPHERTEXT_LEN: usize = 1088;
const X25519_LEN: usize = 32;

/// The group, for a provider's `kx_groups`.
pub static X25519_MLKEM768: &dyn SupportedKxGroup = &Hybrid;

#[derive(Debug)]
struct Hybrid;

fn invalid_share() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::FailedToGetRandomBytes)?;
    Ok(bytes)
}

fn x25519_key() -> Result<(EphemeralPrivateKey, Vec<u8>), Error> {
    let key = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new())
        .map_err(|_| Error::FailedToGetRandomBytes)?;
    let public = key
        .compute_public_key()
        .map_err(|_| Error::FailedToGetRandomBytes)?
        .as_ref()
        .to_vec();
    Ok((key, public))
}

/// Our X25519 secret with the peer's public value; ring refuses a peer
/// value that yields the all-zero secret.
fn x25519_agree(key: EphemeralPrivateKey, peer: &[u8]) -> Result<Vec<u8>, Error> {
    agreement::agree_ephemeral(key, &UnparsedPublicKey::new(&X25519, peer), |s| s.to_vec())
        .map_err(|_| invalid_share())
}

impl SupportedKxGroup for Hybrid {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let seed: Seed = Array::from(random::<64>()?);
        let decapsulation = DecapsulationKey::from_seed(seed);
        let (x25519, x25519_public) = x25519_key()?;
        let mut share = decapsulation.encapsulation_key().to_bytes().to_vec();
        share.extend_from_slice(&x25519_public);
        Ok(Box::new(Active {
            decapsulation,
            x25519,
            share,
        }))
    }

    /// The server's side: encapsulate to the client's key, agree with its
    /// X25519 value, answer with both.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        if client_share.len() != ENCAPSULATION_KEY_LEN + X25519_LEN {
            return Err(invalid_share());
        }
        let (ek, x25519_peer) = client_share.split_at(ENCAPSULATION_KEY_LEN);
        let ek = Array::try_from(ek).map_err(|_| invalid_share())?;
        let ek = EncapsulationKey::new(&ek).map_err(|_| invalid_share())?;
        let (ciphertext, mlkem_secret) =
            ek.encapsulate_deterministic(&Array::from(random::<32>()?));
        let (x25519, x25519_public) = x25519_key()?;
        let x25519_secret = x25519_agree(x25519, x25519_peer)?;
        let mut pub_key = ciphertext.to_vec();
        pub_key.extend_from_slice(&x25519_public);
        Ok(CompletedKeyExchange {
            group: NamedGroup::X25519MLKEM768,
            pub_key,
            secret: SharedSecret::from([mlkem_secret.as_slice(), &x25519_secret].concat()),
        })
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

/// The client's side, between its ClientHello and the server's answer.
struct Active {
    decapsulation: DecapsulationKey,
    x25519: EphemeralPrivateKey,
    share: Vec<u8>,
}

impl ActiveKeyExchange for Active {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, Error> {
        if server_share.len() != CIPHERTEXT_LEN + X25519_LEN {
            return Err(invalid_share());
        }
        let (ciphertext, x25519_peer) = server_share.split_at(CIPHERTEXT_LEN);
        // Decapsulation never fails: a forged ciphertext gives a random
        // key (implicit rejection), and the handshake then fails to verify.
        let mlkem_secret = self
            .decapsulation
            .decapsulate_slice(ciphertext)
            .map_err(|_| invalid_share())?;
        let x25519_secret = x25519_agree(self.x25519, x25519_peer)?;
        Ok(SharedSecret::from(
            [mlkem_secret.as_slice(), &x25519_secret].concat(),
        ))
    }

    /// The X25519 half, offered on its own too.
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((NamedGroup::X25519, &self.share[ENCAPSULATION_KEY_LEN..]))
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        server_share: &[u8],
    ) -> Result<SharedSecret, Error> {
        Ok(SharedSecret::from(x25519_agree(self.x25519, server_share)?))
    }

    fn pub_key(&self) -> &[u8] {
        &self.share
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_secret_from_shares_laid_out_as_the_draft_says() {
        let client = X25519_MLKEM768.start().unwrap();
        assert_eq!(client.pub_key().len(), 1184 + 32);
        let server = X25519_MLKEM768
            .start_and_complete(client.pub_key())
            .unwrap();
        assert_eq!(server.pub_key.len(), 1088 + 32);
        let secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(secret.secret_bytes().len(), 64);
        assert_eq!(secret.secret_bytes(), server.secret.secret_bytes());
    }

    #[test]
    fn the_secret_holds_both_parts() {
        // A server answering with another ciphertext (or X25519 value) makes
        // the client derive another secret in that part only.
        let client = X25519_MLKEM768.start().unwrap();
        let share = client.pub_key().to_vec();
        let server = X25519_MLKEM768.start_and_complete(&share).unwrap();
        let mut forged = server.pub_key.clone();
        forged[0] ^= 1;
        let secret = client.complete(&forged).unwrap();
        let (ours, theirs) = (secret.secret_bytes(), server.secret.secret_bytes());
        assert_ne!(ours[..32], theirs[..32], "ML-KEM part");
        assert_eq!(ours[32..], theirs[32..], "X25519 part");
    }

    #[test]
    fn malformed_shares_are_refused() {
        for len in [0, 32, 1184, 1184 + 31, 1184 + 33] {
            assert!(
                X25519_MLKEM768.start_and_complete(&vec![7u8; len]).is_err(),
                "{len}"
            );
        }
        let client = X25519_MLKEM768.start().unwrap();
        assert!(client.complete(&[0u8; 1088]).is_err());
        // An X25519 value of small order gives the all-zero secret.
        let client = X25519_MLKEM768.start().unwrap();
        let server = X25519_MLKEM768
            .start_and_complete(client.pub_key())
            .unwrap();
        let mut low_order = server.pub_key.clone();
        low_order[1088..].fill(0);
        assert!(client.complete(&low_order).is_err());
    }

    #[test]
    fn the_classical_half_completes_alone() {
        let client = X25519_MLKEM768.start().unwrap();
        let (group, x25519_share) = client.hybrid_component().unwrap();
        assert_eq!(group, NamedGroup::X25519);
        let server = rustls::crypto::ring::kx_group::X25519
            .start_and_complete(x25519_share)
            .unwrap();
        let secret = client.complete_hybrid_component(&server.pub_key).unwrap();
        assert_eq!(secret.secret_bytes(), server.secret.secret_bytes());
    }
}

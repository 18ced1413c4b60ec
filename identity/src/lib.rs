//! Workload identity and mTLS for every Conduit component.
//!
//! A proxy (or the telemetry store) proves who it is with a short-lived
//! certificate from the controller's identity service; every connection
//! between meshed proxies and every control-plane link is TLS 1.3 with both
//! sides' certificates verified against the mesh's trust anchors. This
//! crate holds what the components share:
//!
//! - [`anchors`]: the trust bundle (one or more anchors, for rotation).
//! - [`credentials`]: the current key and certificate, swapped on renewal
//!   while handshakes go on, and served to rustls.
//! - [`certify`]: the identity client: key in memory, CSR, renewal at 70 %
//!   of the lifetime.
//! - [`tls`]: rustls configurations, ALPN, handshakes and why they fail.
//! - [`kx`]: the hybrid post-quantum key exchange X25519MLKEM768.
//! - [`grpc`]: tonic servers and channels over mTLS, with the peer's
//!   verified identity on every request.
//! - [`cert`]: reading certificates (names, validity) for checks and CLIs.
//! - [`token`]: the tokens local mode uses in place of ServiceAccount
//!   tokens.
//! - [`bearer`]: the secrets that callers without a mesh certificate
//!   present to closed endpoints.

pub mod anchors;
pub mod bearer;
pub mod cert;
pub mod certify;
pub mod credentials;
pub mod grpc;
pub mod kx;
pub mod tls;
pub mod token;

pub use anchors::TrustAnchors;
pub use credentials::Credentials;

//! Whether a connection is secured, as the `tls` and `no_tls_reason`
//! labels say it. Linkerd's values, so its dashboards read them.

/// The `tls` label of a connection, and the `no_tls_reason` that says why
/// one is plaintext. Linkerd's values, so its dashboards read them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tls {
    /// mTLS between meshed proxies, both identities verified.
    Secured,
    NoIdentity(NoTlsReason),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoTlsReason {
    /// Between the application and its own proxy, over loopback.
    Loopback,
    /// This proxy runs without an identity (no identity service given).
    Disabled,
    /// Outbound: discovery named no identity for the endpoint (unmeshed).
    NotProvidedByServiceDiscovery,
    /// Inbound: the client sent plaintext (an unmeshed client).
    NoTlsFromRemote,
    /// Inbound: TLS for someone else (the application's own TLS, another
    /// SNI), forwarded untouched.
    Passthrough,
}

impl Tls {
    /// The `tls` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secured => "true",
            Self::NoIdentity(_) => "no_identity",
        }
    }

    /// The `no_tls_reason` label's value; empty when secured.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Secured => "",
            Self::NoIdentity(r) => r.as_str(),
        }
    }

    pub fn is_secured(self) -> bool {
        self == Self::Secured
    }
}

impl NoTlsReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Disabled => "disabled",
            Self::NotProvidedByServiceDiscovery => "not_provided_by_service_discovery",
            Self::NoTlsFromRemote => "no_tls_from_remote",
            Self::Passthrough => "passthrough",
        }
    }

    /// What `conduit edges` says about an edge plaintext for this reason.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Loopback => "between an application and its own proxy",
            Self::Disabled => "the client's proxy runs without an identity",
            Self::NotProvidedByServiceDiscovery => "the destination is not meshed",
            Self::NoTlsFromRemote => "the client is not meshed",
            Self::Passthrough => "the application's own TLS, passed through",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Loopback,
            Self::Disabled,
            Self::NotProvidedByServiceDiscovery,
            Self::NoTlsFromRemote,
            Self::Passthrough,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

//! The labels of each metric family, as types.
//!
//! A family's label type lists exactly the labels its series carry, so a
//! query for a label the proxy does not emit on that family does not
//! compile: the controller builds its matchers and reads its rows through
//! these types. The proxy builds its label sets through the structs at the
//! end, whose fields are the same labels with typed values.

use super::label;
use super::tls::Tls;
use crate::Direction;

/// A label of some family: its name on the wire.
pub trait Label: Copy + 'static {
    fn name(self) -> &'static str;
}

macro_rules! labels {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $name:path),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq)]
        pub enum $ty { $($variant),* }

        impl Label for $ty {
            fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
    };
}

/// Labels of the proxy's own counters, `namespace`, `deployment`, `pod`,
/// `pod_template_hash`, then the family's.
macro_rules! own_labels {
    ($(#[$doc:meta])* $ty:ident { $($rest:tt)* }) => {
        labels! {
            $(#[$doc])*
            $ty {
                Namespace = label::NAMESPACE,
                Deployment = label::DEPLOYMENT,
                Pod = label::POD,
                PodTemplateHash = label::POD_TEMPLATE_HASH,
                $($rest)*
            }
        }
    };
}

/// The proxy's own labels and who is at the other end of a request or
/// connection, then the family's.
macro_rules! peer_labels {
    ($(#[$doc:meta])* $ty:ident { $($rest:tt)* }) => {
        own_labels! {
            $(#[$doc])*
            $ty {
                Direction = label::DIRECTION,
                Authority = label::AUTHORITY,
                DstNamespace = label::DST_NAMESPACE,
                DstDeployment = label::DST_DEPLOYMENT,
                Tls = label::TLS,
                NoTlsReason = label::NO_TLS_REASON,
                ClientId = label::CLIENT_ID,
                ServerId = label::SERVER_ID,
                $($rest)*
            }
        }
    };
}

/// The proxy's own labels and a route (a profile's, or a learned path
/// template marked `learned`), then the family's.
macro_rules! route_labels {
    ($(#[$doc:meta])* $ty:ident { $($rest:tt)* }) => {
        own_labels! {
            $(#[$doc])*
            $ty {
                Direction = label::DIRECTION,
                Authority = label::AUTHORITY,
                Route = label::ROUTE,
                Learned = label::LEARNED,
                $($rest)*
            }
        }
    };
}

peer_labels! {
    /// `request_total` and `response_latency_ms`: a request between the
    /// proxy's workload and a peer.
    Http {}
}

peer_labels! {
    /// `response_total`: [`Http`] and the response's outcome.
    Response {
        StatusCode = label::STATUS_CODE,
        GrpcStatus = label::GRPC_STATUS,
        Classification = label::CLASSIFICATION,
        ErrorReason = label::ERROR_REASON,
    }
}

peer_labels! {
    /// The TCP families: a connection on one side of the proxy (`peer`).
    Tcp {
        Peer = label::PEER,
    }
}

route_labels! {
    /// The route families (`route_request_total`,
    /// `route_response_latency_ms`, retries): outbound requests by the
    /// destination profile's route, or the path template learned for
    /// requests no profile route matches.
    Route {}
}

route_labels! {
    /// `route_response_total`: [`Route`] and the response's outcome.
    RouteResponse {
        StatusCode = label::STATUS_CODE,
        GrpcStatus = label::GRPC_STATUS,
        Classification = label::CLASSIFICATION,
        ErrorReason = label::ERROR_REASON,
    }
}

own_labels! {
    /// The inbound policy families: which Server, route and authorization
    /// decided.
    Authz {
        SrvName = label::SRV_NAME,
        RouteName = label::ROUTE_NAME,
        AuthzName = label::AUTHZ_NAME,
        Audit = label::AUDIT,
    }
}

own_labels! {
    /// The proxy's own counters with no further label.
    Own {}
}

own_labels! {
    /// The proxy's own counters by `reason`.
    OwnReason {
        Reason = label::REASON,
    }
}

own_labels! {
    /// `tls_handshake_failures_total`.
    Handshake {
        Direction = label::DIRECTION,
        Reason = label::REASON,
    }
}

own_labels! {
    /// The label set budget's counters, about one metric `family`.
    LabelSets {
        Family = label::FAMILY,
        Reason = label::REASON,
    }
}

labels! {
    /// Control-plane counters by `reason` (the controller's own, with no
    /// workload labels).
    Reason {
        Reason = label::REASON,
    }
}

labels! {
    /// Control-plane counters with no label.
    Bare {}
}

/// Which side of the proxy a TCP series' connections are on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Accepted from a client.
    Src,
    /// Opened to a server.
    Dst,
}

impl Peer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Src => super::PEER_SRC,
            Self::Dst => super::PEER_DST,
        }
    }
}

/// Who is at the other end of a request or connection, as the proxy knows
/// it: the labels shared by the HTTP and TCP families beyond `direction`.
/// Unknown values are empty and left out of the series.
#[derive(Copy, Clone, Debug, Default)]
pub struct Endpoint<'a> {
    pub authority: &'a str,
    pub dst_namespace: &'a str,
    pub dst_deployment: &'a str,
    pub tls: Option<Tls>,
    pub client_id: &'a str,
    pub server_id: &'a str,
}

impl<'a> Endpoint<'a> {
    /// Just an authority (a request that never reached an endpoint).
    pub fn authority(authority: &'a str) -> Self {
        Self {
            authority,
            ..Self::default()
        }
    }

    fn pairs(&self) -> [(&'static str, &'a str); 7] {
        let (tls, reason) = self.tls.map_or(("", ""), |t| (t.as_str(), t.reason()));
        [
            (Http::Authority.name(), self.authority),
            (Http::DstNamespace.name(), self.dst_namespace),
            (Http::DstDeployment.name(), self.dst_deployment),
            (Http::Tls.name(), tls),
            (Http::NoTlsReason.name(), reason),
            (Http::ServerId.name(), self.server_id),
            (Http::ClientId.name(), self.client_id),
        ]
    }
}

/// The label set of an HTTP series (beyond the proxy's own labels), in the
/// order the series print them.
pub fn http<'a>(direction: Direction, endpoint: &Endpoint<'a>) -> Vec<(&'static str, &'a str)> {
    let mut pairs = vec![(Http::Direction.name(), direction.as_str())];
    pairs.extend(endpoint.pairs());
    pairs
}

/// The label set of a profile route's series.
pub fn route<'a>(authority: &'a str, route: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        (Route::Direction.name(), Direction::Outbound.as_str()),
        (Route::Authority.name(), authority),
        (Route::Route.name(), route),
    ]
}

/// The label set of a learned route's series: its template is the route.
pub fn learned_route<'a>(authority: &'a str, template: &'a str) -> Vec<(&'static str, &'a str)> {
    let mut pairs = route(authority, template);
    pairs.push((Route::Learned.name(), super::LEARNED_ROUTE));
    pairs
}

/// The label set of a TCP series.
pub fn tcp<'a>(
    direction: Direction,
    peer: Peer,
    endpoint: &Endpoint<'a>,
) -> Vec<(&'static str, &'a str)> {
    let mut pairs = vec![
        (Tcp::Direction.name(), direction.as_str()),
        (Tcp::Peer.name(), peer.as_str()),
    ];
    pairs.extend(endpoint.pairs());
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NoTlsReason;

    #[test]
    fn label_sets_name_their_family_labels_only() {
        let e = Endpoint {
            authority: "web.demo:80",
            tls: Some(Tls::NoIdentity(NoTlsReason::NoTlsFromRemote)),
            ..Endpoint::default()
        };
        let set: Vec<_> = http(Direction::Inbound, &e)
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        assert_eq!(
            set,
            [
                ("direction", "inbound"),
                ("authority", "web.demo:80"),
                ("tls", "no_identity"),
                ("no_tls_reason", "no_tls_from_remote"),
            ]
        );
        let tcp_names: Vec<_> = tcp(Direction::Outbound, Peer::Dst, &e)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert!(tcp_names.contains(&Tcp::Peer.name()));
    }
}

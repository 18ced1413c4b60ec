//! Simulated proxies. Each dials the controller's mesh port on its own
//! connection, over mTLS with a mesh certificate from the identity service
//! (the destination and policy services answer meshed callers only), and
//! holds the two watches conduit-proxy keeps: `Destination.Get` on the
//! service it calls and `InboundServerPolicies.WatchPort` on its
//! application port. Every message is reported with the moment it arrived,
//! taken in the task that read it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_api::identity::{CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN};
use conduit_api::proto::destination::v1::destination_client::DestinationClient;
use conduit_api::proto::destination::v1::{GetDestination, update};
use conduit_api::proto::mesh::v1::{DeploymentRef, TcpAddress};
use conduit_api::proto::policy::v1::PortSpec;
use conduit_api::proto::policy::v1::inbound_server_policies_client::InboundServerPoliciesClient;
use conduit_identity::Credentials;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Connections dialled at once while the fleet comes up.
const DIAL_AT_ONCE: usize = 32;

/// What a subscriber was told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seen {
    /// An `add` naming this endpoint.
    Endpoint(SocketAddr),
    /// A policy for the port whose authorizations are these (none: it
    /// admits no one).
    Policy(Vec<String>),
}

pub(crate) enum Event {
    Seen {
        subscriber: usize,
        seen: Seen,
        at: Instant,
    },
    Broke {
        subscriber: usize,
        error: String,
    },
}

/// What every subscriber watches.
#[derive(Clone)]
pub(crate) struct Watches {
    pub(crate) authority: String,
    pub(crate) workload: DeploymentRef,
    pub(crate) port: u16,
}

/// Connects `n` subscribers to the mesh port at `mesh` and starts their
/// watches; they run until the set is dropped.
pub(crate) async fn connect(
    n: usize,
    mesh: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    creds: Arc<Credentials>,
    watches: &Watches,
    events: &UnboundedSender<Event>,
) -> Result<JoinSet<()>, String> {
    let controller = IdentityName::controller(CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN);
    let mut fleet = JoinSet::new();
    for first in (0..n).step_by(DIAL_AT_ONCE) {
        let mut dials = JoinSet::new();
        for s in first..(first + DIAL_AT_ONCE).min(n) {
            let (config, creds, controller) = (config.clone(), creds.clone(), controller.clone());
            dials.spawn(async move {
                let channel = conduit_identity::grpc::connect(
                    &mesh.to_string(),
                    &controller,
                    config,
                    Some(creds),
                )
                .await
                .map_err(|e| format!("subscriber {s}: {e}"))?;
                Ok::<_, String>((s, channel))
            });
        }
        while let Some(dialled) = dials.join_next().await {
            let (s, channel) = dialled.map_err(|e| e.to_string())??;
            fleet.spawn(endpoints(
                s,
                channel.clone(),
                watches.clone(),
                events.clone(),
            ));
            fleet.spawn(policy(s, channel, watches.clone(), events.clone()));
        }
    }
    Ok(fleet)
}

async fn endpoints(s: usize, channel: Channel, w: Watches, events: UnboundedSender<Event>) {
    let req = GetDestination {
        scheme: "http".into(),
        path: w.authority,
        context: Some(w.workload),
    };
    let broke = |error: String| Event::Broke {
        subscriber: s,
        error,
    };
    let mut stream = match DestinationClient::new(channel).get(req).await {
        Ok(rsp) => rsp.into_inner(),
        Err(status) => {
            let _ = events.send(broke(format!("Destination.Get: {status}")));
            return;
        }
    };
    loop {
        let update = match stream.message().await {
            Ok(Some(u)) => u.update,
            Ok(None) => return drop(events.send(broke("Destination.Get ended".into()))),
            Err(status) => return drop(events.send(broke(format!("Destination.Get: {status}")))),
        };
        let at = Instant::now();
        let Some(update::Update::Add(set)) = update else {
            continue;
        };
        for addr in set.addrs.iter().filter_map(|a| a.addr.as_ref()) {
            if let Some(addr) = socket_addr(addr) {
                let seen = Seen::Endpoint(addr);
                let _ = events.send(Event::Seen {
                    subscriber: s,
                    seen,
                    at,
                });
            }
        }
    }
}

async fn policy(s: usize, channel: Channel, w: Watches, events: UnboundedSender<Event>) {
    let spec = PortSpec {
        workload: Some(w.workload),
        port: u32::from(w.port),
    };
    let broke = |error: String| Event::Broke {
        subscriber: s,
        error,
    };
    let mut stream = match InboundServerPoliciesClient::new(channel)
        .watch_port(spec)
        .await
    {
        Ok(rsp) => rsp.into_inner(),
        Err(status) => {
            let _ = events.send(broke(format!("WatchPort: {status}")));
            return;
        }
    };
    loop {
        let server = match stream.message().await {
            Ok(Some(server)) => server,
            Ok(None) => return drop(events.send(broke("WatchPort ended".into()))),
            Err(status) => return drop(events.send(broke(format!("WatchPort: {status}")))),
        };
        let at = Instant::now();
        let names = server.authorizations.into_iter().map(|a| a.name).collect();
        let _ = events.send(Event::Seen {
            subscriber: s,
            seen: Seen::Policy(names),
            at,
        });
    }
}

fn socket_addr(a: &TcpAddress) -> Option<SocketAddr> {
    let ip: IpAddr = match a.ip.len() {
        4 => <[u8; 4]>::try_from(a.ip.as_slice()).ok()?.into(),
        16 => <[u8; 16]>::try_from(a.ip.as_slice()).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::try_from(a.port).ok()?))
}

/// Waits until each of the `n` subscribers has seen everything in `want`
/// (at most `timeout` after `since`); the delay from `since` until each one
/// had, by subscriber. Messages about anything else are passed over.
pub(crate) async fn delivered(
    events: &mut UnboundedReceiver<Event>,
    n: usize,
    want: &[Seen],
    since: Instant,
    timeout: Duration,
) -> Result<Vec<Duration>, String> {
    let mut pending: Vec<HashSet<usize>> = vec![(0..want.len()).collect(); n];
    let mut delays = vec![Duration::ZERO; n];
    let mut done = 0;
    let deadline = tokio::time::Instant::from_std(since + timeout);
    while done < n {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| {
                format!(
                    "{done} of {n} subscribers got it within {} s",
                    timeout.as_secs_f64()
                )
            })?
            .ok_or("every subscriber is gone")?;
        let (s, seen, at) = match event {
            Event::Seen {
                subscriber,
                seen,
                at,
            } => (subscriber, seen, at),
            Event::Broke { subscriber, error } => {
                return Err(format!("subscriber {subscriber}: {error}"));
            }
        };
        let Some(i) = want.iter().position(|w| *w == seen) else {
            continue;
        };
        if pending[s].remove(&i) && pending[s].is_empty() {
            delays[s] = at.saturating_duration_since(since);
            done += 1;
        }
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(subscriber: usize, seen: Seen, at: Instant) -> Event {
        Event::Seen {
            subscriber,
            seen,
            at,
        }
    }

    #[tokio::test]
    async fn a_subscriber_is_done_once_it_saw_everything_wanted() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let since = Instant::now();
        let a = Seen::Endpoint("127.0.0.1:1".parse().unwrap());
        let open = Seen::Policy(vec!["round-0".into()]);
        let ms = |m| since + Duration::from_millis(m);
        tx.send(seen(0, a.clone(), ms(5))).unwrap();
        tx.send(seen(1, Seen::Policy(vec![]), ms(6))).unwrap();
        tx.send(seen(1, open.clone(), ms(7))).unwrap();
        tx.send(seen(0, open.clone(), ms(9))).unwrap();
        tx.send(seen(1, a.clone(), ms(8))).unwrap();
        let want = [a, open];
        let delays = delivered(&mut rx, 2, &want, since, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(delays, [Duration::from_millis(9), Duration::from_millis(8)]);
    }

    #[tokio::test]
    async fn a_change_some_never_get_names_how_many_did() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let since = Instant::now();
        let want = [Seen::Policy(vec![])];
        tx.send(seen(2, want[0].clone(), since)).unwrap();
        let err = delivered(&mut rx, 3, &want, since, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err, "1 of 3 subscribers got it within 0.05 s");
        tx.send(Event::Broke {
            subscriber: 1,
            error: "WatchPort ended".into(),
        })
        .unwrap();
        let err = delivered(&mut rx, 3, &want, since, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err, "subscriber 1: WatchPort ended");
    }
}

//! The Deployment's edges: who calls it and whom it calls, each with its
//! mTLS status and traffic over the last minute, drawn as a graph
//! ([`super::graph`]) above a table with the identities and latencies.
//!
//! The API has no stream for edges, so they are polled (a fixed window's
//! once). Peers come from
//! `/api/v1/edges` (identities, mTLS) joined with `/api/v1/stat` `to` and
//! `from` the Deployment (traffic per edge).

use std::collections::BTreeMap;

use conduit_api::DeploymentRef;
use conduit_api::json::{Edges, Golden, Stat};
use leptos::prelude::*;

use super::graph::NeighbourGraph;
use super::window::Window;
use crate::api::{self, FetchError};
use crate::components::metric::GoldenCells;
use crate::components::status::{Empty, ErrorBox};
use crate::{live, paths};

/// Which way traffic flows relative to the Deployment on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Way {
    Inbound,
    Outbound,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct EdgeRow {
    pub(super) way: Way,
    pub(super) peer: DeploymentRef,
    pub(super) secured: Option<bool>,
    client_id: String,
    server_id: String,
    no_tls_reason: String,
    pub(super) metrics: Option<Golden>,
}

/// Edges of `me`: from the edges API (identities, mTLS) joined with the
/// per-edge stat (traffic), so a peer with traffic but no edge entry yet
/// still shows.
fn join_edges(me: &DeploymentRef, edges: &Edges, inbound: &Stat, outbound: &Stat) -> Vec<EdgeRow> {
    let mut rows: BTreeMap<(Way, DeploymentRef), EdgeRow> = BTreeMap::new();
    for e in &edges.edges {
        let (way, peer) = if &e.dst == me {
            (Way::Inbound, e.src.clone())
        } else if &e.src == me {
            (Way::Outbound, e.dst.clone())
        } else {
            continue;
        };
        rows.insert(
            (way, peer.clone()),
            EdgeRow {
                way,
                peer,
                secured: Some(e.secured),
                client_id: e.client_id.clone(),
                server_id: e.server_id.clone(),
                no_tls_reason: e.no_tls_reason.clone(),
                metrics: None,
            },
        );
    }
    for (way, stat) in [(Way::Inbound, inbound), (Way::Outbound, outbound)] {
        for r in &stat.rows {
            let peer = DeploymentRef::new(&r.namespace, &r.name);
            let entry = rows.entry((way, peer.clone())).or_insert_with(|| EdgeRow {
                way,
                peer,
                secured: None,
                client_id: String::new(),
                server_id: String::new(),
                no_tls_reason: String::new(),
                metrics: None,
            });
            entry.metrics = r.metrics.clone();
        }
    }
    rows.into_values().collect()
}

async fn fetch_edges(me: DeploymentRef, window: Window) -> Result<Vec<EdgeRow>, FetchError> {
    let me_text = me.to_string();
    let url = |path: &str, edge: Option<(&'static str, String)>| {
        // A live page's edges are those of the last five minutes (the
        // API's default), its traffic that of the last minute.
        let windowed = edge.is_some() || !window.is_live();
        let mut params = vec![("all_namespaces", "true".to_string())];
        params.extend(edge);
        if windowed {
            params.extend(window.api_params());
        }
        api::url(path, &super::pairs(&params))
    };
    let edges_url = url("/api/v1/edges", None);
    let to_url = url("/api/v1/stat", Some(("to", me_text.clone())));
    let from_url = url("/api/v1/stat", Some(("from", me_text)));
    let edges: Edges = api::get(&edges_url).await?;
    let inbound: Stat = api::get(&to_url).await?;
    let outbound: Stat = api::get(&from_url).await?;
    Ok(join_edges(&me, &edges, &inbound, &outbound))
}

#[component]
pub(super) fn EdgesView(
    namespace: Memo<String>,
    name: Memo<String>,
    window: Memo<Window>,
) -> impl IntoView {
    let result = RwSignal::new(None::<Result<Vec<EdgeRow>, FetchError>>);
    live::poll(
        super::REFRESH,
        move || window.with(Window::is_live),
        move || {
            let me = DeploymentRef::new(namespace.get(), name.get());
            let w = window.get();
            leptos::task::spawn_local(async move {
                let r = fetch_edges(me, w).await;
                result.try_set(Some(r));
            });
        },
    );
    let rows = move || {
        let rows = match result.get() {
            None => return view! { <p class="status loading">"Loading edges…"</p> }.into_any(),
            Some(Err(e)) => return view! { <ErrorBox message=e.to_string()/> }.into_any(),
            Some(Ok(rows)) if rows.is_empty() => {
                let text = if window.with(Window::is_live) {
                    "No traffic to or from other meshed Deployments yet.".to_string()
                } else {
                    format!(
                        "No traffic to or from other meshed Deployments {}.",
                        window.with(Window::describe)
                    )
                };
                return view! { <Empty><p>{text}</p></Empty> }.into_any();
            }
            Some(Ok(rows)) => rows,
        };
        let me = DeploymentRef::new(namespace.get(), name.get());
        let graph = view! { <NeighbourGraph me=me rows=rows.clone()/> };
        let body = rows
            .into_iter()
            .map(|r| {
                let (arrow, way) = match r.way {
                    Way::Inbound => ("←", "inbound"),
                    Way::Outbound => ("→", "outbound"),
                };
                let (lock, tls_class, tls_title) = match r.secured {
                    Some(true) => ("🔒 mTLS", "tls secured", format!("client {} → server {}", r.client_id, r.server_id)),
                    Some(false) => ("not secured", "tls plain", r.no_tls_reason.clone()),
                    None => ("unknown", "tls unknown", String::new()),
                };
                view! {
                    <tr data-testid="edge-row" data-way=way data-peer=r.peer.to_string()>
                        <td>{arrow}" "{way}</td>
                        <td><a href=paths::deployment(&r.peer.namespace, &r.peer.name)>{r.peer.to_string()}</a></td>
                        <td class=tls_class title=tls_title>{lock}</td>
                        <td class="identity">{if r.way == Way::Inbound { r.client_id.clone() } else { r.server_id.clone() }}</td>
                        <GoldenCells m=r.metrics.clone()/>
                    </tr>
                }
            })
            .collect_view();
        view! {
            {graph}
            <table class="metrics edges" data-testid="edges-table">
                <thead>
                    <tr>
                        <th>"Direction"</th><th>"Peer"</th><th>"Security"</th><th>"Peer identity"</th>
                        <th class="num">"Success"</th><th class="num">"RPS"</th>
                        <th class="num">"P50"</th><th class="num">"P95"</th><th class="num">"P99"</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <h2>"Edges"</h2>
        {rows}
    }
}

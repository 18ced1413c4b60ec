//! The Deployment's callers and callees as a drawing, as Linkerd's
//! dashboard has it: the Deployment in the middle, callers on the left,
//! callees on the right, each edge labelled with its request and success
//! rates and whether it is secured by mTLS (a plain edge is also dashed).
//!
//! Where everything goes comes from `conduit_chart::graph`; this only
//! draws it.

use conduit_api::DeploymentRef;
use conduit_chart::format;
use conduit_chart::graph::{self, EdgeShape, Rect, TextAt};
use conduit_chart::labels;
use leptos::prelude::*;

use super::edges::{EdgeRow, Way};

/// The font size of node names, in SVG units (the stylesheet's).
const NAME_FONT: f64 = 12.0;
/// Room a name leaves inside its node on either side.
const NAME_PAD: f64 = 8.0;

#[component]
pub(super) fn NeighbourGraph(me: DeploymentRef, rows: Vec<EdgeRow>) -> impl IntoView {
    let (callers, callees): (Vec<EdgeRow>, Vec<EdgeRow>) =
        rows.into_iter().partition(|r| r.way == Way::Inbound);
    let layout = graph::layout(callers.len(), callees.len());
    let centre = layout.centre;
    let caller_views = callers
        .into_iter()
        .zip(layout.callers)
        .map(|(r, at)| neighbour(r, at, graph::caller_edge(&at, &centre), "caller"))
        .collect_view();
    let callee_views = callees
        .into_iter()
        .zip(layout.callees)
        .map(|(r, at)| neighbour(r, at, graph::callee_edge(&centre, &at), "callee"))
        .collect_view();
    view! {
        <svg
            class="graph"
            data-testid="deployment-graph"
            viewBox=format!("0 0 {} {}", graph::WIDTH, layout.height)
            role="img"
            aria-label="Callers and callees"
        >
            {caller_views}
            {callee_views}
            {node(me.to_string(), centre, "self")}
        </svg>
    }
}

/// A caller's or callee's edge (drawn first, under the nodes) and node.
fn neighbour(row: EdgeRow, at: Rect, shape: EdgeShape, role: &'static str) -> impl IntoView {
    let (secured, security) = match row.secured {
        Some(true) => ("true", "🔒 mTLS"),
        Some(false) => ("false", "not secured"),
        None => ("unknown", "security unknown"),
    };
    let rps = row
        .metrics
        .as_ref()
        .map_or_else(|| "0".to_string(), |m| format::rps(m.rps));
    let success = row
        .metrics
        .as_ref()
        .map_or(format::MISSING.to_string(), |m| {
            format::percent(m.success_rate)
        });
    let peer = row.peer.to_string();
    view! {
        <g class="graph-edge" data-role=role data-peer=peer.clone() data-secured=secured>
            <path class=format!("edge-line secured-{secured}") d=shape.path></path>
            <text class="edge-rates" x=shape.rates.x y=shape.rates.y text-anchor=anchor(&shape.rates)>
                <tspan class="rps">{rps}" rps"</tspan>
                " · "
                <tspan class="success">{success}</tspan>
            </text>
            <text class="edge-security" x=shape.security.x y=shape.security.y text-anchor=anchor(&shape.security)>
                {security}
            </text>
        </g>
        {node(peer, at, role)}
    }
}

/// The box of Deployment `full` (`namespace/name`) with its name, cut to
/// fit (the full name is its `data-name`).
fn node(full: String, at: Rect, role: &'static str) -> impl IntoView {
    let shown = labels::fit(&full, at.w - 2.0 * NAME_PAD, NAME_FONT);
    view! {
        <g class=format!("graph-node {role}") data-role=role data-name=full>
            <rect x=at.x y=at.y width=at.w height=at.h rx="6"></rect>
            <text x=at.mid_x() y=at.mid_y() + NAME_FONT / 3.0 text-anchor="middle">{shown}</text>
        </g>
    }
}

fn anchor(at: &TextAt) -> &'static str {
    at.anchor.as_str()
}

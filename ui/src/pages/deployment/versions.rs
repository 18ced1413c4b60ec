//! The Deployment page's versions panel: during a rollout, the golden
//! metrics of each version (the pods' `pod_template_hash`) side by side
//! over the last minute; what `conduit stat deploy/NAME --by version`
//! prints. Shown only while more than one version served requests in the
//! window: with one, the page's figures already are that version's.
//!
//! The API has no stream grouped by version, so it is polled like the
//! edges (a fixed window's once).

use conduit_api::json::{Golden, Stat, StatRow};
use conduit_chart::format;
use conduit_chart::health::Health;
use leptos::prelude::*;

use super::window::Window;
use crate::api;
use crate::live;

#[component]
pub(crate) fn VersionsPanel(
    namespace: Memo<String>,
    name: Memo<String>,
    window: Memo<Window>,
) -> impl IntoView {
    let rows = RwSignal::new(Vec::<Version>::new());
    live::poll(
        super::REFRESH,
        move || window.with(Window::is_live),
        move || {
            let mut params = vec![("namespace", namespace.get()), ("name", name.get())];
            params.extend(window.get().api_params());
            params.push(("by", "version".into()));
            let url = api::url("/api/v1/stat", &super::pairs(&params));
            leptos::task::spawn_local(async move {
                // A failed poll keeps the last answer; the page's stream
                // already says when the API is unreachable.
                if let Ok(stat) = api::get::<Stat>(&url).await {
                    rows.try_set(serving(stat.rows));
                }
            });
        },
    );
    view! {
        <Show when=move || rows.with(|r| r.len() > 1)>
            <h2>"Versions"</h2>
            <p class="hint">
                {move || format!("More than one version of this Deployment served requests {}: each version's pods (their ", window.with(Window::describe))}
                <code>"pod_template_hash"</code>
                ") side by side."
            </p>
            <table class="metrics versions" data-testid="versions-table">
                <thead>
                    <tr>
                        <th>"Version"</th><th class="num">"Pods"</th><th class="num">"Success"</th>
                        <th class="num">"RPS"</th><th class="num">"P50"</th><th class="num">"P95"</th>
                        <th class="num">"P99"</th><th class="num">"Requests"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        rows.get()
                            .into_iter()
                            .map(|version| view! { <VersionRow version=version/> })
                            .collect_view()
                    }}
                </tbody>
            </table>
        </Show>
    }
}

/// A version that served requests in the window.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    /// `(none)` for pods that report no version.
    name: String,
    pods: u32,
    metrics: Golden,
}

fn serving(rows: Vec<StatRow>) -> Vec<Version> {
    rows.into_iter()
        .filter_map(|r| {
            let metrics = r.metrics.filter(|m| m.total() > 0)?;
            let name = r.version.filter(|v| !v.is_empty());
            Some(Version {
                name: name.unwrap_or_else(|| "(none)".into()),
                pods: r.meshed_pods,
                metrics,
            })
        })
        .collect()
}

#[component]
fn VersionRow(version: Version) -> impl IntoView {
    let Version {
        name,
        pods,
        metrics: m,
    } = version;
    let health = Health::of(Some(m.success_rate)).class();
    let key = name.clone();
    view! {
        <tr data-version=key>
            <td>{name}</td>
            <td class="num">{pods}</td>
            <td class=format!("num {health}") data-field="success">{format::percent(m.success_rate)}</td>
            <td class="num">{format::rps(m.rps)}</td>
            <td class="num">{format::latency_ms(m.latency_ms_p50)}</td>
            <td class="num">{format::latency_ms(m.latency_ms_p95)}</td>
            <td class="num">{format::latency_ms(m.latency_ms_p99)}</td>
            <td class="num" data-field="requests">{m.total()}</td>
        </tr>
    }
}

//! The Deployment page's route table: per-route golden metrics over the
//! last minute, the routes of its service profiles first, then the path
//! templates its callers' proxies learned (`GET /api/vote/{id}`), marked
//! learned; what `conduit routes deploy/NAME` prints.
//!
//! The API has no stream for it, so it is polled like the edges (a fixed
//! window's once).

use conduit_api::json::{RouteRow, Routes};
use conduit_chart::format;
use leptos::prelude::*;

use super::window::Window;
use crate::api::{self, FetchError};
use crate::components::status::{Empty, ErrorBox};
use crate::live;

#[component]
pub(crate) fn RoutesPanel(
    namespace: Memo<String>,
    name: Memo<String>,
    window: Memo<Window>,
) -> impl IntoView {
    let answer = RwSignal::new(None::<Result<Routes, FetchError>>);
    live::poll(
        super::REFRESH,
        move || window.with(Window::is_live),
        move || {
            let w = window.get().api_params();
            let mut params = vec![("namespace", namespace.get()), ("name", name.get())];
            params.extend(w);
            let url = api::url("/api/v1/routes", &super::pairs(&params));
            leptos::task::spawn_local(async move {
                answer.try_set(Some(api::get::<Routes>(&url).await));
            });
        },
    );
    let when = move || window.with(Window::describe);
    let body = move || match answer.get() {
        None => view! { <p class="status loading">"Loading the routes…"</p> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
        Some(Ok(routes)) => view! { <RoutesTable rows=routes.rows when=when()/> }.into_any(),
    };
    view! {
        <h2>"Routes"</h2>
        <p class="hint">
            {move || format!("Requests to this Deployment per route {}: its service profiles' routes, then the path templates its callers' proxies learned.", when())}
        </p>
        {body}
    }
}

#[component]
fn RoutesTable(rows: Vec<RouteRow>, when: String) -> impl IntoView {
    if rows.iter().all(|r| r.metrics.is_none()) && !rows.iter().any(|r| r.learned) {
        return view! { <Empty><p>{format!("No route has seen a request {when}.")}</p></Empty> }
            .into_any();
    }
    let body = rows
        .into_iter()
        .map(|row| view! { <RouteRowView row=row/> })
        .collect_view();
    view! {
        <table class="metrics routes" data-testid="routes-table">
            <thead>
                <tr>
                    <th>"Route"</th><th>"Source"</th>
                    <th class="num">"Success"</th><th class="num">"RPS"</th>
                    <th class="num">"p50"</th><th class="num">"p95"</th><th class="num">"p99"</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn RouteRowView(row: RouteRow) -> impl IntoView {
    let RouteRow {
        route,
        authority,
        metrics,
        learned,
    } = row;
    let m = metrics.as_ref();
    let figure = |f: fn(&conduit_api::json::Golden) -> String| {
        m.map_or_else(|| format::MISSING.to_string(), f)
    };
    let success = figure(|m| format::percent(m.success_rate));
    let rps = m.map_or_else(|| "0".into(), |m| format::rps(m.rps));
    let p50 = figure(|m| format::latency_ms(m.latency_ms_p50));
    let p95 = figure(|m| format::latency_ms(m.latency_ms_p95));
    let p99 = figure(|m| format::latency_ms(m.latency_ms_p99));
    let source = match (learned, authority.is_empty()) {
        (true, _) => view! {
            <span class="badge learned" title="a path template the proxies learned">"learned"</span>
        }
        .into_any(),
        (false, false) => view! { <span class="profile">"profile"</span> }.into_any(),
        (false, true) => format::MISSING.into_any(),
    };
    // For tests, which read the route off the row rather than its text.
    let data_route = route.clone();
    view! {
        <tr data-testid="route-row" data-route=data_route data-learned=learned.to_string()>
            <td class="route"><code>{route}</code></td>
            <td class="source">{source}</td>
            <td class="num success">{success}</td>
            <td class="num rps">{rps}</td>
            <td class="num">{p50}</td>
            <td class="num">{p95}</td>
            <td class="num">{p99}</td>
        </tr>
    }
}

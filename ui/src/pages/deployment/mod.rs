//! One Deployment: its golden metrics now, charts of success rate,
//! request rate and latency quantiles over 5, 15 or 60 minutes, the
//! Deployments it talks to and that talk to it (with mTLS status and their
//! traffic: [`edges`], drawn by [`graph`]), its authorization policy
//! ([`authz`]), its routes, declared and learned ([`routes`]), and its top
//! paths.
//!
//! Live parts: a `stat` stream for this Deployment (numbers and chart
//! points, one a second) and a `top` stream. Edges, authorization and
//! routes have no stream in the API; they are polled every few seconds.

mod authz;
mod edges;
mod graph;
mod routes;

use std::time::Duration;

use conduit_api::json::{Golden, Stat, StatRow};
use conduit_chart::format::{self, Unit};
use conduit_chart::health::Health;
use conduit_chart::series::Range;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api;
use crate::components::chart::{Line, LineChart};
use crate::components::status::{Empty, StreamStatus};
use crate::pages::top::TopTable;
use crate::trend::Trend;
use crate::{live, paths};
use conduit_api::json::StatHistory;

use self::authz::AuthzPanel;
use self::edges::EdgesView;
use self::routes::RoutesPanel;

/// How often the views the API has no stream for are polled.
const REFRESH: Duration = Duration::from_secs(5);

#[component]
pub(crate) fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let namespace = Memo::new(move |_| params.read().get("ns").unwrap_or_default());
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    let range = Memo::new(move |_| {
        query
            .read()
            .get_str("range")
            .and_then(Range::parse)
            .unwrap_or_default()
    });

    let row = RwSignal::new(None::<StatRow>);
    let missing = RwSignal::new(false);
    let now = RwSignal::new(crate::clock::now_ms());
    let trend = RwSignal::new(Trend::default());
    let stream_url = move || {
        Some(api::url(
            "/api/v1/stat/stream",
            &[
                ("namespace", &namespace.get()),
                ("name", &name.get()),
                ("window", "1m"),
            ],
        ))
    };
    let state = live::subscribe(stream_url, "stat", move |s: Stat| {
        let r = range.get_untracked();
        trend.update(|t| {
            let m = s.rows.first().and_then(|r| r.metrics.as_ref());
            t.push(s.time_unix_ms, m, r.step_ms());
            t.trim(s.time_unix_ms - r.millis());
        });
        now.set(s.time_unix_ms);
        missing.set(s.rows.is_empty());
        row.set(s.rows.into_iter().next());
    });

    // A new Deployment or range starts from its history.
    Effect::new(move |_| {
        let (ns, n, r) = (namespace.get(), name.get(), range.get());
        trend.set(Trend::default());
        load_history(trend, ns, n, r);
    });

    let span = Memo::new(move |_| {
        let end = now.get();
        (end - range.get().millis(), end)
    });
    let success = Signal::derive(move || {
        trend.with(|t| {
            vec![Line {
                label: "success",
                class: "line-a",
                series: t.success.clone(),
            }]
        })
    });
    let rps = Signal::derive(move || {
        trend.with(|t| {
            vec![Line {
                label: "RPS",
                class: "line-a",
                series: t.rps.clone(),
            }]
        })
    });
    let latency = Signal::derive(move || {
        trend.with(|t| {
            vec![
                Line {
                    label: "p50",
                    class: "line-a",
                    series: t.p50.clone(),
                },
                Line {
                    label: "p95",
                    class: "line-b",
                    series: t.p95.clone(),
                },
                Line {
                    label: "p99",
                    class: "line-c",
                    series: t.p99.clone(),
                },
            ]
        })
    });

    let range_links = move || {
        Range::ALL
            .into_iter()
            .map(|r| {
                let href = api::url(
                    &paths::deployment(&namespace.get(), &name.get()),
                    &[("range", r.as_str())],
                );
                let class = if r == range.get() {
                    "chip active"
                } else {
                    "chip"
                };
                view! { <a class=class href=href data-range=r.as_str()>{r.as_str()}</a> }
            })
            .collect_view()
    };

    view! {
        <section class="page deployment">
            <header class="page-head">
                <p class="crumbs">
                    <a href="/">"Deployments"</a>
                    " / "
                    <a href=move || api::url("/", &[("ns", &namespace.get())])>{namespace}</a>
                </p>
                <h1 data-testid="deployment-title">{name}</h1>
                <p class="actions">
                    <a class="button" href=move || paths::tap(&namespace.get(), &name.get())>"Tap"</a>
                    <a class="button" href=move || paths::top(&namespace.get(), &name.get())>"Top"</a>
                </p>
            </header>
            <StreamStatus state=state what="metrics"/>
            <Show
                when=move || !missing.get()
                fallback=move || view! {
                    <Empty>
                        <p>{format!("No Deployment {}/{} is known to Conduit.", namespace.get(), name.get())}</p>
                        <p><a href="/">"See all Deployments"</a></p>
                    </Empty>
                }
            >
                <Tiles row=row/>
                <nav class="chips ranges">"Range: " {range_links}</nav>
                <div class="charts">
                    <LineChart title="Success rate" testid="chart-success" unit=Unit::Percent lines=success span=span/>
                    <LineChart title="Requests per second" testid="chart-rps" unit=Unit::Rps lines=rps span=span/>
                    <LineChart title="Latency" testid="chart-latency" unit=Unit::Millis lines=latency span=span/>
                </div>
                <EdgesView namespace=namespace name=name/>
                <RoutesPanel namespace=namespace name=name/>
                <AuthzPanel namespace=namespace name=name/>
                <h2>"Top paths"</h2>
                <TopTable namespace=namespace name=name limit=10/>
            </Show>
        </section>
    }
}

/// The Deployment's numbers over the last minute, as large figures.
#[component]
fn Tiles(row: RwSignal<Option<StatRow>>) -> impl IntoView {
    let text = move |f: fn(&StatRow) -> String| {
        Signal::derive(move || {
            row.with(|r| r.as_ref().map_or_else(|| format::MISSING.to_string(), f))
        })
    };
    let health = Signal::derive(move || {
        row.with(|r| {
            r.as_ref().map_or("", |r| {
                Health::of(r.metrics.as_ref().map(|m| m.success_rate)).class()
            })
        })
    });
    view! {
        <div class="tiles">
            <Tile label="success" class=health value=text(|r| metric(r, |m| format::percent(m.success_rate)))/>
            <Tile label="rps" value=text(|r| r.metrics.as_ref().map_or_else(|| "0".into(), |m| format::rps(m.rps)))/>
            <Tile label="p50" value=text(|r| metric(r, |m| format::latency_ms(m.latency_ms_p50)))/>
            <Tile label="p95" value=text(|r| metric(r, |m| format::latency_ms(m.latency_ms_p95)))/>
            <Tile label="p99" value=text(|r| metric(r, |m| format::latency_ms(m.latency_ms_p99)))/>
            <Tile label="meshed" value=text(|r| format!("{}/{}", r.meshed_pods, r.total_pods))/>
            <Tile label="tcp" value=text(|r| r.tcp_open_connections.to_string())/>
        </div>
    }
}

/// `f` of the row's golden metrics; `—` without traffic.
fn metric(r: &StatRow, f: fn(&Golden) -> String) -> String {
    r.metrics
        .as_ref()
        .map_or_else(|| format::MISSING.to_string(), f)
}

#[component]
fn Tile(
    label: &'static str,
    value: Signal<String>,
    #[prop(optional)] class: Option<Signal<&'static str>>,
) -> impl IntoView {
    view! {
        <div class=move || format!("tile {}", class.map_or("", |c| c.get()))>
            <div class="tile-label">{label}</div>
            <div class="tile-value" data-tile=label>{value}</div>
        </div>
    }
}

fn load_history(trend: RwSignal<Trend>, namespace: String, name: String, range: Range) {
    let url = api::url(
        "/api/v1/stat/history",
        &[
            ("namespace", &namespace),
            ("name", &name),
            ("range", range.as_str()),
            ("step", range.step()),
            ("window", "1m"),
        ],
    );
    leptos::task::spawn_local(async move {
        let Ok(history) = api::get::<StatHistory>(&url).await else {
            return;
        };
        if let Some(s) = history
            .series
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
        {
            trend.try_update(|t| t.set_history(&s.points));
        }
    });
}

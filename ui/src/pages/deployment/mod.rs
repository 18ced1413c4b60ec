//! One Deployment: its golden metrics now, charts of success rate,
//! request rate and latency quantiles over 5, 15 or 60 minutes, or all of
//! it over a window of the past ([`window`]: a still picture), the
//! Deployments it talks to and that talk to it (with mTLS status and their
//! traffic: [`edges`], drawn by [`graph`]), its authorization policy
//! ([`authz`]), its routes, declared and learned ([`routes`]), its
//! versions side by side during a rollout ([`versions`]), and its top
//! paths. A click (or a drag) on the success or latency chart opens the
//! recorded requests behind it ([`recorded`]).
//!
//! Live parts: a `stat` stream for this Deployment (numbers and chart
//! points, one a second) and a `top` stream. Edges, authorization and
//! routes have no stream in the API; they are polled every few seconds.
//! A fixed window has neither streams nor polls: each view asks once.

mod authz;
mod edges;
mod graph;
mod recorded;
mod routes;
mod versions;
mod window;

use std::time::Duration;

use conduit_api::json::{Golden, Stat, StatRow};
use conduit_api::time_range::TimeRange;
use conduit_chart::format::{self, Unit};
use conduit_chart::health::Health;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api;
use crate::components::chart::{Line, LineChart, Pick};
use crate::components::status::{Empty, StreamStatus};
use crate::pages::top::TopTable;
use crate::trend::Trend;
use crate::{clock, live, paths};
use conduit_api::json::StatHistory;

use self::authz::AuthzPanel;
use self::edges::EdgesView;
use self::recorded::{Behind, LIVE_POINT_MS, Picked, RecordedRequests};
use self::routes::RoutesPanel;
use self::versions::VersionsPanel;
use self::window::{FixedNotice, Window, WindowPicker};

/// How often the views the API has no stream for are polled.
const REFRESH: Duration = Duration::from_secs(5);

/// Points a fixed window's charts draw, about (live ones draw 60).
const FIXED_POINTS: u64 = 60;

#[component]
pub(crate) fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let namespace = Memo::new(move |_| params.read().get("ns").unwrap_or_default());
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    // Resolved once per URL: a window typed as how long ago stays put
    // while the page shows it.
    let window = Memo::new(move |_| query.with(|q| Window::of_query(q, clock::now_ms())));
    let is_live = Memo::new(move |_| window.with(Window::is_live));
    let page = Signal::derive(move || paths::deployment(&namespace.get(), &name.get()));

    let row = RwSignal::new(None::<StatRow>);
    let missing = RwSignal::new(false);
    let now = RwSignal::new(clock::now_ms());
    let trend = RwSignal::new(Trend::default());
    // A window that has ended needs no stream: without a URL the stream
    // is closed, not merely ignored.
    let stream_url = move || {
        is_live.get().then(|| {
            api::url(
                "/api/v1/stat/stream",
                &[
                    ("namespace", &namespace.get()),
                    ("name", &name.get()),
                    ("window", "1m"),
                ],
            )
        })
    };
    let state = live::subscribe(stream_url, "stat", move |s: Stat| {
        let Window::Live(r) = window.get_untracked() else {
            return;
        };
        trend.update(|t| {
            let m = s.rows.first().and_then(|r| r.metrics.as_ref());
            t.push(s.time_unix_ms, m, r.step_ms());
            t.trim(s.time_unix_ms - r.millis());
        });
        now.set(s.time_unix_ms);
        missing.set(s.rows.is_empty());
        row.set(s.rows.into_iter().next());
    });

    // A new Deployment or window starts from its history; a fixed window's
    // figures are asked for once.
    let fixed_error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let (ns, n, w) = (namespace.get(), name.get(), window.get());
        trend.set(Trend::default());
        row.set(None);
        fixed_error.set(None);
        missing.set(false);
        if let Window::Fixed(r) = &w {
            load_fixed(row, fixed_error, ns.clone(), n.clone(), r);
        }
        load_history(trend, ns, n, &w);
    });

    let span = Memo::new(move |_| match window.get() {
        Window::Fixed(r) => (r.start_ms, r.end_ms),
        Window::Live(range) => {
            let end = now.get();
            (end - range.millis(), end)
        }
        Window::Invalid(_) => (now.get(), now.get()),
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

    let picked = RwSignal::new(None::<Picked>);
    let point_ms = move || match window.get_untracked() {
        Window::Fixed(r) => fixed_step_secs(&r) as i64 * 1000,
        Window::Live(_) | Window::Invalid(_) => LIVE_POINT_MS,
    };
    let pick = move |behind| {
        Callback::new(move |p: Pick| picked.set(Some(Picked::new(behind, p, point_ms()))))
    };

    let window_error = move || match window.get() {
        Window::Invalid(why) => Some(why),
        _ => fixed_error.get(),
    };
    // A fixed window without a request says so, rather than showing
    // figures of nothing.
    let no_traffic =
        move || !is_live.get() && row.with(|r| r.as_ref().is_some_and(|r| r.metrics.is_none()));
    let figures = move || {
        if no_traffic() {
            let text = format!(
                "No requests reached {} {}.",
                name.get(),
                window.with(Window::describe)
            );
            return view! { <Empty><p data-testid="no-traffic">{text}</p></Empty> }.into_any();
        }
        view! { <Tiles row=row/> }.into_any()
    };
    let top = move || {
        if is_live.get() {
            return view! { <TopTable namespace=namespace name=name limit=10/> }.into_any();
        }
        view! { <p class="hint">"Top paths are live only: back to live to see them."</p> }
            .into_any()
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
            <WindowPicker window=window page=page/>
            <FixedNotice window=window page=page/>
            <Show when=move || is_live.get()>
                <StreamStatus state=state what="metrics"/>
            </Show>
            {move || window_error().map(|why| view! {
                <p class="status error" role="alert" data-testid="window-error">{why}</p>
            })}
            <Show
                when=move || !missing.get() && window_error().is_none()
                fallback=move || view! {
                    <Show when=move || missing.get()>
                        <Empty>
                            <p>{format!("No Deployment {}/{} is known to Conduit.", namespace.get(), name.get())}</p>
                            <p><a href="/">"See all Deployments"</a></p>
                        </Empty>
                    </Show>
                }
            >
                {figures}
                <div class="charts">
                    <LineChart title="Success rate" testid="chart-success" unit=Unit::Percent lines=success span=span
                        on_pick=pick(Behind::Failures)/>
                    <LineChart title="Requests per second" testid="chart-rps" unit=Unit::Rps lines=rps span=span/>
                    <LineChart title="Latency" testid="chart-latency" unit=Unit::Millis lines=latency span=span
                        on_pick=pick(Behind::SlowRequests)/>
                </div>
                <RecordedRequests namespace=namespace name=name picked=picked/>
                <VersionsPanel namespace=namespace name=name window=window/>
                <EdgesView namespace=namespace name=name window=window/>
                <RoutesPanel namespace=namespace name=name window=window/>
                <AuthzPanel namespace=namespace name=name window=window/>
                <h2>"Top paths"</h2>
                {top}
            </Show>
        </section>
    }
}

/// `(key, value)` pairs as [`api::url`] takes them.
fn pairs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The Deployment's figures over a fixed window, once; the API's error
/// (a window beyond the store's retention, an unknown Deployment) in
/// their place.
fn load_fixed(
    row: RwSignal<Option<StatRow>>,
    error: RwSignal<Option<String>>,
    namespace: String,
    name: String,
    range: &TimeRange,
) {
    let mut params = vec![("namespace", namespace), ("name", name)];
    params.extend(Window::Fixed(*range).api_params());
    let url = api::url("/api/v1/stat", &pairs(&params));
    leptos::task::spawn_local(async move {
        match api::get::<Stat>(&url).await {
            Ok(s) => {
                row.try_set(s.rows.into_iter().next());
            }
            Err(e) => {
                error.try_set(Some(e.to_string()));
            }
        }
    });
}

/// The Deployment's numbers over the window (live: the last minute), as
/// large figures.
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
            <Tile label="requests" value=text(|r| format::count(r.metrics.as_ref().map_or(0, Golden::total)))/>
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

fn load_history(trend: RwSignal<Trend>, namespace: String, name: String, window: &Window) {
    let mut params = vec![("namespace", namespace.clone()), ("name", name.clone())];
    match window {
        // Each point covers the minute before it, as the live points do.
        Window::Live(range) => params.extend([
            ("range", range.as_str().to_string()),
            ("step", range.step().to_string()),
            ("window", "1m".to_string()),
        ]),
        // Each point covers its own step: together they are the window,
        // none reaching before it.
        Window::Fixed(r) => {
            let step = conduit_api::duration::format(Duration::from_secs(fixed_step_secs(r)));
            params.extend(window.api_params());
            params.extend([("step", step.clone()), ("window", step)]);
        }
        Window::Invalid(_) => return,
    }
    let url = api::url("/api/v1/stat/history", &pairs(&params));
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

/// About 60 points across a fixed window, whole seconds apart.
fn fixed_step_secs(r: &TimeRange) -> u64 {
    (r.len().as_secs() / FIXED_POINTS).max(1)
}

//! The overview: every Deployment of every namespace with its golden
//! metrics over the last minute, live, sortable, with a request-rate
//! sparkline per row.
//!
//! The table is filled from one `stat` stream over all namespaces (the
//! numbers of `conduit stat deploy --all-namespaces`); the sparklines start
//! from `/api/v1/stat/history` and grow with each event. Namespace filter
//! and sort order live in the URL, so a view can be linked to.

use std::collections::BTreeMap;

use conduit_api::json::{Stat, StatRow};
use conduit_chart::format;
use conduit_chart::order::{self, Direction};
use conduit_chart::series::Range;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::components::metric::GoldenCells;
use crate::components::sparkline::Sparkline;
use crate::components::status::{Empty, StreamStatus};
use crate::trend::Trend;
use crate::{api, live, paths};
use conduit_api::json::StatHistory;

/// How far back the sparklines reach.
const TREND_RANGE: Range = Range::FifteenMinutes;

/// Columns the table sorts by, as the URL names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Namespace,
    Name,
    Meshed,
    Success,
    Rps,
    P50,
    P95,
    P99,
    Tcp,
}

impl Column {
    const ALL: [Column; 9] = [
        Self::Namespace,
        Self::Name,
        Self::Meshed,
        Self::Success,
        Self::Rps,
        Self::P50,
        Self::P95,
        Self::P99,
        Self::Tcp,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Name => "name",
            Self::Meshed => "meshed",
            Self::Success => "success",
            Self::Rps => "rps",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Tcp => "tcp",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Name => "Deployment",
            Self::Meshed => "Meshed",
            Self::Success => "Success",
            Self::Rps => "RPS",
            Self::P50 => "P50",
            Self::P95 => "P95",
            Self::P99 => "P99",
            Self::Tcp => "TCP",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == s)
    }

    /// Numbers read best largest first; names alphabetically.
    fn default_direction(self) -> Direction {
        match self {
            Self::Namespace | Self::Name => Direction::Ascending,
            _ => Direction::Descending,
        }
    }

    fn compare(self, a: &StatRow, b: &StatRow, d: Direction) -> std::cmp::Ordering {
        let metric =
            |r: &StatRow, f: fn(&conduit_api::json::Golden) -> f64| r.metrics.as_ref().map(f);
        match self {
            Self::Namespace => order::text(&a.namespace, &b.namespace, d)
                .then_with(|| order::text(&a.name, &b.name, Direction::Ascending)),
            Self::Name => order::text(&a.name, &b.name, d),
            Self::Meshed => order::numbers(
                Some(f64::from(a.meshed_pods)),
                Some(f64::from(b.meshed_pods)),
                d,
            ),
            Self::Success => order::numbers(
                metric(a, |m| m.success_rate),
                metric(b, |m| m.success_rate),
                d,
            ),
            // No traffic is a rate of zero, not an unknown one.
            Self::Rps => order::numbers(
                Some(metric(a, |m| m.rps).unwrap_or(0.0)),
                Some(metric(b, |m| m.rps).unwrap_or(0.0)),
                d,
            ),
            Self::P50 => order::numbers(
                metric(a, |m| m.latency_ms_p50),
                metric(b, |m| m.latency_ms_p50),
                d,
            ),
            Self::P95 => order::numbers(
                metric(a, |m| m.latency_ms_p95),
                metric(b, |m| m.latency_ms_p95),
                d,
            ),
            Self::P99 => order::numbers(
                metric(a, |m| m.latency_ms_p99),
                metric(b, |m| m.latency_ms_p99),
                d,
            ),
            Self::Tcp => order::numbers(
                Some(a.tcp_open_connections as f64),
                Some(b.tcp_open_connections as f64),
                d,
            ),
        }
    }
}

type Key = (String, String);

#[component]
pub(crate) fn Overview() -> impl IntoView {
    let query = use_query_map();
    let namespace = Memo::new(move |_| query.read().get("ns").unwrap_or_default());
    let column = Memo::new(move |_| {
        query
            .read()
            .get_str("sort")
            .and_then(Column::parse)
            .unwrap_or(Column::Namespace)
    });
    let direction = Memo::new(move |_| {
        query
            .read()
            .get_str("dir")
            .and_then(Direction::parse)
            .unwrap_or_else(|| column.get().default_direction())
    });

    let stat = RwSignal::new(None::<Stat>);
    let trends = RwSignal::new(BTreeMap::<Key, Trend>::new());
    let state = live::subscribe(
        || {
            Some(api::url(
                "/api/v1/stat/stream",
                &[("all_namespaces", "true"), ("window", "1m")],
            ))
        },
        "stat",
        move |s: Stat| {
            trends.update(|all| {
                for row in &s.rows {
                    let t = all
                        .entry((row.namespace.clone(), row.name.clone()))
                        .or_default();
                    t.push(s.time_unix_ms, row.metrics.as_ref(), TREND_RANGE.step_ms());
                    t.trim(s.time_unix_ms - TREND_RANGE.millis());
                }
            });
            stat.set(Some(s));
        },
    );
    load_history(trends);
    mark_first_row(stat);

    let namespaces = Memo::new(move |_| {
        stat.with(|s| {
            let mut all: Vec<String> = s
                .iter()
                .flat_map(|s| s.rows.iter().map(|r| r.namespace.clone()))
                .collect();
            all.dedup();
            all.sort();
            all.dedup();
            all
        })
    });
    let rows = Memo::new(move |_| {
        let ns = namespace.get();
        let (c, d) = (column.get(), direction.get());
        stat.with(|s| {
            let mut rows: Vec<StatRow> = s
                .iter()
                .flat_map(|s| s.rows.iter())
                .filter(|r| ns.is_empty() || r.namespace == ns)
                .cloned()
                .collect();
            rows.sort_by(|a, b| c.compare(a, b, d));
            rows
        })
    });
    let span = Memo::new(move |_| {
        let end = stat.with(|s| {
            s.as_ref()
                .map_or_else(crate::clock::now_ms, |s| s.time_unix_ms)
        });
        (end - TREND_RANGE.millis(), end)
    });

    let sort_link = move |c: Column| {
        let d = if column.get() == c {
            direction.get().flip()
        } else {
            c.default_direction()
        };
        api::url(
            "/",
            &[
                ("ns", &namespace.get()),
                ("sort", c.key()),
                ("dir", d.as_str()),
            ],
        )
    };
    let header = move || {
        Column::ALL
            .into_iter()
            .map(|c| {
                let marker = move || match (column.get() == c, direction.get()) {
                    (true, Direction::Ascending) => " ▲",
                    (true, Direction::Descending) => " ▼",
                    (false, _) => "",
                };
                let class = if matches!(c, Column::Namespace | Column::Name) { "" } else { "num" };
                view! {
                    <th class=class aria-sort=move || (column.get() == c).then(|| match direction.get() {
                        Direction::Ascending => "ascending",
                        Direction::Descending => "descending",
                    })>
                        <a href=move || sort_link(c) data-sort=c.key()>{c.title()}{marker}</a>
                    </th>
                }
            })
            .collect_view()
    };

    let filter = move || {
        let current = namespace.get();
        let chip = |label: String, value: String| {
            let active = value == current;
            view! {
                <a
                    class=if active { "chip active" } else { "chip" }
                    href=api::url("/", &[("ns", &value)])
                >
                    {label}
                </a>
            }
        };
        let mut chips = vec![chip("All namespaces".into(), String::new())];
        chips.extend(namespaces.get().into_iter().map(|ns| chip(ns.clone(), ns)));
        chips.collect_view()
    };

    let body = move || {
        let rows = rows.get();
        if rows.is_empty() {
            return None;
        }
        Some(
            rows.into_iter()
                .map(|r| {
                    let key = (r.namespace.clone(), r.name.clone());
                    let trend = Signal::derive(move || {
                        trends.with(|t| t.get(&key).map(|t| t.rps.clone()).unwrap_or_default())
                    });
                    let title = format!("requests per second, last {}", TREND_RANGE.as_str());
                    view! {
                        <tr data-testid="deployment-row" data-namespace=r.namespace.clone() data-name=r.name.clone()>
                            <td>{r.namespace.clone()}</td>
                            <td>
                                <a class="name" href=paths::deployment(&r.namespace, &r.name)>{r.name.clone()}</a>
                            </td>
                            <td class="num meshed">{format!("{}/{}", r.meshed_pods, r.total_pods)}</td>
                            <GoldenCells m=r.metrics.clone()/>
                            <td class="num tcp">{r.tcp_open_connections}</td>
                            <td class="trend"><Sparkline series=trend span=span title=title/></td>
                            <td class="actions">
                                <a href=paths::tap(&r.namespace, &r.name)>"tap"</a>
                                " "
                                <a href=paths::top(&r.namespace, &r.name)>"top"</a>
                            </td>
                        </tr>
                    }
                })
                .collect_view(),
        )
    };

    view! {
        <section class="page overview">
            <header class="page-head">
                <h1>"Deployments"</h1>
                <p class="hint">
                    "Golden metrics of inbound traffic over the last minute, updated every second."
                </p>
            </header>
            <nav class="chips">{filter}</nav>
            <StreamStatus state=state what="Deployments"/>
            <table
                class="metrics"
                data-testid="overview-table"
                data-updated=move || stat.with(|s| s.as_ref().map(|s| s.time_unix_ms))
            >
                <thead>
                    <tr>{header}<th>"Trend (" {TREND_RANGE.as_str()} ")"</th><th></th></tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
            <Show when=move || stat.with(|s| s.as_ref().is_some_and(|s| s.rows.is_empty()))>
                <Empty>
                    <p>"No Deployments found."</p>
                    <p>
                        "Conduit lists the Deployments its discovery knows and those whose proxies report. "
                        "Run " <code>"conduit check"</code> " to see what is missing."
                    </p>
                </Empty>
            </Show>
            <p class="footnote">
                {move || stat.with(|s| s.as_ref().map(|s| format!(
                    "Updated {} · window {}",
                    format::clock(s.time_unix_ms, crate::clock::utc_offset_ms()),
                    s.window
                )))}
            </p>
        </section>
    }
}

/// Fills the sparklines' past once; without a history endpoint (an older
/// controller) they simply start empty and grow.
fn load_history(trends: RwSignal<BTreeMap<Key, Trend>>) {
    let url = api::url(
        "/api/v1/stat/history",
        &[
            ("all_namespaces", "true"),
            ("range", TREND_RANGE.as_str()),
            ("step", TREND_RANGE.step()),
            ("window", "1m"),
        ],
    );
    leptos::task::spawn_local(async move {
        let Ok(history) = api::get::<StatHistory>(&url).await else {
            return;
        };
        trends.try_update(|all| {
            for s in &history.series {
                all.entry((s.namespace.clone(), s.name.clone()))
                    .or_default()
                    .set_history(&s.points);
            }
        });
    });
}

/// Marks the moment the first data row is on screen
/// (`performance.getEntriesByName("conduit:first-row")`), which the `ui`
/// load test reads.
fn mark_first_row(stat: RwSignal<Option<Stat>>) {
    Effect::new(move |done: Option<bool>| {
        if done == Some(true) {
            return true;
        }
        let has_rows = stat.with(|s| s.as_ref().is_some_and(|s| !s.rows.is_empty()));
        if has_rows {
            // The effect runs after the DOM update that rendered the rows.
            if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
                let _ = p.mark("conduit:first-row");
            }
        }
        has_rows
    });
}

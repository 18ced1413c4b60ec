//! Tap: a Deployment's requests as they happen, like `conduit tap`, and a
//! search over the past ones in the store's tap index.
//!
//! The filters (path prefix, method, destination, authority) are part of
//! the URL; changing them re-opens the stream with the new filter, so the
//! controller (and the proxies behind it) do the filtering. Pausing keeps
//! the stream open and holds new events back until resumed, so nothing is
//! missed while reading.

use conduit_api::json::{TapEvent, TapSearch};
use conduit_chart::format;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use crate::api::{self, FetchError};
use crate::components::status::{Empty, ErrorBox, StreamStatus};
use crate::{clock, live, paths};

/// Rows kept on screen (and held while paused).
const KEEP: usize = 300;

const METHODS: [&str; 8] = [
    "", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
];
const SINCE: [&str; 5] = ["5m", "15m", "1h", "6h", "24h"];

/// The tap parameters of the URL.
#[derive(Clone, Debug, Default, PartialEq)]
struct Filter {
    path: String,
    method: String,
    to: String,
    authority: String,
}

impl Filter {
    fn params(&self) -> [(&'static str, &str); 4] {
        [
            ("path", &self.path),
            ("method", &self.method),
            ("to", &self.to),
            ("authority", &self.authority),
        ]
    }
}

#[component]
pub(crate) fn TapPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let navigate = use_navigate();
    let namespace = Memo::new(move |_| params.read().get("ns").unwrap_or_default());
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    let filter = Memo::new(move |_| {
        let q = query.read();
        let get = |k: &str| q.get(k).unwrap_or_default();
        Filter {
            path: get("path"),
            method: get("method"),
            to: get("to"),
            authority: get("authority"),
        }
    });
    let search = Memo::new(move |_| {
        let q = query.read();
        (q.get("q"), q.get("since"))
    });

    // What the form shows; the URL changes (and the stream follows) on
    // submit. A URL change from elsewhere (back button) resets the form.
    let draft = RwSignal::new(Filter::default());
    let draft_query = RwSignal::new(String::new());
    let draft_since = RwSignal::new("15m".to_string());
    Effect::new(move |_| {
        draft.set(filter.get());
        let (q, since) = search.get();
        draft_query.set(q.unwrap_or_default());
        draft_since.set(since.unwrap_or_else(|| "15m".into()));
    });

    let page_url = move |f: &Filter, search: Option<(&str, &str)>| {
        let mut params: Vec<(&str, &str)> = f.params().to_vec();
        if let Some((q, since)) = search {
            params.extend([("q", q), ("since", since)]);
        }
        api::url(
            &paths::tap(&namespace.get_untracked(), &name.get_untracked()),
            &params,
        )
    };
    let apply = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            navigate(&page_url(&draft.get_untracked(), None), Default::default());
        }
    };
    let run_search = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (q, since) = (draft_query.get_untracked(), draft_since.get_untracked());
        navigate(
            &page_url(&filter.get_untracked(), Some((&q, &since))),
            Default::default(),
        );
    };

    let events = RwSignal::new(Vec::<TapEvent>::new());
    let held = RwSignal::new(Vec::<TapEvent>::new());
    let paused = RwSignal::new(false);
    let seen = RwSignal::new(0u64);
    let stream_url = move || {
        let f = filter.get();
        let mut params: Vec<(&str, &str)> = vec![];
        let (ns, n) = (namespace.get(), name.get());
        params.extend([("namespace", ns.as_str()), ("name", n.as_str())]);
        params.extend(f.params());
        Some(api::url("/api/v1/tap/stream", &params))
    };
    // A new filter is a new stream: start the list afresh.
    Effect::new(move |_| {
        filter.track();
        events.set(Vec::new());
        held.set(Vec::new());
        seen.set(0);
    });
    let state = live::subscribe(stream_url, "tap", move |e: TapEvent| {
        seen.update(|n| *n += 1);
        let target = if paused.get_untracked() { held } else { events };
        target.update(|list| {
            list.insert(0, e);
            list.truncate(KEEP);
        });
    });
    let toggle = move |_| {
        if paused.get_untracked() {
            let mut newer = held.try_update(std::mem::take).unwrap_or_default();
            events.update(|list| {
                newer.append(list);
                newer.truncate(KEEP);
                *list = newer;
            });
        }
        paused.update(|p| *p = !*p);
    };

    let results = RwSignal::new(None::<Result<TapSearch, FetchError>>);
    let searching = RwSignal::new(false);
    Effect::new(move |_| {
        let (q, since) = search.get();
        if q.is_none() && since.is_none() {
            results.set(None);
            return;
        }
        let f = filter.get();
        let (ns, n) = (namespace.get(), name.get());
        let since = since.unwrap_or_else(|| "15m".into());
        let q = q.unwrap_or_default();
        let mut params: Vec<(&str, &str)> = vec![
            ("namespace", &ns),
            ("name", &n),
            ("query", &q),
            ("since", &since),
            ("limit", "100"),
        ];
        params.extend(f.params());
        let url = api::url("/api/v1/tap/search", &params);
        searching.set(true);
        leptos::task::spawn_local(async move {
            let r = api::get::<TapSearch>(&url).await;
            searching.try_set(false);
            results.try_set(Some(r));
        });
    });

    let method_options = move || {
        METHODS
            .into_iter()
            .map(|m| {
                let label = if m.is_empty() { "any method" } else { m };
                view! { <option value=m selected=move || draft.with(|d| d.method == m)>{label}</option> }
            })
            .collect_view()
    };
    let since_options = move || {
        SINCE
            .into_iter()
            .map(|s| view! { <option value=s selected=move || draft_since.get() == s>{format!("last {s}")}</option> })
            .collect_view()
    };

    view! {
        <section class="page tap">
            <header class="page-head">
                <p class="crumbs">
                    <a href="/">"Deployments"</a>
                    " / "
                    <a href=move || paths::deployment(&namespace.get(), &name.get())>
                        {move || format!("{}/{}", namespace.get(), name.get())}
                    </a>
                </p>
                <h1>"Tap"</h1>
            </header>
            <form class="filters" on:submit=apply data-testid="tap-filters">
                <label>"Path prefix"
                    <input name="path" placeholder="/api" prop:value=move || draft.with(|d| d.path.clone())
                        on:input=move |ev| draft.update(|d| d.path = event_target_value(&ev))/>
                </label>
                <label>"Method"
                    <select name="method" on:change=move |ev| draft.update(|d| d.method = event_target_value(&ev))>
                        {method_options}
                    </select>
                </label>
                <label>"To Deployment"
                    <input name="to" placeholder="namespace/name" prop:value=move || draft.with(|d| d.to.clone())
                        on:input=move |ev| draft.update(|d| d.to = event_target_value(&ev))/>
                </label>
                <label>"Authority"
                    <input name="authority" placeholder="host:port" prop:value=move || draft.with(|d| d.authority.clone())
                        on:input=move |ev| draft.update(|d| d.authority = event_target_value(&ev))/>
                </label>
                <button type="submit">"Apply"</button>
            </form>
            <div class="toolbar">
                <button data-testid="tap-pause" on:click=toggle>
                    {move || if paused.get() { "Resume" } else { "Pause" }}
                </button>
                <button on:click=move |_| { events.set(Vec::new()); held.set(Vec::new()); }>"Clear"</button>
                <span class="hint" data-testid="tap-count">
                    {move || {
                        let waiting = held.with(Vec::len);
                        let mut s = format!("{} requests seen", seen.get());
                        if paused.get() {
                            s.push_str(&format!(" · paused, {waiting} waiting"));
                        }
                        s
                    }}
                </span>
            </div>
            <StreamStatus state=state what="live requests"/>
            <TapTable events=Signal::derive(move || events.get()) testid="tap-live"/>
            <Show when=move || { state.get() == live::StreamState::Live && events.with(Vec::is_empty) && !paused.get() }>
                <Empty><p>"Waiting for requests that match the filter…"</p></Empty>
            </Show>

            <h2>"Search history"</h2>
            <form class="filters" on:submit=run_search data-testid="tap-search">
                <label class="wide">"Query"
                    <input name="q" placeholder="path:/api AND status:500" prop:value=move || draft_query.get()
                        on:input=move |ev| draft_query.set(event_target_value(&ev))/>
                </label>
                <label>"Since"
                    <select name="since" on:change=move |ev| draft_since.set(event_target_value(&ev))>
                        {since_options}
                    </select>
                </label>
                <button type="submit">"Search"</button>
            </form>
            {move || {
                if searching.get() {
                    return view! { <p class="status loading">"Searching…"</p> }.into_any();
                }
                match results.get() {
                    None => view! { <p class="hint">"Searches the store's index of past requests (the filters above apply too)."</p> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
                    Some(Ok(r)) if r.events.is_empty() => view! { <Empty><p>"No request matched."</p></Empty> }.into_any(),
                    Some(Ok(r)) => {
                        let n = r.events.len();
                        view! {
                            <p class="hint">{format!("{n} requests, newest first")}</p>
                            <TapTable events=Signal::derive(move || r.events.clone()) testid="tap-history"/>
                        }
                        .into_any()
                    }
                }
            }}
        </section>
    }
}

/// Tap events as table rows.
#[component]
pub(crate) fn TapTable(
    #[prop(into)] events: Signal<Vec<TapEvent>>,
    testid: &'static str,
) -> impl IntoView {
    let offset = clock::utc_offset_ms();
    let rows = move || {
        events
            .get()
            .into_iter()
            .map(|e| {
                let peer = |p: &conduit_api::json::Peer| {
                    p.deployment
                        .as_ref()
                        .map_or_else(|| p.address.clone(), ToString::to_string)
                };
                let status = match (e.http_status, e.grpc_status) {
                    (0, _) => "no response".to_string(),
                    (h, Some(g)) => format!("{h} grpc:{g}"),
                    (h, None) => h.to_string(),
                };
                // The mesh's own failures: the closed-set reason (the
                // `error_reason` label's value), with the proxy's words on
                // hover; an older proxy's event has only the words.
                let why = if e.error_reason.is_empty() { e.error.clone() } else { e.error_reason.clone() };
                let reason = (!why.is_empty()).then(|| view! {
                    " "<span class="error-reason" data-testid="error-reason" title=e.error.clone()>{why}</span>
                });
                let failed = !e.error.is_empty()
                    || e.http_status == 0
                    || e.http_status >= 500
                    || e.grpc_status.is_some_and(|g| g != 0);
                view! {
                    <tr data-testid="tap-row" class=if failed { "failed" } else { "" }>
                        <td class="time">{format::clock(e.request_start_unix_us / 1_000, offset)}</td>
                        <td>{e.direction.clone()}</td>
                        <td>{peer(&e.source)}" → "{peer(&e.destination)}</td>
                        <td class="tls">{if e.tls { "🔒" } else { "" }}</td>
                        <td class="method">{e.method.clone()}</td>
                        <td class="path" title=e.authority.clone()><code>{e.path.clone()}</code></td>
                        <td class="status">{status}{reason}</td>
                        <td class="num">{format::latency_us(e.response_latency_us)}</td>
                        <td class="num">{format::bytes(e.response_bytes)}</td>
                        <td class="kept">{e.kept.clone()}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <table class="metrics tap-events" data-testid=testid>
            <thead>
                <tr>
                    <th>"Time"</th><th>"Direction"</th><th>"Source → Destination"</th><th>"TLS"</th>
                    <th>"Method"</th><th>"Path"</th><th>"Status"</th><th class="num">"Latency"</th>
                    <th class="num">"Bytes"</th><th title="Why the request is in the tap history">"Kept"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

//! The recorded requests behind a point or a range of a chart: the tap
//! history's events of this Deployment in that time, those the flight
//! recorder kept as failed (success chart) or slow (latency chart), each
//! with why it was kept, its status and latency.

use conduit_api::json::TapSearch;
use conduit_chart::format;
use leptos::prelude::*;

use crate::api::{self, FetchError};
use crate::clock;
use crate::components::chart::Pick;
use crate::components::status::{Empty, ErrorBox};
use crate::pages::tap::TapTable;

/// A live chart point stands for the stat window that ends at it.
pub(super) const LIVE_POINT_MS: i64 = 60_000;

/// Requests listed at most.
const LIMIT: &str = "100";

/// Which recorded requests a chart leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behind {
    /// The success chart: requests that failed.
    Failures,
    /// The latency chart: requests slower than the slow threshold.
    SlowRequests,
}

impl Behind {
    fn query(self) -> &'static str {
        match self {
            Self::Failures => "kept:failed",
            Self::SlowRequests => "kept:slow",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Failures => "Failed requests",
            Self::SlowRequests => "Slow requests",
        }
    }
}

/// What a chart picked, as a time span (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Picked {
    pub(crate) behind: Behind,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl Picked {
    /// What `pick` on a chart whose points each cover the `point_ms`
    /// before them stands for.
    pub(crate) fn new(behind: Behind, pick: Pick, point_ms: i64) -> Self {
        let (start, end) = match pick {
            Pick::Point(t) => (t - point_ms, t),
            Pick::Range(a, b) => (a, b),
        };
        Self { behind, start, end }
    }
}

#[component]
pub(crate) fn RecordedRequests(
    namespace: Memo<String>,
    name: Memo<String>,
    picked: RwSignal<Option<Picked>>,
) -> impl IntoView {
    let results = RwSignal::new(None::<Result<TapSearch, FetchError>>);
    Effect::new(move |_| {
        let Some(p) = picked.get() else {
            results.set(None);
            return;
        };
        let (start, end) = (p.start.to_string(), p.end.to_string());
        let url = api::url(
            "/api/v1/tap/search",
            &[
                ("namespace", &namespace.get()),
                ("name", &name.get()),
                ("query", p.behind.query()),
                ("start_ms", &start),
                ("end_ms", &end),
                ("limit", LIMIT),
            ],
        );
        results.set(None);
        leptos::task::spawn_local(async move {
            let r = api::get::<TapSearch>(&url).await;
            results.try_set(Some(r));
        });
    });
    let heading = move || {
        let p = picked.get()?;
        let offset = clock::utc_offset_ms();
        Some(format!(
            "{} {}–{}",
            p.behind.title(),
            format::clock(p.start, offset),
            format::clock(p.end, offset)
        ))
    };
    let list = move || match results.get() {
        None => view! { <p class="status loading">"Searching the tap history…"</p> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
        Some(Ok(r)) if r.events.is_empty() => view! {
            <Empty><p>"The flight recorder kept no such request in this time."</p></Empty>
        }
        .into_any(),
        Some(Ok(r)) => view! {
            <TapTable events=Signal::derive(move || r.events.clone()) testid="recorded-requests"/>
        }
        .into_any(),
    };
    view! {
        <Show when=move || picked.with(Option::is_some)>
            <section class="recorded" data-testid="recorded">
                <h2>
                    <span data-testid="recorded-title">{heading}</span>
                    " "
                    <button class="chip" on:click=move |_| picked.set(None)>"Close"</button>
                </h2>
                {list}
            </section>
        </Show>
    }
}

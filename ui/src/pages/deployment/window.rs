//! The time window the Deployment page shows, and its picker: live over
//! the last 5, 15 or 60 minutes (`?range=`), or a fixed window from
//! `?since=` to `?until=`, written as the CLI's `--since`/`--until` and
//! the API take them (how long ago, `2h`, or RFC 3339). The window lives
//! in the URL, so a reload, the back button or a shared link shows the
//! same one; the picker writes RFC 3339 times, which name the same
//! window whenever the link is opened.
//!
//! A fixed window is checked here with the rules the API applies
//! (`conduit_api::time_range`), so a bad one is refused with the API's
//! words before any request; only the store's retention, which the
//! browser does not know, is left to the API's answer.

use std::time::Duration;

use conduit_api::time_range::{Rfc3339, TimePoint, TimeRange};
use conduit_chart::series::Range;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::params::ParamsMap;
use wasm_bindgen::JsValue;

use crate::{api, clock};

/// What the page shows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Window {
    /// Live: charts over the range, figures over the last minute.
    Live(Range),
    /// A window that has ended: a still picture.
    Fixed(TimeRange),
    /// The URL names no window that can be shown: why.
    Invalid(String),
}

/// The figures of a live page cover the minute before now.
const LIVE_FIGURES: &str = "1m";

impl Window {
    /// The window of the page's query string at `now_ms`. `since` alone
    /// runs to now, `until` alone takes the range before it, as in the API.
    pub(crate) fn of_query(q: &ParamsMap, now_ms: i64) -> Self {
        let range = q
            .get_str("range")
            .and_then(Range::parse)
            .unwrap_or_default();
        let text = |k: &str| q.get_str(k).filter(|t| !t.is_empty());
        let (since, until) = (text("since"), text("until"));
        if since.is_none() && until.is_none() {
            return Self::Live(range);
        }
        let point = |what: &str, t: Option<&str>| {
            t.map(|t| t.parse::<TimePoint>())
                .transpose()
                .map_err(|e| format!("{what}: {e}"))
        };
        let (since, until) = match (point("since", since), point("until", until)) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => return Self::Invalid(e),
        };
        let default = Duration::from_millis(range.millis() as u64);
        match TimeRange::resolve(since, until, default, now_ms) {
            Ok(r) => Self::Fixed(r),
            Err(e) => Self::Invalid(e.to_string()),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Self::Live(_))
    }

    /// The API's parameters for figures over this window (`stat`,
    /// `routes`, `edges`, `authz`).
    pub(crate) fn api_params(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Fixed(r) => vec![
                ("since", Rfc3339(r.start_ms).to_string()),
                ("until", Rfc3339(r.end_ms).to_string()),
            ],
            Self::Live(_) | Self::Invalid(_) => vec![("window", LIVE_FIGURES.into())],
        }
    }

    /// What the page's figures cover, for its hints.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Fixed(r) => format!(
                "from {} to {}",
                local_time(r.start_ms),
                local_time(r.end_ms)
            ),
            Self::Live(_) | Self::Invalid(_) => "over the last minute".into(),
        }
    }
}

/// The query string of a fixed window, as the picker writes it.
fn fixed_query(r: &TimeRange) -> [(&'static str, String); 2] {
    [
        ("since", Rfc3339(r.start_ms).to_string()),
        ("until", Rfc3339(r.end_ms).to_string()),
    ]
}

/// `2026-12-07 13:00:05` in the browser's time zone.
pub(crate) fn local_time(unix_ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(unix_ms as f64));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

/// A `datetime-local` input's value for `unix_ms` (`2026-12-07T13:00:05`).
fn input_value(unix_ms: i64) -> String {
    local_time(unix_ms).replacen(' ', "T", 1)
}

/// A `datetime-local` input's value (local time) as Unix ms.
fn parse_input(what: &str, value: &str) -> Result<i64, String> {
    if value.is_empty() {
        return Err(format!("{what}: pick a date and time"));
    }
    let t = js_sys::Date::new(&JsValue::from_str(value)).get_time();
    if t.is_nan() {
        return Err(format!("{what}: {value:?} is not a date and time"));
    }
    Ok(t as i64)
}

/// `UTC+01:00`: the zone the inputs' times are in.
fn zone() -> String {
    let minutes = clock::utc_offset_ms() / 60_000;
    let sign = if minutes < 0 { '-' } else { '+' };
    format!(
        "UTC{sign}{:02}:{:02}",
        minutes.abs() / 60,
        minutes.abs() % 60
    )
}

/// Presets (live) and a custom window from–to, which the URL takes on
/// apply.
#[component]
pub(crate) fn WindowPicker(window: Memo<Window>, page: Signal<String>) -> impl IntoView {
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    let from = NodeRef::<leptos::html::Input>::new();
    let to = NodeRef::<leptos::html::Input>::new();
    // The inputs start at the window shown (a live one: its range until now).
    let initial = move || match window.get() {
        Window::Fixed(r) => (r.start_ms, r.end_ms),
        Window::Live(range) => {
            let now = clock::now_ms();
            (now - range.millis(), now)
        }
        Window::Invalid(_) => {
            let now = clock::now_ms();
            (now - Range::default().millis(), now)
        }
    };
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let value = |input: NodeRef<leptos::html::Input>| {
            input.get_untracked().map(|i| i.value()).unwrap_or_default()
        };
        let now = clock::now_ms();
        let picked = parse_input("since", &value(from)).and_then(|start_ms| {
            // An empty end is now.
            let to = value(to);
            let end_ms = if to.is_empty() {
                now
            } else {
                parse_input("until", &to)?
            };
            let r = TimeRange { start_ms, end_ms };
            r.check(now).map_err(|e| e.to_string())?;
            Ok(r)
        });
        match picked {
            Ok(r) => {
                error.set(None);
                let query = fixed_query(&r);
                let params: Vec<(&str, &str)> =
                    query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                navigate(
                    &api::url(&page.get_untracked(), &params),
                    Default::default(),
                );
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let presets = move || {
        Range::ALL
            .into_iter()
            .map(|r| {
                let href = api::url(&page.get(), &[("range", r.as_str())]);
                let class = if window.get() == Window::Live(r) {
                    "chip active"
                } else {
                    "chip"
                };
                view! {
                    <a class=class href=href data-range=r.as_str()>{format!("last {}", r.as_str())}</a>
                }
            })
            .collect_view()
    };
    view! {
        <div class="window-picker" data-testid="window-picker">
            <nav class="chips ranges">"Live: " {presets}</nav>
            <form class="custom-window" data-testid="custom-window" on:submit=apply>
                <span class="custom-label" class:active=move || matches!(window.get(), Window::Fixed(_))>
                    "Custom window:"
                </span>
                <label>"since "
                    <input type="datetime-local" step="1" name="since" node_ref=from
                        prop:value=move || input_value(initial().0)/>
                </label>
                <label>"until "
                    <input type="datetime-local" step="1" name="until" node_ref=to
                        prop:value=move || input_value(initial().1)/>
                </label>
                <span class="hint">{zone()}</span>
                <button type="submit" data-testid="apply-window">"Show window"</button>
            </form>
            {move || error.get().map(|e| view! {
                <p class="status error" role="alert" data-testid="window-error">{e}</p>
            })}
        </div>
    }
}

/// What a fixed window says above the figures: which window, that it is
/// a still picture, and the way back to live.
#[component]
pub(crate) fn FixedNotice(window: Memo<Window>, page: Signal<String>) -> impl IntoView {
    move || {
        let Window::Fixed(r) = window.get() else {
            return None;
        };
        let length = conduit_api::duration::format(r.len());
        Some(view! {
            <p class="fixed-window" role="status" data-testid="fixed-window"
                data-start=Rfc3339(r.start_ms).to_string() data-end=Rfc3339(r.end_ms).to_string()>
                "Fixed window from " <strong>{local_time(r.start_ms)}</strong>
                " to " <strong>{local_time(r.end_ms)}</strong>
                {format!(" ({length}, {}): a still picture, not updated. ", zone())}
                <a href=move || page.get() data-testid="back-to-live">"Back to live"</a>
            </p>
        })
    }
}

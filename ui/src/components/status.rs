//! What a view shows instead of (or above) its data: loading, empty,
//! failing, reconnecting. One component so every page says it the same way.

use leptos::prelude::*;

use crate::live::StreamState;

/// A line about a live stream that has no (current) data to show; nothing
/// while data flows.
#[component]
pub(crate) fn StreamStatus(
    #[prop(into)] state: Signal<StreamState>,
    /// What is loading, for the message (`Deployments`).
    what: &'static str,
) -> impl IntoView {
    move || match state.get() {
        StreamState::Live => None,
        StreamState::Connecting => Some(
            view! {
                <p class="status loading" data-testid="loading">{format!("Loading {what}…")}</p>
            }
            .into_any(),
        ),
        StreamState::Retrying => Some(
            view! {
                <p class="status retrying">"Live updates interrupted; reconnecting…"</p>
            }
            .into_any(),
        ),
        StreamState::Failing(why) => Some(
            view! {
                <p class="status error" data-testid="stream-error" role="alert">{why}</p>
            }
            .into_any(),
        ),
    }
}

/// An error box with a message.
#[component]
pub(crate) fn ErrorBox(#[prop(into)] message: String) -> impl IntoView {
    view! { <p class="status error" role="alert">{message}</p> }
}

/// What an empty table says.
#[component]
pub(crate) fn Empty(children: Children) -> impl IntoView {
    view! { <div class="status empty" data-testid="empty">{children()}</div> }
}

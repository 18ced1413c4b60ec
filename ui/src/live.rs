//! Live views: the controller's Server-Sent Events streams, kept open for
//! as long as the component that asked for them lives.
//!
//! A stream is (re)opened whenever its URL changes (a new filter) and
//! whenever the controller comes back after being unreachable. The browser
//! retries a dropped `EventSource` by itself, but gives up for good on an
//! HTTP error answer; then this module retries with a growing delay.
//!
//! The controller sends data as named events (`stat`, `top`, `tap`) and its
//! own failures (store unreachable, ...) as `error` events carrying an
//! `ApiError`. The browser reports a broken connection as an `error` event
//! too, but a plain `Event` rather than a `MessageEvent` with data; that is
//! how the two are told apart.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use conduit_api::json::ApiError;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventSource, MessageEvent};

use crate::connection;

/// Where a stream is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StreamState {
    /// Opening, no event yet.
    Connecting,
    /// Data is flowing.
    Live,
    /// The controller reported a failure (e.g. the store is down); the
    /// stream stays open and recovers by itself.
    Failing(String),
    /// The connection broke and is being retried.
    Retrying,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// An open `EventSource` with its listeners; closes it when dropped.
struct Subscription {
    source: EventSource,
    _listeners: Vec<Closure<dyn FnMut(Event)>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.source.close();
        OPEN.with(|open| open.borrow_mut().retain(|s| *s != self.source));
    }
}

thread_local! {
    /// Every stream the page holds open, for [`close_on_pagehide`].
    static OPEN: RefCell<Vec<EventSource>> = const { RefCell::new(Vec::new()) };
}

/// A page the browser keeps in its back/forward cache keeps its streams,
/// and over HTTP/1.1 a browser opens only six connections per origin: a
/// few cached dashboard pages starve the next page of connections until
/// they are evicted. So streams close when the page is hidden, and reopen
/// (a new connection generation) when a cached page is shown again.
pub(crate) fn close_on_pagehide() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let hidden = Closure::<dyn FnMut(Event)>::new(|_: Event| {
        let open = OPEN.with(|open| open.borrow().clone());
        for source in open {
            source.close();
        }
    });
    let shown = Closure::<dyn FnMut(Event)>::new(|e: Event| {
        let restored = js_sys::Reflect::get(&e, &"persisted".into())
            .ok()
            .and_then(|p| p.as_bool())
            .unwrap_or(false);
        if restored {
            connection::current().generation.update(|g| *g += 1);
        }
    });
    for (name, listener) in [("pagehide", hidden), ("pageshow", shown)] {
        if window
            .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
            .is_ok()
        {
            // Listeners of the page itself: they live as long as it does.
            listener.forget();
        }
    }
}

/// Subscribes to the `event` events of the SSE endpoint `url()` (`None`:
/// nothing to subscribe to yet) and hands each decoded payload to
/// `on_data`. Returns the stream's state for loading and error displays.
pub(crate) fn subscribe<T, U, F>(url: U, event: &'static str, on_data: F) -> RwSignal<StreamState>
where
    T: DeserializeOwned + 'static,
    U: Fn() -> Option<String> + 'static,
    F: Fn(T) + 'static,
{
    let state = RwSignal::new(StreamState::Connecting);
    let retry = RwSignal::new(0u32);
    let failures = Rc::new(RefCell::new(0u32));
    let current: Rc<RefCell<Option<Subscription>>> = Rc::default();
    let on_data = Rc::new(on_data);
    let generation = connection::current().generation;

    let held = current.clone();
    Effect::new(move |_| {
        generation.track();
        retry.track();
        // Close the old stream before opening its replacement: browsers
        // allow only six connections per origin over HTTP/1.1.
        held.borrow_mut().take();
        let Some(url) = url() else { return };
        state.set(StreamState::Connecting);
        let handlers = Handlers {
            state,
            retry,
            failures: failures.clone(),
            on_data: on_data.clone(),
        };
        match open(&url, event, handlers) {
            Ok(sub) => *held.borrow_mut() = Some(sub),
            Err(why) => state.set(StreamState::Failing(why)),
        }
    });

    let on_drop = SendWrapper::new(current);
    on_cleanup(move || {
        on_drop.take().borrow_mut().take();
    });
    state
}

struct Handlers<T> {
    state: RwSignal<StreamState>,
    retry: RwSignal<u32>,
    failures: Rc<RefCell<u32>>,
    on_data: Rc<dyn Fn(T)>,
}

fn open<T: DeserializeOwned + 'static>(
    url: &str,
    event: &'static str,
    h: Handlers<T>,
) -> Result<Subscription, String> {
    let source = EventSource::new(url).map_err(crate::api::describe)?;
    let Handlers {
        state,
        retry,
        failures,
        on_data,
    } = h;

    let opened = {
        let failures = failures.clone();
        Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            *failures.borrow_mut() = 0;
            connection::report_reachable();
        })
    };

    let data = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        let Some(text) = message_text(&e) else { return };
        match serde_json::from_str::<T>(&text) {
            Ok(value) => {
                state.try_set(StreamState::Live);
                on_data(value);
            }
            Err(err) => {
                state.try_set(StreamState::Failing(format!(
                    "unexpected `{event}` event from the controller: {err}"
                )));
            }
        }
    });

    let source_for_errors = source.clone();
    let errored = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        if let Some(text) = message_text(&e) {
            let why = serde_json::from_str::<ApiError>(&text)
                .map(|a| a.error)
                .unwrap_or(text);
            state.try_set(StreamState::Failing(why));
            return;
        }
        state.try_set(StreamState::Retrying);
        if source_for_errors.ready_state() != EventSource::CLOSED {
            // The browser reconnects by itself; find out whether the
            // controller is gone meanwhile.
            connection::suspect();
            return;
        }
        // The browser gave up: the controller refused the stream or is
        // gone. Say why, then try again later.
        let n = {
            let mut f = failures.borrow_mut();
            *f += 1;
            *f
        };
        let url = source_for_errors.url();
        leptos::task::spawn_local(async move {
            if let Some(e) = crate::api::stream_error(&url).await {
                state.try_set(StreamState::Failing(e.to_string()));
            }
        });
        set_timeout(
            move || {
                retry.try_update(|r| *r += 1);
            },
            backoff(n),
        );
    });

    for (name, listener) in [("open", &opened), (event, &data), ("error", &errored)] {
        source
            .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
            .map_err(crate::api::describe)?;
    }
    OPEN.with(|open| open.borrow_mut().push(source.clone()));
    Ok(Subscription {
        source,
        _listeners: vec![opened, data, errored],
    })
}

/// The data of a server-sent event; `None` for the browser's own events.
fn message_text(e: &Event) -> Option<String> {
    e.dyn_ref::<MessageEvent>()
        .and_then(|m| m.data().as_string())
}

/// 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(4);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Runs `f` now, every `every` while `live()`, and at once when the
/// controller comes back, for as long as the calling component lives: for
/// views the API offers no stream for (edges). A view of a window that
/// has ended (`live()` false) is asked for once: its answer cannot change.
pub(crate) fn poll(every: Duration, live: impl Fn() -> bool + 'static, f: impl Fn() + 'static) {
    let generation = connection::current().generation;
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        generation.track();
        if live() {
            tick.track();
        }
        f();
    });
    let handle = set_interval_with_handle(
        move || {
            tick.try_update(|t| *t += 1);
        },
        every,
    )
    .ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });
}

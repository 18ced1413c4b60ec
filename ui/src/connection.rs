//! Whether the controller is reachable, for the whole page.
//!
//! Any request or stream that gets no answer reports it here; the banner
//! then says so, and a probe of `/api/v1/version` runs every
//! [`RETRY`] until the controller answers again. When it does, the
//! generation counter moves on, which makes every live stream reconnect at
//! once instead of waiting for the browser's own (slower, and after some
//! failures abandoned) `EventSource` retry.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use leptos::prelude::*;

use crate::api;

/// How often an unreachable controller is probed.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

/// The page's view of the controller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Link {
    /// Not known yet, or the last request got an answer.
    Up,
    /// The last request got no answer.
    Down { reason: String, since_ms: f64 },
}

#[derive(Clone, Copy)]
pub(crate) struct Connection {
    pub(crate) link: RwSignal<Link>,
    /// Moves on each time the controller comes back.
    pub(crate) generation: RwSignal<u64>,
}

thread_local! {
    static CURRENT: RefCell<Option<Connection>> = const { RefCell::new(None) };
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Creates the page's connection state; call once, at the root.
pub(crate) fn provide() -> Connection {
    let c = Connection {
        link: RwSignal::new(Link::Up),
        generation: RwSignal::new(0),
    };
    CURRENT.with(|cur| *cur.borrow_mut() = Some(c));
    c
}

pub(crate) fn current() -> Connection {
    CURRENT
        .with(|cur| *cur.borrow())
        .expect("connection::provide runs before anything reports")
}

/// A request got no answer.
pub(crate) fn report_unreachable(reason: &str) {
    let c = current();
    let now = js_sys::Date::now();
    c.link.update(|link| match link {
        Link::Up => {
            *link = Link::Down {
                reason: reason.to_string(),
                since_ms: now,
            }
        }
        Link::Down { reason: r, .. } => *r = reason.to_string(),
    });
    schedule_probe();
}

/// A request got an answer: if the controller was down, it is back.
pub(crate) fn report_reachable() {
    let c = current();
    if c.link.with_untracked(|l| matches!(l, Link::Down { .. })) {
        c.link.set(Link::Up);
        c.generation.update(|g| *g += 1);
    }
}

/// A stream broke: find out whether the controller is gone.
pub(crate) fn suspect() {
    spawn_probe();
}

fn schedule_probe() {
    if PROBING.with(|p| p.replace(true)) {
        return;
    }
    set_timeout(
        || {
            PROBING.with(|p| p.set(false));
            spawn_probe();
        },
        RETRY,
    );
}

fn spawn_probe() {
    leptos::task::spawn_local(async {
        // `get` reports the outcome, which reschedules while down.
        let _ = api::get::<conduit_api::json::Version>("/api/v1/version").await;
    });
}

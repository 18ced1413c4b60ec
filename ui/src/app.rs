//! The page frame: header with navigation, the controller-unreachable
//! banner, and the routes.

use conduit_api::json::Version;
use conduit_chart::format;
use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::connection::{self, Link};
use crate::pages::deployment::DeploymentPage;
use crate::pages::overview::Overview;
use crate::pages::pick::Pick;
use crate::pages::tap::TapPage;
use crate::pages::top::TopPage;
use crate::{api, clock, paths};

#[component]
pub(crate) fn App() -> impl IntoView {
    let conn = connection::provide();
    crate::live::close_on_pagehide();
    let version = RwSignal::new(None::<Version>);
    leptos::task::spawn_local(async move {
        if let Ok(v) = api::get::<Version>("/api/v1/version").await {
            version.set(Some(v));
        }
    });
    view! {
        <Router>
            <header class="top-bar">
                <a class="brand" href="/">"Conduit"</a>
                <nav>
                    <A href="/" exact=true>"Overview"</A>
                    <A href="/tap">"Tap"</A>
                    <A href="/top">"Top"</A>
                </nav>
                <span class="version">
                    {move || version.get().map(|v| format!("{} · {}", v.version, v.mode))}
                </span>
            </header>
            <Banner link=conn.link/>
            <main>
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=Overview/>
                    <Route path=path!("/deployments/:ns/:name") view=DeploymentPage/>
                    <Route path=path!("/tap") view=|| view! { <Pick title="Tap" link=paths::tap/> }/>
                    <Route path=path!("/tap/:ns/:name") view=TapPage/>
                    <Route path=path!("/top") view=|| view! { <Pick title="Top" link=paths::top/> }/>
                    <Route path=path!("/top/:ns/:name") view=TopPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Shown while the controller does not answer.
#[component]
fn Banner(link: RwSignal<Link>) -> impl IntoView {
    move || match link.get() {
        Link::Up => None,
        Link::Down { reason, since_ms } => {
            let origin = web_sys::window()
                .and_then(|w| w.location().origin().ok())
                .unwrap_or_default();
            let since = format::clock(since_ms as i64, clock::utc_offset_ms());
            Some(view! {
                <div class="banner" role="alert" data-testid="banner-unreachable">
                    <strong>"Cannot reach the Conduit controller"</strong>
                    {format!(" at {origin} since {since} ({reason}). ")}
                    {format!("Retrying every {} s; the figures below are stale. ", connection::RETRY.as_secs())}
                    "Is " <code>"conduit-controller"</code> " running? " <code>"conduit check"</code> " tells more."
                </div>
            })
        }
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <section class="page">
            <h1>"Not found"</h1>
            <p>"This dashboard has no such page. " <a href="/">"Go to the overview."</a></p>
        </section>
    }
}

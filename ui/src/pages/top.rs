//! Top: a Deployment's busiest paths, live, like `conduit top`.
//!
//! One `top` stream; the controller sends the table once a second, most
//! requests first. The same table sits on the Deployment page.

use conduit_api::json::Top;
use conduit_chart::format;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::components::metric::GoldenCells;
use crate::components::status::{Empty, StreamStatus};
use crate::{api, live, paths};

#[component]
pub(crate) fn TopPage() -> impl IntoView {
    let params = use_params_map();
    let namespace = Memo::new(move |_| params.read().get("ns").unwrap_or_default());
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    view! {
        <section class="page top">
            <header class="page-head">
                <p class="crumbs">
                    <a href="/">"Deployments"</a>
                    " / "
                    <a href=move || paths::deployment(&namespace.get(), &name.get())>
                        {move || format!("{}/{}", namespace.get(), name.get())}
                    </a>
                </p>
                <h1>"Top paths"</h1>
                <p class="hint">"Requests per path over the last 10 seconds, most requests first, updated every second."</p>
            </header>
            <TopTable namespace=namespace name=name limit=25/>
        </section>
    }
}

/// The live top-paths table of `namespace/name`.
#[component]
pub(crate) fn TopTable(namespace: Memo<String>, name: Memo<String>, limit: u32) -> impl IntoView {
    let top = RwSignal::new(None::<Top>);
    let url = move || {
        Some(api::url(
            "/api/v1/top/stream",
            &[
                ("namespace", &namespace.get()),
                ("name", &name.get()),
                ("limit", &limit.to_string()),
            ],
        ))
    };
    let state = live::subscribe(url, "top", move |t: Top| top.set(Some(t)));
    let body = move || {
        top.with(|t| {
            let t = t.as_ref()?;
            let most = t
                .rows
                .iter()
                .map(|r| r.metrics.total())
                .max()
                .unwrap_or(1)
                .max(1);
            Some(
                t.rows
                    .iter()
                    .map(|r| {
                        let count = r.metrics.total();
                        let width = format!("width:{:.1}%", count as f64 * 100.0 / most as f64);
                        view! {
                            <tr data-testid="top-row" data-path=r.path.clone()>
                                <td class="method">{r.method.clone()}</td>
                                <td class="path"><code>{r.path.clone()}</code></td>
                                <td class="authority">{r.authority.clone()}</td>
                                <td class="num count">
                                    <span class="bar" style=width></span>
                                    <span class="count-text">{format::count(count)}</span>
                                </td>
                                <GoldenCells m=Some(r.metrics.clone())/>
                            </tr>
                        }
                    })
                    .collect_view(),
            )
        })
    };
    view! {
        <StreamStatus state=state what="top paths"/>
        <table class="metrics top" data-testid="top-table">
            <thead>
                <tr>
                    <th>"Method"</th><th>"Path"</th><th>"Authority"</th><th class="num">"Count"</th>
                    <th class="num">"Success"</th><th class="num">"RPS"</th>
                    <th class="num">"P50"</th><th class="num">"P95"</th><th class="num">"P99"</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
        <Show when=move || top.with(|t| t.as_ref().is_some_and(|t| t.rows.is_empty()))>
            <Empty><p>"No requests in the last 10 seconds."</p></Empty>
        </Show>
    }
}

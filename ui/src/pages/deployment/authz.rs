//! The Deployment page's authorization panel: the inbound policy that
//! applies to the Deployment (each Server with its port, routes and the
//! authorizations on them, and the default policy of the ports no Server
//! selects) and what each allowed, denied and audited over the last
//! minute; what `conduit authz deploy/NAME -o wide` prints.
//!
//! The API has no stream for it, so it is polled like the edges (a fixed
//! window's once). Each row
//! of an empty authorization counts what no authorization admitted: those
//! are the denials, marked as such, since they are what an operator looks
//! for here.

use conduit_api::json::{Authz, AuthzRow};
use conduit_chart::format;
use leptos::prelude::*;

use super::window::Window;
use crate::api::{self, FetchError};
use crate::components::status::{Empty, ErrorBox};
use crate::live;

/// One poll's outcome.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    /// When it was asked for (Unix ms): the counts are no older. Shown
    /// on the table, so a reader (or a test) can tell which answer it sees.
    asked_ms: f64,
    result: Result<Authz, FetchError>,
}

#[component]
pub(crate) fn AuthzPanel(
    namespace: Memo<String>,
    name: Memo<String>,
    window: Memo<Window>,
) -> impl IntoView {
    let answer = RwSignal::new(None::<Answer>);
    live::poll(
        super::REFRESH,
        move || window.with(Window::is_live),
        move || {
            let mut params = vec![("namespace", namespace.get()), ("name", name.get())];
            params.extend(window.get().api_params());
            let url = api::url("/api/v1/authz", &super::pairs(&params));
            leptos::task::spawn_local(async move {
                let asked_ms = js_sys::Date::now();
                let result = api::get::<Authz>(&url).await;
                answer.try_set(Some(Answer { asked_ms, result }));
            });
        },
    );
    let body = move || match answer.get() {
        None => {
            view! { <p class="status loading">"Loading the authorization policy…"</p> }.into_any()
        }
        Some(Answer { result: Err(e), .. }) => {
            view! { <ErrorBox message=e.to_string()/> }.into_any()
        }
        Some(Answer {
            asked_ms,
            result: Ok(authz),
        }) => view! { <AuthzTable authz=authz asked_ms=asked_ms/> }.into_any(),
    };
    view! {
        <h2>"Authorization"</h2>
        <p class="hint">
            {move || format!("Who may call this Deployment, and what its proxies allowed and denied {}.", window.with(Window::describe))}
        </p>
        {body}
    }
}

#[component]
fn AuthzTable(authz: Authz, asked_ms: f64) -> impl IntoView {
    let Authz {
        default_policy,
        rows,
        ..
    } = authz;
    let default_line = view! {
        <p class="footnote" data-testid="authz-default">
            "Ports no Server selects: " <code>{default_policy}</code>
        </p>
    };
    if rows.is_empty() {
        return view! {
            <Empty><p>"No policy applies to this Deployment yet."</p></Empty>
            {default_line}
        }
        .into_any();
    }
    let body = rows
        .into_iter()
        .map(|row| view! { <AuthzRowView row=row/> })
        .collect_view();
    view! {
        <table class="metrics authz" data-testid="authz-table" data-updated=asked_ms as i64>
            <thead>
                <tr>
                    <th>"Server"</th><th class="num">"Port"</th><th>"Route"</th>
                    <th>"Authorization"</th><th>"Admits"</th>
                    <th class="num">"Allowed"</th><th class="num">"Denied"</th><th class="num">"Audited"</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
        {default_line}
    }
    .into_any()
}

/// One row, worded as `conduit authz` words it.
#[component]
fn AuthzRowView(row: AuthzRow) -> impl IntoView {
    // The row of what no authorization admitted, and whether it denied
    // anything: what an operator scans this table for.
    let denials = row.authorization.is_empty();
    let denying = row.denied > 0.0;
    let server = row.server.clone();
    let (port, port_title) = port(row.port);
    let route = or(&row.route, "(no route)");
    let authorization = or(&row.authorization, "(none: denied)");
    let admits = or(&row.admits, format::MISSING);
    view! {
        <tr
            data-testid="authz-row"
            data-server=server
            data-authorization=row.authorization.clone()
            class:denials=denials
            class:denying=denying
        >
            <td class="server">{row.server}</td>
            <td class="num port" title=port_title>{port}</td>
            <td class="route">{route}</td>
            <td class="authorization">{authorization}</td>
            <td class="admits">{admits}</td>
            <td class="num allowed">{count(row.allowed)}</td>
            <td class="num denied">{count(row.denied)}</td>
            <td class="num audited">{count(row.audited)}</td>
        </tr>
    }
}

/// The port as shown, and what it means where that needs saying: 0
/// stands for every port no Server selects.
fn port(port: u16) -> (String, Option<&'static str>) {
    if port == 0 {
        ("*".into(), Some("every port no Server selects"))
    } else {
        (port.to_string(), None)
    }
}

/// `text`, or `instead` when it is empty.
fn or(text: &str, instead: &str) -> String {
    if text.is_empty() { instead } else { text }.to_string()
}

/// A count over the window: `increase` extrapolates to the window's
/// edges, so it is rounded to the whole requests the CLI prints too.
fn count(v: f64) -> String {
    format::count(v.round() as u64)
}

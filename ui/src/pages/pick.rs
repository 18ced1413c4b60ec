//! `/tap` and `/top` without a Deployment: choose one.

use conduit_api::json::DeploymentList;
use leptos::prelude::*;

use crate::api::{self, FetchError};
use crate::components::status::{Empty, ErrorBox};

#[component]
pub(crate) fn Pick(title: &'static str, link: fn(&str, &str) -> String) -> impl IntoView {
    let list = RwSignal::new(None::<Result<DeploymentList, FetchError>>);
    leptos::task::spawn_local(async move {
        let url = api::url("/api/v1/deployments", &[("all_namespaces", "true")]);
        let r = api::get::<DeploymentList>(&url).await;
        list.try_set(Some(r));
    });
    let body = move || {
        match list.get() {
        None => view! { <p class="status loading">"Loading Deployments…"</p> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
        Some(Ok(l)) if l.deployments.is_empty() => {
            view! { <Empty><p>"No Deployments found. Run " <code>"conduit check"</code> "."</p></Empty> }.into_any()
        }
        Some(Ok(l)) => view! {
            <ul class="pick">
                {l.deployments
                    .into_iter()
                    .map(|d| view! {
                        <li><a href=link(&d.namespace, &d.name)>{format!("{}/{}", d.namespace, d.name)}</a></li>
                    })
                    .collect_view()}
            </ul>
        }
        .into_any(),
    }
    };
    view! {
        <section class="page pick">
            <header class="page-head">
                <h1>{title}</h1>
                <p class="hint">"Choose a Deployment."</p>
            </header>
            {body}
        </section>
    }
}

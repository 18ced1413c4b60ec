//! Table cells for golden metrics: a success rate coloured by health,
//! rates and latencies formatted alike everywhere; `—` without traffic.

use conduit_api::json::Golden;
use conduit_chart::format;
use conduit_chart::health::Health;
use leptos::prelude::*;

/// A success rate, coloured by [`Health`].
#[component]
pub(crate) fn SuccessCell(rate: Option<f64>) -> impl IntoView {
    let class = format!("num success {}", Health::of(rate).class());
    let text = rate.map_or(format::MISSING.to_string(), format::percent);
    view! { <td class=class>{text}</td> }
}

/// Success rate, RPS, p50, p95 and p99 cells of `m`.
#[component]
pub(crate) fn GoldenCells(m: Option<Golden>) -> impl IntoView {
    let rate = m.as_ref().map(|m| m.success_rate);
    let rps = m.as_ref().map_or("0".to_string(), |m| format::rps(m.rps));
    let lat = |f: fn(&Golden) -> f64| {
        m.as_ref()
            .map_or(format::MISSING.to_string(), |m| format::latency_ms(f(m)))
    };
    view! {
        <SuccessCell rate=rate/>
        <td class="num rps">{rps}</td>
        <td class="num p50">{lat(|m| m.latency_ms_p50)}</td>
        <td class="num p95">{lat(|m| m.latency_ms_p95)}</td>
        <td class="num p99">{lat(|m| m.latency_ms_p99)}</td>
    }
}

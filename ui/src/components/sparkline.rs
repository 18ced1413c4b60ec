//! A sparkline: a row's recent trend, small enough for a table cell. No
//! axes; the tooltip (`title`) names the range and the latest value.

use conduit_chart::path;
use conduit_chart::scale::Linear;
use conduit_chart::series::Series;
use leptos::prelude::*;

const W: f64 = 120.0;
const H: f64 = 28.0;

/// The trend of `series` over `span` (Unix ms), scaled from zero to its
/// largest value.
#[component]
pub(crate) fn Sparkline(
    #[prop(into)] series: Signal<Series>,
    #[prop(into)] span: Signal<(i64, i64)>,
    #[prop(into)] title: Signal<String>,
) -> impl IntoView {
    let shape = Memo::new(move |_| {
        let (start, end) = span.get();
        series.with(|s| {
            let xy: Vec<(f64, Option<f64>)> = s
                .xy()
                .into_iter()
                .filter(|(t, _)| *t >= start as f64)
                .collect();
            let hi = s.extent().map_or(1.0, |(_, hi)| hi).max(f64::EPSILON);
            let x = Linear::new((start as f64, end as f64), (1.0, W - 1.0));
            let y = Linear::new((0.0, hi), (H - 2.0, 2.0));
            let points = xy.iter().filter(|(_, v)| v.is_some()).count();
            (path::area(&xy, &x, &y, H), path::line(&xy, &x, &y), points)
        })
    });
    view! {
        <svg
            class="sparkline"
            viewBox=format!("0 0 {W} {H}")
            data-points=move || shape.with(|s| s.2)
        >
            <title>{title}</title>
            <path class="spark-area" d=move || shape.with(|s| s.0.clone())></path>
            <path class="spark-line" d=move || shape.with(|s| s.1.clone())></path>
        </svg>
    }
}

//! A live line chart in SVG: time on x, one unit on y, any number of
//! lines, gridlines with labelled ticks, and a hover crosshair that shows
//! every line's value at the nearest point.
//!
//! Geometry (scales, ticks, paths, labels) comes from `conduit-chart`; this
//! component only lays it out. Time labels are placed by
//! `conduit_chart::labels`, so those at the plot's ends are anchored at
//! their tick instead of hanging over the edge and being cut off. The SVG
//! has a fixed coordinate system and scales with its container, so a
//! hover position is converted from CSS pixels back into chart units
//! before looking up the nearest point.
//!
//! A chart may be pickable: a click picks the nearest point, a drag a time
//! range, and the chart hands the pick to its page (which opens the
//! recorded requests behind it).

use conduit_chart::format::{self, Unit};
use conduit_chart::labels::{self, Placed};
use conduit_chart::path;
use conduit_chart::scale::Linear;
use conduit_chart::series::Series;
use conduit_chart::ticks::{self, Axis};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::clock;

// Sized for about the width a chart gets on screen (three in a row), so
// that text is drawn at close to its stylesheet size.
const W: f64 = 460.0;
const H: f64 = 200.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// The stylesheet's font size of tick labels (`.chart .tick`).
const TICK_FONT: f64 = 12.0;

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) label: &'static str,
    /// The stylesheet class that colours it (`line-a`, `line-b`, ...).
    pub(crate) class: &'static str,
    pub(crate) series: Series,
}

/// What a click or a drag on a chart picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// The point at this time (Unix ms).
    Point(i64),
    /// The time range dragged over (Unix ms, start before end).
    Range(i64, i64),
}

/// A drag shorter than this (chart units) is a click.
const DRAG: f64 = 4.0;

/// Everything drawn, computed once per update.
#[derive(Clone, Debug, PartialEq)]
struct Geometry {
    x: Linear,
    y: Linear,
    y_axis: Axis,
    x_ticks: Vec<Placed>,
    paths: Vec<(&'static str, String)>,
    points: usize,
}

fn geometry(lines: &[Line], span: (i64, i64), unit: Unit) -> Geometry {
    let (start, end) = span;
    let extent = lines.iter().filter_map(|l| l.series.extent()).fold(
        None,
        |acc: Option<(f64, f64)>, (lo, hi)| {
            Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
        },
    );
    let y_axis = match (unit, extent) {
        (Unit::Percent, Some((lo, _))) => {
            // Room below the lowest value, so a line at 90 % is not drawn
            // on the axis itself.
            let mut a = ticks::value_axis(lo.min(0.9) - 0.01, 1.0, 4);
            a.ticks.retain(|t| *t >= 0.0);
            a.min = a.min.max(0.0);
            a
        }
        (Unit::Percent, None) => ticks::value_axis(0.9, 1.0, 4),
        (_, Some((_, hi))) => ticks::value_axis(0.0, hi, 4),
        (_, None) => ticks::value_axis(0.0, 1.0, 4),
    };
    let x = Linear::new((start as f64, end as f64), (LEFT, W - RIGHT));
    let y = Linear::new((y_axis.min, y_axis.max), (H - BOTTOM, TOP));
    let offset = clock::utc_offset_ms();
    let (step, times) = ticks::time_ticks(start, end, 6, offset);
    let labelled: Vec<(f64, String)> = times
        .into_iter()
        .map(|t| {
            let label = if step >= 60_000 {
                format::clock_minutes(t, offset)
            } else {
                format::clock(t, offset)
            };
            (x.map(t as f64), label)
        })
        .collect();
    let x_ticks = labels::place(&labelled, LEFT, W - RIGHT, TICK_FONT);
    let visible: Vec<Vec<(f64, Option<f64>)>> = lines
        .iter()
        .map(|l| {
            l.series
                .xy()
                .into_iter()
                .filter(|(t, _)| *t >= start as f64 && *t <= end as f64)
                .collect()
        })
        .collect();
    let points = visible
        .iter()
        .flatten()
        .filter(|(_, v)| v.is_some())
        .count();
    let paths = lines
        .iter()
        .zip(&visible)
        .map(|(l, xy)| (l.class, path::line(xy, &x, &y)))
        .collect();
    Geometry {
        x,
        y,
        y_axis,
        x_ticks,
        paths,
        points,
    }
}

/// Where a mouse event is, in chart units across the plot.
fn chart_x(ev: &web_sys::MouseEvent) -> Option<f64> {
    let el = ev
        .current_target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())?;
    let rect = el.get_bounding_client_rect();
    if rect.width() <= 0.0 {
        return None;
    }
    let x = (f64::from(ev.client_x()) - rect.left()) * W / rect.width();
    Some(x.clamp(LEFT, W - RIGHT))
}

/// A chart of `lines` over the time `span` (Unix ms, start and end).
#[component]
pub(crate) fn LineChart(
    title: &'static str,
    /// `data-testid` of the SVG, for the browser tests.
    testid: &'static str,
    unit: Unit,
    #[prop(into)] lines: Signal<Vec<Line>>,
    #[prop(into)] span: Signal<(i64, i64)>,
    /// Called with what a click or a drag picked; without it the chart
    /// only shows values.
    #[prop(optional)]
    on_pick: Option<Callback<Pick>>,
) -> impl IntoView {
    let geo = Memo::new(move |_| lines.with(|l| geometry(l, span.get(), unit)));
    let hover = RwSignal::new(None::<f64>);
    let pressed = RwSignal::new(None::<f64>);

    let on_move = move |ev: web_sys::MouseEvent| {
        if let Some(x) = chart_x(&ev) {
            hover.set(Some(x));
        }
    };
    let on_down = move |ev: web_sys::MouseEvent| pressed.set(chart_x(&ev));
    let on_up = move |ev: web_sys::MouseEvent| {
        let (Some(pick), Some(from), Some(to)) = (on_pick, pressed.get(), chart_x(&ev)) else {
            return;
        };
        pressed.set(None);
        let g = geo.get();
        let time = |x: f64| g.x.invert(x).round() as i64;
        let picked = if (to - from).abs() >= DRAG {
            Pick::Range(time(from.min(to)), time(from.max(to)))
        } else {
            let Some(p) = lines.with(|ls| ls.iter().find_map(|l| l.series.nearest(time(to))))
            else {
                return;
            };
            Pick::Point(p.t)
        };
        pick.run(picked);
    };

    let grid = move || {
        let g = geo.get();
        let step = g.y_axis.step;
        let y_lines = g
            .y_axis
            .ticks
            .iter()
            .map(|v| {
                let py = g.y.map(*v);
                view! {
                    <line class="grid" x1=LEFT x2=W - RIGHT y1=py y2=py></line>
                    <text class="tick" x=LEFT - 6.0 y=py + 4.0 text-anchor="end">
                        {unit.tick(*v, step)}
                    </text>
                }
            })
            .collect_view();
        let x_labels = g
            .x_ticks
            .iter()
            .map(|p| {
                view! {
                    <line class="grid" x1=p.x x2=p.x y1=TOP y2=H - BOTTOM></line>
                    <text class="tick" x=p.x y=H - 6.0 text-anchor=p.anchor.as_str()>{p.text.clone()}</text>
                }
            })
            .collect_view();
        view! { <g>{y_lines}{x_labels}</g> }
    };

    let paths = move || {
        geo.get()
            .paths
            .into_iter()
            .map(|(class, d)| view! { <path class=format!("series {class}") d=d></path> })
            .collect_view()
    };

    let crosshair = move || {
        let x = hover.get()?;
        let g = geo.get();
        let t = g.x.invert(x).round() as i64;
        let nearest = lines.with(|ls| ls.iter().find_map(|l| l.series.nearest(t)))?;
        let px = g.x.map(nearest.t as f64);
        Some(view! { <line class="crosshair" x1=px x2=px y1=TOP y2=H - BOTTOM></line> })
    };

    let tooltip = move || {
        let x = hover.get()?;
        let g = geo.get();
        let t = g.x.invert(x).round() as i64;
        let rows = lines.with(|ls| {
            ls.iter()
                .filter_map(|l| l.series.nearest(t).map(|p| (l.label, l.class, p)))
                .collect::<Vec<_>>()
        });
        let at = rows.first()?.2.t;
        let left = (g.x.map(at as f64) / W * 100.0).clamp(8.0, 80.0);
        let items = rows
            .into_iter()
            .map(|(label, class, p)| {
                let value = p.v.map_or(format::MISSING.to_string(), |v| unit.value(v));
                view! {
                    <div class="tip-row">
                        <span class=format!("swatch {class}")></span>
                        {label}": "<b>{value}</b>
                    </div>
                }
            })
            .collect_view();
        Some(view! {
            <div class="tip" style=format!("left:{left:.1}%")>
                <div class="tip-time">{format::clock(at, clock::utc_offset_ms())}</div>
                {items}
            </div>
        })
    };

    let legend = move || {
        lines.with(|ls| {
            ls.iter()
                .map(|l| {
                    let last = l
                        .series
                        .last()
                        .and_then(|p| p.v)
                        .map_or(format::MISSING.to_string(), |v| unit.value(v));
                    let (class, label) = (l.class, l.label);
                    view! {
                        <span class="legend-item">
                            <span class=format!("swatch {class}")></span>
                            {label}" "<b>{last}</b>
                        </span>
                    }
                })
                .collect_view()
        })
    };

    view! {
        <figure class="chart">
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="legend">{legend}</span>
            </figcaption>
            <div class="chart-body">
                <svg
                    viewBox=format!("0 0 {W} {H}")
                    data-testid=testid
                    data-points=move || geo.with(|g| g.points)
                    role="img"
                    aria-label=title
                    class:pickable=on_pick.is_some()
                    on:mousemove=on_move
                    on:mousedown=on_down
                    on:mouseup=on_up
                    on:mouseleave=move |_| { hover.set(None); pressed.set(None); }
                >
                    {grid}
                    {paths}
                    {crosshair}
                    <Show when=move || geo.with(|g| g.points == 0)>
                        <text class="no-data" x=W / 2.0 y=H / 2.0 text-anchor="middle">
                            "No requests in this range yet"
                        </text>
                    </Show>
                </svg>
                {tooltip}
            </div>
        </figure>
    }
}

//! SVG path data for line charts and sparklines.
//!
//! A missing value (no request in that interval) breaks the line instead
//! of being drawn as zero: a gap says "no data", a zero says "no success".
//! Coordinates are rounded to a tenth of a pixel to keep the DOM small.

use std::fmt::Write;

use crate::scale::Linear;

/// `M x y L x y ...` through every present point, starting a new subpath
/// after each gap. A lone point between gaps becomes a tiny horizontal
/// segment so that it still shows with a round line cap.
pub fn line(points: &[(f64, Option<f64>)], x: &Linear, y: &Linear) -> String {
    let mut d = String::new();
    let mut run = 0usize;
    for (i, (px, py)) in points.iter().enumerate() {
        let Some(py) = py.filter(|v| v.is_finite()) else {
            run = 0;
            continue;
        };
        let (sx, sy) = (x.map(*px), y.map(py));
        let next_present = points
            .get(i + 1)
            .is_some_and(|(_, v)| v.is_some_and(f64::is_finite));
        if run == 0 {
            push(&mut d, 'M', sx, sy);
            if !next_present {
                push(&mut d, 'L', sx + 0.1, sy);
            }
        } else {
            push(&mut d, 'L', sx, sy);
        }
        run += 1;
    }
    d
}

/// The area between the line and the bottom of the chart (`baseline`
/// pixel row), one closed shape per run of present points.
pub fn area(points: &[(f64, Option<f64>)], x: &Linear, y: &Linear, baseline: f64) -> String {
    let mut d = String::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let close = |run: &mut Vec<(f64, f64)>, d: &mut String| {
        if let (Some(first), Some(last)) = (run.first().copied(), run.last().copied()) {
            push(d, 'M', first.0, baseline);
            for (sx, sy) in run.iter() {
                push(d, 'L', *sx, *sy);
            }
            push(d, 'L', last.0, baseline);
            d.push('Z');
        }
        run.clear();
    };
    for (px, py) in points {
        match py.filter(|v| v.is_finite()) {
            Some(py) => run.push((x.map(*px), y.map(py))),
            None => close(&mut run, &mut d),
        }
    }
    close(&mut run, &mut d);
    d
}

fn push(d: &mut String, cmd: char, x: f64, y: f64) {
    if !d.is_empty() {
        d.push(' ');
    }
    let _ = write!(d, "{cmd}{} {}", tenth(x), tenth(y));
}

/// A coordinate with at most one decimal, without a trailing `.0`.
fn tenth(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scales() -> (Linear, Linear) {
        (
            Linear::new((0.0, 10.0), (0.0, 100.0)),
            Linear::new((0.0, 1.0), (50.0, 0.0)),
        )
    }

    #[test]
    fn a_line_through_all_points() {
        let (x, y) = scales();
        let pts = [(0.0, Some(0.0)), (5.0, Some(0.5)), (10.0, Some(1.0))];
        assert_eq!(line(&pts, &x, &y), "M0 50 L50 25 L100 0");
    }

    #[test]
    fn gaps_break_the_line() {
        let (x, y) = scales();
        let pts = [
            (0.0, Some(1.0)),
            (1.0, Some(1.0)),
            (2.0, None),
            (3.0, Some(0.0)),
            (4.0, Some(0.0)),
        ];
        assert_eq!(line(&pts, &x, &y), "M0 0 L10 0 M30 50 L40 50");
    }

    #[test]
    fn a_lone_point_is_still_drawn() {
        let (x, y) = scales();
        let pts = [(1.0, None), (2.0, Some(0.5)), (3.0, None)];
        assert_eq!(line(&pts, &x, &y), "M20 25 L20.1 25");
    }

    #[test]
    fn non_finite_values_count_as_missing() {
        let (x, y) = scales();
        let pts = [(0.0, Some(f64::NAN)), (1.0, Some(f64::INFINITY))];
        assert_eq!(line(&pts, &x, &y), "");
        assert_eq!(line(&[], &x, &y), "");
    }

    #[test]
    fn coordinates_are_rounded_to_tenths() {
        let x = Linear::new((0.0, 3.0), (0.0, 100.0));
        let y = Linear::new((0.0, 3.0), (0.0, 100.0));
        assert_eq!(
            line(&[(1.0, Some(2.0)), (2.0, Some(1.0))], &x, &y),
            "M33.3 66.7 L66.7 33.3"
        );
    }

    #[test]
    fn areas_close_each_run_on_the_baseline() {
        let (x, y) = scales();
        let pts = [
            (0.0, Some(1.0)),
            (1.0, Some(0.5)),
            (2.0, None),
            (3.0, Some(1.0)),
        ];
        assert_eq!(
            area(&pts, &x, &y, 50.0),
            "M0 50 L0 0 L10 25 L10 50Z M30 50 L30 0 L30 50Z"
        );
    }
}

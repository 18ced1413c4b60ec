//! Time series as the dashboard's charts hold them: history loaded once
//! from the controller, then a live point appended every second from a
//! stream, everything older than the chart's range dropped.
//!
//! Live points arrive far more often than a long chart needs (3 600 an
//! hour); a point closer than the series' spacing to the previous one
//! replaces it instead of being appended, so the tail is always current
//! while the series stays about as dense as its history.

/// A moment and its value; `None` when there was no traffic to measure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: Option<f64>,
}

impl Point {
    pub fn new(t: i64, v: Option<f64>) -> Self {
        Self { t, v }
    }
}

/// Points in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    points: Vec<Point>,
}

impl Series {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<Point> {
        self.points.last().copied()
    }

    /// Puts `history` (any order) in place of every point up to its
    /// newest, keeping live points that are newer than the history.
    pub fn set_history(&mut self, mut history: Vec<Point>) {
        history.sort_by_key(|p| p.t);
        let until = history.last().map_or(i64::MIN, |p| p.t);
        history.extend(self.points.iter().copied().filter(|p| p.t > until));
        self.points = history;
    }

    /// Appends a live point, or replaces the newest one when `p` is less
    /// than `spacing_ms` after the one before it. Points older than the
    /// newest are out of order and ignored.
    pub fn push(&mut self, p: Point, spacing_ms: i64) {
        let n = self.points.len();
        match self.points.last() {
            Some(last) if p.t < last.t => {}
            Some(last) if p.t == last.t => self.points[n - 1] = p,
            Some(_) if n >= 2 && p.t - self.points[n - 2].t < spacing_ms => {
                self.points[n - 1] = p;
            }
            _ => self.points.push(p),
        }
    }

    /// Drops points older than `oldest_ms`.
    pub fn trim(&mut self, oldest_ms: i64) {
        let keep_from = self.points.partition_point(|p| p.t < oldest_ms);
        self.points.drain(..keep_from);
    }

    /// The smallest and largest present value.
    pub fn extent(&self) -> Option<(f64, f64)> {
        self.values().fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.points
            .iter()
            .filter_map(|p| p.v)
            .filter(|v| v.is_finite())
    }

    /// The point closest in time to `t`: what a hover at `t` shows.
    pub fn nearest(&self, t: i64) -> Option<Point> {
        let i = self.points.partition_point(|p| p.t < t);
        let after = self.points.get(i);
        let before = i.checked_sub(1).and_then(|j| self.points.get(j));
        match (before, after) {
            (Some(b), Some(a)) => Some(if t - b.t <= a.t - t { *b } else { *a }),
            (Some(p), None) | (None, Some(p)) => Some(*p),
            (None, None) => None,
        }
    }

    /// `(t, v)` pairs, as [`crate::path`] takes them.
    pub fn xy(&self) -> Vec<(f64, Option<f64>)> {
        self.points.iter().map(|p| (p.t as f64, p.v)).collect()
    }
}

/// The time ranges a chart offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Range {
    #[default]
    FiveMinutes,
    FifteenMinutes,
    OneHour,
}

impl Range {
    pub const ALL: [Range; 3] = [Self::FiveMinutes, Self::FifteenMinutes, Self::OneHour];

    /// As the URL and the controller's API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::OneHour => "1h",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn millis(self) -> i64 {
        match self {
            Self::FiveMinutes => 5 * 60_000,
            Self::FifteenMinutes => 15 * 60_000,
            Self::OneHour => 60 * 60_000,
        }
    }

    /// Time between points: 60 points per range.
    pub fn step_ms(self) -> i64 {
        self.millis() / 60
    }

    /// The step as the API takes it (`5s`, `15s`, `1m`).
    pub fn step(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5s",
            Self::FifteenMinutes => "15s",
            Self::OneHour => "1m",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, v: f64) -> Point {
        Point::new(t, Some(v))
    }

    #[test]
    fn history_replaces_old_points_and_keeps_newer_live_ones() {
        let mut s = Series::new();
        s.push(p(100, 1.0), 0);
        s.push(p(300, 3.0), 0);
        s.set_history(vec![p(200, 20.0), p(0, 0.0), p(100, 10.0)]);
        assert_eq!(
            s.points(),
            &[p(0, 0.0), p(100, 10.0), p(200, 20.0), p(300, 3.0)]
        );
    }

    #[test]
    fn close_live_points_replace_the_tail() {
        let mut s = Series::new();
        s.push(p(0, 1.0), 5_000);
        s.push(p(1_000, 2.0), 5_000);
        s.push(p(2_000, 3.0), 5_000);
        assert_eq!(s.points(), &[p(0, 1.0), p(2_000, 3.0)]);
        s.push(p(6_000, 4.0), 5_000);
        assert_eq!(s.points(), &[p(0, 1.0), p(2_000, 3.0), p(6_000, 4.0)]);
        s.push(p(6_500, 5.0), 5_000);
        assert_eq!(s.points().len(), 3);
        assert_eq!(s.last(), Some(p(6_500, 5.0)));
    }

    #[test]
    fn out_of_order_points_are_ignored_and_equal_times_replace() {
        let mut s = Series::new();
        s.push(p(10, 1.0), 0);
        s.push(p(5, 9.0), 0);
        assert_eq!(s.points(), &[p(10, 1.0)]);
        s.push(p(10, 2.0), 0);
        assert_eq!(s.points(), &[p(10, 2.0)]);
    }

    #[test]
    fn trim_drops_what_left_the_range() {
        let mut s = Series::new();
        for t in 0..10 {
            s.push(p(t * 10, t as f64), 0);
        }
        s.trim(45);
        assert_eq!(s.points().first(), Some(&p(50, 5.0)));
        assert_eq!(s.points().len(), 5);
        s.trim(1_000);
        assert!(s.is_empty());
    }

    #[test]
    fn extent_skips_missing_values() {
        let mut s = Series::new();
        assert_eq!(s.extent(), None);
        s.push(Point::new(0, None), 0);
        assert_eq!(s.extent(), None);
        s.push(p(1, 0.5), 0);
        s.push(p(2, 0.25), 0);
        s.push(Point::new(3, Some(f64::NAN)), 0);
        assert_eq!(s.extent(), Some((0.25, 0.5)));
    }

    #[test]
    fn nearest_picks_the_closer_neighbour() {
        let mut s = Series::new();
        assert_eq!(s.nearest(5), None);
        for t in [0, 10, 20] {
            s.push(p(t, t as f64), 0);
        }
        assert_eq!(s.nearest(-100).map(|p| p.t), Some(0));
        assert_eq!(s.nearest(4).map(|p| p.t), Some(0));
        assert_eq!(s.nearest(5).map(|p| p.t), Some(0));
        assert_eq!(s.nearest(6).map(|p| p.t), Some(10));
        assert_eq!(s.nearest(10).map(|p| p.t), Some(10));
        assert_eq!(s.nearest(1_000).map(|p| p.t), Some(20));
    }

    #[test]
    fn ranges() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.as_str()), Some(r));
            assert_eq!(r.millis() / r.step_ms(), 60);
        }
        assert_eq!(Range::OneHour.step(), "1m");
        assert_eq!(Range::FiveMinutes.step_ms(), 5_000);
        assert_eq!(Range::parse("2h"), None);
    }
}

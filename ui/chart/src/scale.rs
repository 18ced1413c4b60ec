//! Linear scales: a data interval mapped onto a pixel interval.
//!
//! SVG's y axis points down, so charts map the data minimum to the bottom
//! pixel row; a scale does not care which end is larger on either side.

/// Maps the domain `[d0, d1]` linearly onto the range `[r0, r1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Linear {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        Self {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }

    pub fn domain(&self) -> (f64, f64) {
        (self.d0, self.d1)
    }

    pub fn range(&self) -> (f64, f64) {
        (self.r0, self.r1)
    }

    /// The pixel of a data value. A domain of zero width (one distinct
    /// value) maps everything to the middle of the range instead of
    /// dividing by zero.
    pub fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 || !span.is_finite() {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }

    /// The data value at a pixel: what a hover position points at.
    pub fn invert(&self, px: f64) -> f64 {
        let span = self.r1 - self.r0;
        if span == 0.0 {
            return self.d0;
        }
        self.d0 + (px - self.r0) / span * (self.d1 - self.d0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ends_and_middle() {
        let s = Linear::new((0.0, 100.0), (200.0, 0.0));
        assert_eq!(s.map(0.0), 200.0);
        assert_eq!(s.map(100.0), 0.0);
        assert_eq!(s.map(25.0), 150.0);
        // Values outside the domain extrapolate rather than clamp, so a
        // clip path (not the scale) decides what is visible.
        assert_eq!(s.map(200.0), -200.0);
    }

    #[test]
    fn invert_undoes_map() {
        let s = Linear::new((1_000.0, 61_000.0), (40.0, 640.0));
        for v in [1_000.0, 12_345.0, 61_000.0] {
            assert!((s.invert(s.map(v)) - v).abs() < 1e-6);
        }
    }

    #[test]
    fn a_flat_domain_maps_to_the_middle() {
        let s = Linear::new((5.0, 5.0), (0.0, 100.0));
        assert_eq!(s.map(5.0), 50.0);
        assert_eq!(s.map(7.0), 50.0);
        let s = Linear::new((0.0, f64::NAN), (0.0, 100.0));
        assert_eq!(s.map(1.0), 50.0);
    }

    #[test]
    fn a_flat_range_inverts_to_the_domain_start() {
        let s = Linear::new((3.0, 9.0), (10.0, 10.0));
        assert_eq!(s.invert(10.0), 3.0);
    }
}

//! The colour a success rate gets, in tables and charts alike.
//!
//! The thresholds are Linkerd's dashboard's: below 90 % is bad, below
//! 95 % is a warning. No traffic is its own state, not "good".

/// How healthy some traffic looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Good,
    Warning,
    Bad,
    /// No request in the window: nothing to judge.
    Idle,
}

/// Success rates at or above this are good.
pub const GOOD: f64 = 0.95;
/// Success rates at or above this (and below [`GOOD`]) are a warning.
pub const WARNING: f64 = 0.90;

impl Health {
    pub fn of(success_rate: Option<f64>) -> Self {
        match success_rate {
            Some(r) if r.is_nan() => Self::Idle,
            Some(r) if r >= GOOD => Self::Good,
            Some(r) if r >= WARNING => Self::Warning,
            Some(_) => Self::Bad,
            None => Self::Idle,
        }
    }

    /// The CSS class the dashboard's stylesheet colours.
    pub fn class(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Warning => "warning",
            Self::Bad => "bad",
            Self::Idle => "idle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(Health::of(Some(1.0)), Health::Good);
        assert_eq!(Health::of(Some(0.95)), Health::Good);
        assert_eq!(Health::of(Some(0.9499)), Health::Warning);
        assert_eq!(Health::of(Some(0.90)), Health::Warning);
        assert_eq!(Health::of(Some(0.8999)), Health::Bad);
        assert_eq!(Health::of(Some(0.0)), Health::Bad);
        assert_eq!(Health::of(None), Health::Idle);
        assert_eq!(Health::of(Some(f64::NAN)), Health::Idle);
    }

    #[test]
    fn classes() {
        assert_eq!(Health::Bad.class(), "bad");
        assert_eq!(Health::Idle.class(), "idle");
    }
}

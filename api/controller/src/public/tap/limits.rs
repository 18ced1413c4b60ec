//! What one tap client may ask for: a tap stream's rate, and a search's
//! results and time span. Each bound keeps one client from costing the
//! proxies, the store or the controller without limit.

use tonic::Status;

/// Events per second a live tap gets when it names no rate.
pub const DEFAULT_MAX_RPS: u32 = 100;
/// The highest rate a live tap may ask for.
pub const MAX_MAX_RPS: u32 = 10_000;
const DEFAULT_SEARCH_LIMIT: u32 = 100;
const MAX_SEARCH_LIMIT: u32 = 10_000;
/// How far back a search looks when it names no start.
pub const DEFAULT_SEARCH_SPAN_MS: i64 = 3_600_000;

pub fn max_rps(requested: u32) -> Result<u32, Status> {
    match requested {
        0 => Ok(DEFAULT_MAX_RPS),
        n if n > MAX_MAX_RPS => Err(Status::invalid_argument(format!(
            "max_rps {n} is above the limit of {MAX_MAX_RPS}"
        ))),
        n => Ok(n),
    }
}

pub fn search_limit(requested: u32) -> Result<u32, Status> {
    match requested {
        0 => Ok(DEFAULT_SEARCH_LIMIT),
        n if n > MAX_SEARCH_LIMIT => Err(Status::invalid_argument(format!(
            "limit {n} is above the maximum of {MAX_SEARCH_LIMIT}"
        ))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_limits_are_bounded() {
        assert_eq!(max_rps(0).unwrap(), DEFAULT_MAX_RPS);
        assert!(max_rps(MAX_MAX_RPS + 1).is_err());
        assert_eq!(search_limit(0).unwrap(), DEFAULT_SEARCH_LIMIT);
        assert_eq!(search_limit(MAX_SEARCH_LIMIT).unwrap(), MAX_SEARCH_LIMIT);
        assert!(search_limit(MAX_SEARCH_LIMIT + 1).is_err());
    }
}

//! Quantiles over samples and over classic `le` buckets, with Prometheus'
//! interpolation and its special cases (NaN, ±Inf, missing `+Inf` bucket,
//! non-monotonic buckets).

/// φ-quantile of `values` with linear interpolation between neighbours
/// (Prometheus' `quantile`). Sorts `values`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as Go's sort with `math.IsNaN(vi)` as less does.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).expect("no NaN here"),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// φ-quantile from cumulative `(upper bound, count)` buckets
/// (`histogram_quantile` over classic histograms).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|b| b.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with the same upper bound.
fn coalesce(buckets: &mut Vec<(f64, f64)>) {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, count) in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => out.push((le, count)),
        }
    }
    *buckets = out;
}

/// Raises any count below an earlier bucket's count to it.
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut max = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_quantiles() {
        assert_eq!(quantile(0.5, &mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(0.25, &mut [1.0, 2.0, 3.0, 4.0]), 1.75);
        assert!(quantile(0.5, &mut []).is_nan());
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
    }

    #[test]
    fn bucket_quantiles() {
        let mut b = vec![(f64::INFINITY, 10.0), (1.0, 5.0), (2.0, 8.0)];
        assert_eq!(bucket_quantile(0.5, &mut b), 1.0);
        let mut b = vec![(1.0, 5.0), (2.0, 8.0), (f64::INFINITY, 10.0)];
        assert!((bucket_quantile(0.65, &mut b) - 1.5).abs() < 1e-12);
        // Past the last finite bucket: its bound.
        let mut b = vec![(1.0, 5.0), (2.0, 8.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.99, &mut b), 2.0);
        let mut b = vec![(1.0, 5.0), (2.0, 8.0)];
        assert!(bucket_quantile(0.5, &mut b).is_nan());
    }
}

//! Software prefetch: starts loading a cache line that the code will read
//! shortly, so cache misses that would otherwise come one after another
//! overlap. It is a hint: it never faults, and what the program computes
//! does not change whether it happens or not.
//!
//! Ingest spends much of its time waiting for memory: finding a series is
//! three dependent misses (hash table slot, series, label bytes), and the
//! lock and reference-count atomics between two lookups keep the CPU from
//! starting the next lookup's loads early. A prefetch is not held back by
//! them.

/// Starts loading the cache line that holds `p`.
#[inline(always)]
#[allow(unsafe_code, reason = "the prefetch intrinsic is an unsafe fn")]
pub(crate) fn line<T: ?Sized>(p: *const T) {
    // SAFETY: SSE is part of every x86_64 CPU, and a prefetch reads
    // nothing the program sees: any address, even an invalid one, is fine.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading the first `max_lines` cache lines of `bytes`.
#[inline(always)]
pub(crate) fn bytes(bytes: &[u8], max_lines: usize) {
    for offset in (0..bytes.len()).step_by(64).take(max_lines) {
        line(bytes[offset..].as_ptr());
    }
}

//! Keeping the store's resident memory close to what it holds.
//!
//! glibc's malloc keeps freed memory for reuse, which costs the store
//! twice over:
//!
//! - Ingest and block cuts free many small allocations (open chunks as
//!   they freeze, a cut's temporary buffers, postings as they grow) next
//!   to ones that stay live. malloc only returns the top of a heap by
//!   itself, so the process would stay near its peak size; `malloc_trim`
//!   also releases the whole free pages inside the heaps. It walks every
//!   arena, so it runs once per maintenance pass (as Go's scavenger runs
//!   in the background), not on every free.
//! - Large short-lived buffers (a remote-write body, a block's column
//!   builders, LZ4 frames) would land in the heaps between long-lived
//!   chunks once malloc's adaptive mmap threshold has risen past them;
//!   [`tune_allocator`] pins the threshold so they are mapped and
//!   unmapped on their own.

/// Most bytes an allocation may have and still come from a heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Pins malloc's mmap threshold (see the module docs). Call it once at
/// start-up, before the store allocates much; the `conduit-telemetry-store`
/// binary does. A no-op where the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "FFI to the C allocator's tuning call")]
pub fn tune_allocator() {
    // SAFETY: mallopt only sets an allocator parameter; it is safe to
    // call at any time and from any thread.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if ok != 1 {
        tracing::warn!("could not set malloc's mmap threshold; memory use may run higher");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Returns whole free pages of the allocator's heaps to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "FFI to the C allocator's trim call")]
pub(crate) fn release_free() {
    // SAFETY: malloc_trim only reorganises the allocator's own free lists;
    // it takes the arena locks itself and touches no live allocation.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "returned free heap pages to the OS"
    );
}

/// Other allocators return memory by themselves, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free() {}

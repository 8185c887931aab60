//! Handing freed heap back to the kernel after the big passes.
//!
//! glibc keeps what a thread frees in its arena, and returns only the top of the heap on its
//! own: after the first listing of 10,000 Services (pages of JSON parsed, then trimmed) and
//! after a pass over all of them, tens of MiB stay resident that nothing uses. A role calls
//! [`give_back`] at those points, never per change: a trim walks every free chunk.

/// Returns the free pages of every arena to the kernel (glibc only; elsewhere a no-op).
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

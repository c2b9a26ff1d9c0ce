//! What every example binary shares.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

/// mimalloc keeps freed memory for reuse, where glibc's malloc returns large blocks to the
/// kernel and their fresh pages fault in again at every training step (benches/RESULTS.md).
#[global_allocator]
static ALLOCATOR: KeepFreedMemory = KeepFreedMemory;

/// `mi_option_purge_delay` in the enum of mimalloc 3 that libmimalloc-sys 0.1.49 builds: how
/// long freed memory stays mapped before it is handed back to the kernel.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc, told never to purge freed memory. By default it hands memory that stays free for
/// a second back to the kernel, and a training step longer than that (a U-Net step on a CPU)
/// then faults every page of its activations in afresh, each zeroed by the kernel: a quarter of
/// the U-Net's step time. Kept mapped, the memory of one step serves the next, for a peak
/// resident size 5-15% larger (benches/RESULTS.md).
struct KeepFreedMemory;

static CONFIGURED: AtomicBool = AtomicBool::new(false);

impl KeepFreedMemory {
    fn configure() {
        if !CONFIGURED.load(Ordering::Relaxed) {
            // SAFETY: sets one integer option; -1 means "never purge" (mimalloc.h).
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
            CONFIGURED.store(true, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call goes to mimalloc unchanged.
unsafe impl GlobalAlloc for KeepFreedMemory {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::configure();
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::configure();
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

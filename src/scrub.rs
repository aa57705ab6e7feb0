//! Secrets stay in the master. The master holds the admin token and the basic-auth hashes;
//! a worker is a fork of it and needs neither. Its live copies are wiped in the child right
//! after fork (`Config::forget_admin_secrets`), and this allocator wipes every block the
//! master frees (the config file's text, parser copies, old configs, request heads that
//! carried a token), so no freed copy is inherited either. Workers and the other children
//! turn wiping off: they free buffers all the time and hold nothing to wipe.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroize;

/// Wraps an allocator; while on, a block is zeroed before it goes back to it.
pub struct Scrubbing<A>(pub A);

static ON: AtomicBool = AtomicBool::new(false);

/// Turns wiping on (the master, from its first allocation on) or off (a forked child).
pub fn wipe_freed(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Overwrites the stack below the caller's frame. In a forked child the master's returned
/// frames are still there (a read buffer that held a request with the token, a parser's
/// copy of the config text); a fork happens from the loop, a few frames deep, so what lies
/// below is dead and 256 KiB covers what the master's calls ever used of it.
#[inline(never)]
pub fn wipe_stack() {
    let mut dead = [0u8; 256 * 1024];
    dead.zeroize();
    std::hint::black_box(&dead);
}

/// # Safety
/// `ptr` points to `len` bytes owned by the caller.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller owns these bytes; zeroize's volatile writes are not optimized
    // away before the free that follows.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }.zeroize();
}

// SAFETY: every call goes to the inner allocator with the layout it was given; wiping only
// writes to a block before it is freed.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Scrubbing<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            unsafe { wipe(ptr, layout.size()) };
        }
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ON.load(Ordering::Relaxed) {
            return unsafe { self.0.realloc(ptr, layout, new_size) };
        }
        // A realloc may move the block and free the old one unwiped: move it here instead.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = unsafe { self.0.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                wipe(ptr, layout.size());
                self.0.dealloc(ptr, layout);
            }
        }
        new
    }
}

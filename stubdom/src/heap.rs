//! The stub's heap: `linked_list_allocator`'s first-fit heap over the free RAM after
//! the image and the page tables, with a high-water mark.
//!
//! The stub has one vCPU and its interrupt handlers never allocate, so the heap needs
//! no lock: [`StubHeap`] hands out `&mut` to the inner heap only inside
//! `alloc`/`dealloc`, which do not nest.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;

use linked_list_allocator::Heap;

struct Inner {
    heap: Heap,
    high_water: usize,
}

/// A `#[global_allocator]` for a single-threaded, non-reentrant world.
pub struct StubHeap {
    inner: UnsafeCell<Inner>,
}

// SAFETY: the stub is single-threaded and nothing allocates from interrupt context
// (see the module comment); tests use their own instances from one thread each.
unsafe impl Sync for StubHeap {}

/// What the heap looks like now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    pub size: usize,
    pub used: usize,
    pub high_water: usize,
}

impl Default for StubHeap {
    fn default() -> Self {
        Self::empty()
    }
}

impl StubHeap {
    pub const fn empty() -> Self {
        StubHeap {
            inner: UnsafeCell::new(Inner {
                heap: Heap::empty(),
                high_water: 0,
            }),
        }
    }

    /// Give the heap `[bottom, bottom + size)`.
    ///
    /// # Safety
    /// Once, before any allocation; the range must be unused, mapped, writable RAM.
    pub unsafe fn init(&self, bottom: *mut u8, size: usize) {
        // SAFETY: no allocation is in progress (caller), so no other borrow exists.
        let inner = unsafe { &mut *self.inner.get() };
        // SAFETY: the caller's contract is the heap's.
        unsafe { inner.heap.init(bottom, size) };
    }

    pub fn stats(&self) -> HeapStats {
        // SAFETY: a read between allocations (single-threaded).
        let inner = unsafe { &*self.inner.get() };
        HeapStats {
            size: inner.heap.size(),
            used: inner.heap.used(),
            high_water: inner.high_water,
        }
    }
}

unsafe impl GlobalAlloc for StubHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: not re-entered (module comment).
        let inner = unsafe { &mut *self.inner.get() };
        match inner.heap.allocate_first_fit(layout) {
            Ok(p) => {
                inner.high_water = inner.high_water.max(inner.heap.used());
                p.as_ptr()
            }
            Err(()) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: not re-entered.
        let inner = unsafe { &mut *self.inner.get() };
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
            unsafe { inner.heap.deallocate(p, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    #[test]
    fn high_water_mark() {
        #[repr(align(4096))]
        struct Arena([u8; 64 * 1024]);
        let mut arena = std::boxed::Box::new(Arena([0; 64 * 1024]));
        let h = StubHeap::empty();
        // SAFETY: the arena outlives the heap's use below.
        unsafe { h.init(arena.0.as_mut_ptr(), arena.0.len()) };
        let l = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: plain alloc/dealloc pairs.
        unsafe {
            let a = h.alloc(l);
            let b = h.alloc(l);
            assert!(!a.is_null() && !b.is_null());
            h.dealloc(a, l);
            h.dealloc(b, l);
            assert!(
                h.alloc(Layout::from_size_align(1 << 20, 8).unwrap())
                    .is_null()
            );
        }
        let s = h.stats();
        assert_eq!(s.used, 0);
        assert!(s.high_water >= 2000 && s.high_water < 2100, "{s:?}");
        assert_eq!(s.size, 64 * 1024);
    }
}

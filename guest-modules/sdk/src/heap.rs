//! [`Heap`], a module's allocator (feature `heap`, which the built-in modules turn on).
//!
//! Why not the default: std's allocator on `wasm32-wasip2` is wasi-libc's dlmalloc, which
//! takes the initial memory from `__heap_base` to its end as its first segment and writes
//! that segment's footer at the very end, tens of KiB past anything a call allocates. The
//! host keeps every page a module touched resident, so that footer is one more page in
//! every instance: 2 MiB of a gateway with 256 streams in flight through two modules
//! (docs/benchmarks.md). This allocator writes only into blocks it hands out or took back.
//!
//! How: blocks of a power-of-two size from 16 B to 2 KiB, each class with a free list kept
//! in the freed blocks themselves; larger blocks (a multiple of 16 B) on one first-fit list,
//! split when much larger than asked. New blocks come from a bump pointer that starts at
//! `__heap_base` and grows the memory when it reaches its end. `dealloc` is told the
//! layout, so no block carries a header. A module is single-threaded.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const WASM_PAGE: usize = 65536;
/// The smallest block: room for a free-list link, and 16-byte aligned.
const MIN_BLOCK: usize = 16;
/// Size classes 16, 32, …, 2048 bytes.
const CLASSES: usize = 8;
const MAX_CLASS_BLOCK: usize = MIN_BLOCK << (CLASSES - 1);
/// A larger free block is split when at least this much would be left over.
const SPLIT: usize = 256;

/// The allocator; see the module documentation.
pub struct Heap(UnsafeCell<State>);

struct State {
    /// The next unused byte, and the end of the memory; both 0 until the first allocation.
    next: usize,
    end: usize,
    /// The first free block of each size class (0: none); each holds the next's address.
    free: [usize; CLASSES],
    /// The first free large block; each starts with a [`Large`].
    large: usize,
}

/// The head of a free large block.
#[repr(C)]
struct Large {
    size: usize,
    next: usize,
}

// SAFETY: a wasm32-wasip2 module runs on one thread: the cell is never shared across
// threads.
unsafe impl Sync for Heap {}

impl Heap {
    /// An empty heap; the first allocation starts it at `__heap_base`.
    pub const fn new() -> Self {
        Heap(UnsafeCell::new(State { next: 0, end: 0, free: [0; CLASSES], large: 0 }))
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of a block of `size` bytes aligned to `align`, or `None` for a large one.
fn class(size: usize, align: usize) -> Option<usize> {
    let block = size.max(align).max(MIN_BLOCK).next_power_of_two();
    (block <= MAX_CLASS_BLOCK).then(|| (block / MIN_BLOCK).trailing_zeros() as usize)
}

/// The size of a large block for `layout`.
fn large_size(layout: Layout) -> usize {
    layout.size().next_multiple_of(MIN_BLOCK)
}

impl State {
    /// `size` fresh bytes aligned to `align`, from the bump pointer; null when the memory
    /// cannot grow.
    unsafe fn bump(&mut self, size: usize, align: usize) -> *mut u8 {
        if self.end == 0 {
            unsafe extern "C" {
                static __heap_base: u8;
            }
            self.next = core::ptr::addr_of!(__heap_base) as usize;
            self.end = core::arch::wasm32::memory_size(0) * WASM_PAGE;
        }
        let start = self.next.next_multiple_of(align);
        let Some(stop) = start.checked_add(size) else { return null_mut() };
        if stop > self.end {
            let pages = (stop - self.end).div_ceil(WASM_PAGE);
            let old = core::arch::wasm32::memory_grow(0, pages);
            if old == usize::MAX {
                return null_mut();
            }
            if old * WASM_PAGE != self.end {
                // Something else grew the memory meanwhile: the new pages are ours, what
                // lies before them is not.
                self.next = old * WASM_PAGE;
                self.end = (old + pages) * WASM_PAGE;
                return unsafe { self.bump(size, align) };
            }
            self.end = (old + pages) * WASM_PAGE;
        }
        self.next = start + size;
        start as *mut u8
    }

    unsafe fn alloc_large(&mut self, size: usize, align: usize) -> *mut u8 {
        let mut link: *mut usize = &mut self.large;
        // SAFETY: every address on the list is a free large block this heap handed out,
        // which starts with a `Large`.
        unsafe {
            while *link != 0 {
                let block = *link as *mut Large;
                let found = (*block).size;
                if found >= size && (block as usize).is_multiple_of(align) {
                    *link = (*block).next;
                    if found - size >= SPLIT {
                        self.free_large(block as usize + size, found - size);
                    }
                    return block as *mut u8;
                }
                link = &mut (*block).next;
            }
            self.bump(size, align.max(MIN_BLOCK))
        }
    }

    unsafe fn free_large(&mut self, at: usize, size: usize) {
        // SAFETY: `at` is a block of at least `size` ≥ 16 bytes that no one uses.
        unsafe { (at as *mut Large).write(Large { size, next: self.large }) };
        self.large = at;
    }
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and the allocator is never reentered.
        let state = unsafe { &mut *self.0.get() };
        match class(layout.size(), layout.align()) {
            Some(c) => {
                let head = state.free[c];
                if head != 0 {
                    // SAFETY: a free block of this class holds the next one's address.
                    state.free[c] = unsafe { *(head as *const usize) };
                    return head as *mut u8;
                }
                let block = MIN_BLOCK << c;
                // Aligned to its own size, a block serves any alignment up to that size.
                unsafe { state.bump(block, block) }
            }
            None => unsafe { state.alloc_large(large_size(layout), layout.align()) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`; `ptr` came from `alloc` with this `layout`.
        let state = unsafe { &mut *self.0.get() };
        match class(layout.size(), layout.align()) {
            Some(c) => {
                unsafe { (ptr as *mut usize).write(state.free[c]) };
                state.free[c] = ptr as usize;
            }
            None => unsafe { state.free_large(ptr as usize, large_size(layout)) },
        }
    }
}

//! The parser allocates for what arrived, never for what a client declares: a request that announces
//! 2^20 arguments of 512 MiB each, and sends nothing else, costs almost nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use resp::{parse_command, Limits, RequestParser};

struct CountingAllocator;

thread_local! {
    static ALLOCATED_BYTES: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED_BYTES.try_with(|count| count.set(count.get() + layout.size()));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocated_by(work: impl FnOnce()) -> usize {
    let before = ALLOCATED_BYTES.with(Cell::get);
    work();
    ALLOCATED_BYTES.with(Cell::get) - before
}

#[test]
fn declared_sizes_are_not_allocated() {
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(1024);
    buf.extend_from_slice(b"*1048576\r\n$536870912\r\n");
    let mut parser = RequestParser::new();
    let bytes = allocated_by(|| {
        assert_eq!(parser.parse(&mut buf, &limits).unwrap(), None);
        assert_eq!(parse_command(&mut buf, &limits).unwrap(), None);
    });
    assert!(bytes < 4096, "allocated {bytes} bytes for a 22-byte request");

    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1000000000000\r\n"[..]);
    let bytes = allocated_by(|| assert!(parse_command(&mut buf, &limits).is_err()));
    assert!(bytes < 4096, "allocated {bytes} bytes");
}

//! Fuzz target: bytes off the wire through framing and parsing, as a worker sees them.
//! Nothing may panic, and what parses must respect the bounds.
#![no_main]

use exchange::framing::{examine, Frame};
use exchange::protocol::reply::read_reply;
use exchange::protocol::{parse, ParseLimits};
use libfuzzer_sys::fuzz_target;

const REQUEST_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { depth_max: 8, operations_max: 64 };
    for peer_closed in [false, true] {
        if let Frame::Complete(range) = examine(data, peer_closed, REQUEST_BYTES_MAX) {
            assert!(range.end <= data.len() && range.len() <= REQUEST_BYTES_MAX);
            if let Ok(request) = parse(&data[range], limits) {
                assert!(request.operation_count() <= limits.operations_max);
            }
        }
    }
    // The document alone too: most inputs never get past the length line otherwise.
    if let Ok(request) = parse(data, limits) {
        assert!(request.operation_count() <= limits.operations_max);
    }
    let _ = read_reply(data);
});

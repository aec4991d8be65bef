//! Fuzz target: bytes off the wire through framing and parsing, as a worker sees them.
//! Nothing may panic, what parses must respect the bounds, and the framing's outcome
//! must not depend on how the bytes were split into reads.
#![no_main]

use exchange::framing::{examine, Frame, Framer};
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
    // Fed in pieces (cut where the first bytes say), the outcome is the same as whole.
    let cuts: Vec<usize> = data.iter().take(4).map(|&b| usize::from(b)).collect();
    for peer_closed in [false, true] {
        let whole = examine(data, peer_closed, REQUEST_BYTES_MAX);
        let mut framer = Framer::new(REQUEST_BYTES_MAX);
        let mut end = 0;
        let mut pieces = Frame::Incomplete;
        for cut in &cuts {
            end = (end + cut).min(data.len());
            pieces = framer.advance(&data[..end], false);
            if pieces != Frame::Incomplete {
                break;
            }
        }
        if pieces == Frame::Incomplete {
            pieces = framer.advance(data, peer_closed);
        }
        assert_eq!(pieces, whole);
    }
    // The document alone too: most inputs never get past the length line otherwise.
    if let Ok(request) = parse(data, limits) {
        assert!(request.operation_count() <= limits.operations_max);
    }
    let _ = read_reply(data);
});

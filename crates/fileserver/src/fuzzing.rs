//! The entry point of the `parse_request` fuzz target
//! (`crates/fileserver/fuzz`), public so that the checked-in corpus also
//! runs under `cargo test`.
//!
//! The input is treated like a connection's byte stream: it is parsed
//! request after request, as the server does, under the default limits and
//! under small ones (so the content-size and line-length checks are
//! reachable by short inputs), and with no content limit (sizes near
//! `usize::MAX`). [`request_len`], which the server sizes its buffer by,
//! must agree with what the parser consumes.

use crate::protocol::{is_whitespace, parse_request, request_len, Limits, Parsed, Request};

/// Parses `input` as a stream of requests under default and small limits
/// and checks what the parser promises: progress (every request or
/// non-closing error consumes at least one byte and no more than it was
/// given), limits respected, and every accepted request re-encodes to the
/// very bytes it was parsed from or at least parses back to itself.
///
/// # Panics
/// Only if one of those promises is broken: that is the bug the fuzzer hunts.
pub fn parse_stream(input: &[u8]) {
    let small = Limits {
        max_filename_bytes: 8,
        max_line_bytes: 40,
        max_content_bytes: 16,
    };
    // No effective content limit: sizes near usize::MAX must not overflow.
    let unlimited = Limits {
        max_content_bytes: usize::MAX,
        ..Limits::default()
    };
    for limits in [Limits::default(), small, unlimited] {
        let mut rest = input;
        loop {
            match parse_request(rest, &limits) {
                Parsed::Incomplete => {
                    // The length a server reserves for is the one the parser waits for.
                    if let Some(total) = request_len(rest, &limits) {
                        assert!(
                            total > rest.len(),
                            "incomplete, yet {total} bytes of {} suffice",
                            rest.len()
                        );
                    }
                    break;
                }
                Parsed::Error { close: true, .. } => break,
                Parsed::Error { consumed, .. } => {
                    assert!(consumed > 0 && consumed <= rest.len(), "bad consumed {consumed}");
                    rest = &rest[consumed..];
                }
                Parsed::Request(req, consumed) => {
                    assert!(consumed > 0 && consumed <= rest.len(), "bad consumed {consumed}");
                    if let Some(total) = request_len(rest, &limits) {
                        assert_eq!(total, consumed, "request_len disagrees with the parser");
                    }
                    // The very rule a client checks before sending
                    // (`Request::validate`): no whitespace, vertical tab
                    // included, and a bounded length.
                    assert!(req.name().len() <= limits.max_filename_bytes && !req.name().is_empty());
                    assert!(
                        !req.name().iter().any(|&b| is_whitespace(b)),
                        "whitespace in the name {:?}",
                        String::from_utf8_lossy(req.name())
                    );
                    check_round_trip(&req);
                    rest = &rest[consumed..];
                }
            }
        }
    }
}

/// Checks that `req` encodes to bytes that parse back to `req` (limits
/// aside: the re-encoded line may be longer than the original, e.g. when
/// the original used no exptime but whitespace runs).
///
/// # Panics
/// If it does not.
pub fn check_round_trip(req: &Request) {
    let mut wire = Vec::new();
    req.encode(&mut wire);
    let loose = Limits {
        max_line_bytes: usize::MAX,
        max_filename_bytes: usize::MAX,
        max_content_bytes: usize::MAX,
    };
    match parse_request(&wire, &loose) {
        Parsed::Request(again, n) => {
            assert_eq!(&again, req, "re-encoded request parses differently");
            assert_eq!(n, wire.len(), "re-encoded request not consumed whole");
        }
        other => panic!("re-encoded {req:?} does not parse: {other:?}"),
    }
}

//! The entry points of the fuzz targets in `crates/sort/fuzz`, public so that
//! the checked-in corpora also run under `cargo test` (`tests/fuzz_corpus.rs`).
//!
//! Each `check_*` function feeds one input to a parser and panics only if the
//! parser breaks a promise: it panicked itself, accepted something it should
//! not have, or refused without the documented error. The `assert_*` helpers
//! hold the checks on an accepted result, so unit tests can show each of
//! them failing on a broken one.

use std::io::Read;
use std::time::Duration;

use crate::error::Error;
use crate::net::{self, Config, Hello, StreamDecoder, MAGIC, MAX_SERVERS, TAG_DATA, TAG_END};
use crate::record::{key_prefix, RECORD_LEN};
use crate::size::parse_size;

/// Runs a receiver over a fuzzed peer connection: the hello check, then the
/// frame decoder. The first three bytes choose the receiver (server count
/// `n = 2^(b0 % 5)`, so 1..=16; its id `b1 % n`; its frame size `1 + b2 % 16`
/// records), the fourth how many bytes each read returns at most (`0`: no
/// limit), as TCP may split a stream anywhere; the rest is what the peer
/// sent.
///
/// Checks: the hello is taken exactly when it carries [`MAGIC`], our server
/// count and another server's id; the decoder never panics, hands on pieces
/// of whole records that fit the buffer it was given (so it allocates no more
/// than our frame size, whatever a frame claims), each record belonging to
/// this server; a stream it accepts ends with an end-of-stream whose count is
/// the records handed on, and those are exactly the records its data frames
/// carried; a stream it refuses gets an [`Error::Net`] naming the peer.
///
/// Returns whether the stream was accepted.
///
/// # Panics
/// When one of those promises is broken: that is the bug the fuzzer hunts.
pub fn check_netsort_stream(input: &[u8]) -> bool {
    let [b0, b1, b2, b3, wire @ ..] = input else {
        return false;
    };
    let n = 1usize << (b0 % 5);
    let my_id = (*b1 as usize % n) as u32;
    let chunk_bytes = (1 + *b2 as usize % 16) * RECORD_LEN;
    let step = if *b3 == 0 { usize::MAX } else { *b3 as usize };
    let Some((hello, stream)) = wire.split_first_chunk::<16>() else {
        return false; // the real receiver times out waiting for the rest
    };
    let who = "server under test";
    let outcome = net::parse_hello(hello, who, my_id, n);
    assert_hello_outcome(hello, my_id, n, &outcome);
    if outcome.is_err() {
        return false;
    }

    let decoder = StreamDecoder {
        who,
        my_id,
        n,
        chunk_bytes,
    };
    let mut reader = Trickle {
        data: stream,
        at: 0,
        step,
    };
    // The capacity of the buffer handed out last: the piece read into it
    // must come back without having grown.
    let given = std::cell::Cell::new(0);
    let (mut takes, mut pieces) = (0usize, 0usize);
    let mut delivered: Vec<u8> = Vec::new();
    let result = decoder.decode(
        &mut reader,
        || {
            takes += 1;
            let buffer = Vec::with_capacity(chunk_bytes);
            given.set(buffer.capacity());
            buffer
        },
        |piece| {
            assert_piece(&piece, piece.capacity(), given.get(), my_id, n, chunk_bytes);
            pieces += 1;
            delivered.extend_from_slice(&piece);
            Ok(())
        },
        |e| net::read_error(who, e, Duration::from_secs(1)),
    );
    // One buffer per piece, plus the one a failed read was going into.
    assert!(takes <= pieces + 1, "{takes} buffers taken for {pieces} pieces");
    match result {
        Ok(total) => {
            assert_accepted_stream(&stream[..reader.at], &delivered, total);
            true
        }
        Err(Error::Net(msg)) => {
            assert!(msg.contains(who), "an error that does not name the peer: {msg}");
            false
        }
        Err(other) => panic!("a refused stream gave {other:?}, not a netsort error"),
    }
}

/// A reader over `data` that returns at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    at: usize,
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.at..];
        let k = buf.len().min(self.step).min(rest.len());
        buf[..k].copy_from_slice(&rest[..k]);
        self.at += k;
        Ok(k)
    }
}

/// Checks [`net::parse_hello`]'s verdict on `hello` for server `my_id` of `n`.
fn assert_hello_outcome(hello: &[u8; 16], my_id: u32, n: usize, outcome: &Result<u32, Hello>) {
    let peer = u32::from_be_bytes(hello[8..12].try_into().expect("4 bytes"));
    let count = u32::from_be_bytes(hello[12..16].try_into().expect("4 bytes"));
    match outcome {
        Ok(id) => {
            assert!(hello[..8] == MAGIC, "a hello without the magic was taken");
            assert_eq!(count as usize, n, "a hello for {count} servers was taken by one of {n}");
            assert_eq!(*id, peer, "the hello says server {peer}, the parse {id}");
            assert!(
                (*id as usize) < n && *id != my_id,
                "server {my_id} of {n} took a hello from server {id}"
            );
        }
        Err(Hello::NotAPeer(_)) => assert!(hello[..8] != MAGIC, "a hello with the magic was ignored"),
        Err(Hello::Refused(Error::Net(msg))) => {
            assert!(hello[..8] == MAGIC, "a hello without the magic failed the run: {msg}");
            assert!(
                count as usize != n || peer as usize >= n || peer == my_id,
                "a good hello was refused: {msg}"
            );
        }
        Err(Hello::Refused(other)) => panic!("a refused hello gave {other:?}, not a netsort error"),
    }
}

/// Checks one piece the decoder handed on: whole records, at most
/// `chunk_bytes`, still in the buffer it was read into (its `capacity` is the
/// `given_capacity` it was taken with), and every record owned by server
/// `my_id` of `n`.
fn assert_piece(piece: &[u8], capacity: usize, given_capacity: usize, my_id: u32, n: usize, chunk_bytes: usize) {
    assert!(
        !piece.is_empty() && piece.len().is_multiple_of(RECORD_LEN) && piece.len() <= chunk_bytes,
        "a piece of {} bytes (frame size {chunk_bytes})",
        piece.len()
    );
    assert_eq!(
        capacity,
        given_capacity,
        "a piece of {} bytes outgrew its buffer",
        piece.len()
    );
    let bits = n.trailing_zeros();
    for (i, record) in piece.chunks_exact(RECORD_LEN).enumerate() {
        let owner = net::destination(key_prefix(record), bits);
        assert_eq!(owner, my_id as usize, "record {i} of a piece belongs to server {owner}");
    }
}

/// Checks an accepted stream: `stream` (what the decoder read after the
/// hello) is data frames then an end-of-stream saying `total`, `total` is the
/// records `delivered`, and those are the frames' records in order.
fn assert_accepted_stream(stream: &[u8], delivered: &[u8], total: u64) {
    assert_eq!(
        total,
        (delivered.len() / RECORD_LEN) as u64,
        "the end-of-stream count differs from the records handed on"
    );
    let mut carried = Vec::new();
    let mut rest = stream;
    loop {
        match rest.split_first() {
            Some((&TAG_DATA, after)) => {
                let (len, after) = after.split_first_chunk::<4>().expect("a whole frame length");
                let len = u32::from_be_bytes(*len) as usize;
                let records = after.get(..len).expect("a whole data frame");
                carried.extend_from_slice(records);
                rest = &after[len..];
            }
            Some((&TAG_END, after)) => {
                let count: [u8; 8] = after.try_into().expect("the stream ends right after the end-of-stream");
                assert_eq!(
                    u64::from_be_bytes(count),
                    total,
                    "the end-of-stream frame says another count"
                );
                break;
            }
            other => panic!("the accepted stream has {other:?} where a frame should start"),
        }
    }
    assert!(
        carried == delivered,
        "the records handed on are not the frames' records"
    );
}

/// Parses fuzzed bytes as a netsort config with [`Config::from_yaml`] (the
/// file is read as UTF-8 text, so other bytes never reach it).
///
/// Checks: no panic; an accepted config passes [`assert_valid_config`] and
/// parses again to the same config when written back in the documented
/// format with its servers listed in reverse (the order of the list does not
/// matter); a refused one gets an [`Error::Config`] with a message.
///
/// Returns whether the config was accepted.
///
/// # Panics
/// When one of those promises is broken.
pub fn check_netsort_config(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    match Config::from_yaml(text) {
        Ok(config) => {
            assert_valid_config(&config);
            let written = config_yaml(&config);
            let again = Config::from_yaml(&written)
                .unwrap_or_else(|e| panic!("an accepted config written back does not parse: {e}\n{written}"));
            assert_eq!(
                again, config,
                "an accepted config written back parses differently:\n{written}"
            );
            true
        }
        Err(Error::Config(msg)) => {
            assert!(!msg.is_empty(), "a config error without a message");
            false
        }
        Err(other) => panic!("a refused config gave {other:?}, not a config error"),
    }
}

/// Checks what [`Config`] promises: `1..=MAX_SERVERS` servers, a power of
/// two, `servers[i].id == i`, usable ports and trimmed, non-empty hosts, and
/// [`Config::partition_bits`] that send the key space to exactly servers
/// `0..n`.
fn assert_valid_config(config: &Config) {
    let n = config.servers.len();
    assert!(
        (1..=MAX_SERVERS).contains(&n) && n.is_power_of_two(),
        "a config with {n} servers"
    );
    for (i, server) in config.servers.iter().enumerate() {
        assert_eq!(server.id as usize, i, "server {i} has id {}", server.id);
        assert_ne!(server.port, 0, "server {i} has port 0");
        assert!(
            !server.host.is_empty() && server.host.trim() == server.host,
            "server {i} has host {:?}",
            server.host
        );
    }
    let bits = config.partition_bits();
    assert_eq!(1usize << bits, n, "{bits} partition bits for {n} servers");
    assert_eq!(
        net::destination(0, bits),
        0,
        "the smallest key goes to another server than 0"
    );
    assert_eq!(
        net::destination(u64::MAX, bits),
        n - 1,
        "the largest key goes to another server than the last"
    );
}

/// `config` in the documented format, servers in reverse order, hosts
/// double-quoted with everything but printable ASCII escaped.
fn config_yaml(config: &Config) -> String {
    let mut yaml = String::from("servers:\n");
    for server in config.servers.iter().rev() {
        let mut host = String::new();
        for c in server.host.chars() {
            match c {
                ' '..='~' if c != '"' && c != '\\' => host.push(c),
                _ => host.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        yaml.push_str(&format!(
            "  - {{serverId: {}, host: \"{host}\", port: {}}}\n",
            server.id, server.port
        ));
    }
    yaml
}

/// Parses fuzzed bytes as a size with [`parse_size`] (command-line
/// arguments are text, so other bytes never reach it).
///
/// Checks: no panic; a plain number parses to itself; an accepted size is
/// consistent with its number and unit ([`assert_size_consistent`]); a
/// refused one gets an [`Error::BadSize`] that quotes the input.
///
/// Returns whether the size was accepted.
///
/// # Panics
/// When one of those promises is broken.
pub fn check_size(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(plain) = trimmed.parse::<u64>() {
            assert_eq!(parse_size(text).ok(), Some(plain), "the plain number {text:?}");
        }
    }
    match parse_size(text) {
        Ok(bytes) => {
            assert_size_consistent(text, bytes);
            true
        }
        Err(Error::BadSize { input, reason }) => {
            assert_eq!(input, text, "a size error quotes another input");
            assert!(!reason.is_empty(), "a size error without a reason");
            false
        }
        Err(other) => panic!("a refused size gave {other:?}, not a size error"),
    }
}

/// Checks that `bytes` is what the module docs of [`crate::size`] make of
/// `text`: its number times its unit's factor (exactly for a whole number;
/// for a fraction, between the whole part's and the next whole number's
/// size), the same in upper case and with the unit's optional trailing `b`
/// toggled.
fn assert_size_consistent(text: &str, bytes: u64) {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let unit = unit.trim();
    let factor: u128 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => panic!("{text:?} was taken with the unknown unit {unit:?}"),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().expect("an accepted size has a whole number")
    };
    let low = whole * factor;
    if fraction.bytes().all(|b| b == b'0') {
        assert_eq!(bytes as u128, low, "{text:?} is {whole} x {factor}");
    } else {
        assert!(
            (low..low + factor).contains(&(bytes as u128)),
            "{text:?} gave {bytes}, outside [{low}, {})",
            low + factor
        );
    }
    let upper = text.to_ascii_uppercase();
    assert_eq!(parse_size(&upper).ok(), Some(bytes), "{upper:?} differs from {text:?}");
    let toggled = match unit.strip_suffix('b') {
        Some(short) => format!("{number}{short}"),
        None => format!("{number}{unit}b"),
    };
    assert_eq!(
        parse_size(&toggled).ok(),
        Some(bytes),
        "{toggled:?} differs from {text:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Server;

    /// A record whose key starts with `top`.
    fn record(top: u8) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_LEN];
        r[0] = top;
        r
    }

    fn hello(peer: u32, count: u32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&peer.to_be_bytes());
        h[12..].copy_from_slice(&count.to_be_bytes());
        h
    }

    /// Receiver: server 0 of 2, frames of 1 record, no read limit.
    fn stream_input(records: &[Vec<u8>], claimed: u64) -> Vec<u8> {
        let mut input = vec![1, 0, 0, 0];
        input.extend_from_slice(&hello(1, 2));
        input.push(TAG_DATA);
        input.extend_from_slice(&((records.len() * RECORD_LEN) as u32).to_be_bytes());
        for r in records {
            input.extend_from_slice(r);
        }
        input.push(TAG_END);
        input.extend_from_slice(&claimed.to_be_bytes());
        input
    }

    #[test]
    fn good_and_refused_streams_pass_the_stream_check() {
        let records = [record(0), record(0x7f), record(0x10)];
        assert!(check_netsort_stream(&stream_input(&records, 3)));
        // Refused: a wrong count, a record of server 1, a bad hello.
        assert!(!check_netsort_stream(&stream_input(&records, 2)));
        assert!(!check_netsort_stream(&stream_input(&[record(0x80)], 1)));
        let mut input = stream_input(&records, 3);
        input[4] = b'X';
        assert!(!check_netsort_stream(&input));
        // Trickled one byte per read, in pieces of up to 16 records.
        let mut input = stream_input(&records, 3);
        input[2..4].copy_from_slice(&[15, 1]);
        assert!(check_netsort_stream(&input));
    }

    #[test]
    #[should_panic(expected = "belongs to server 1")]
    fn the_piece_check_catches_a_record_of_another_server() {
        let piece = [record(0), record(0x80)].concat();
        assert_piece(&piece, 1000, 1000, 0, 2, 1000);
    }

    #[test]
    #[should_panic(expected = "a piece of 300 bytes (frame size 200)")]
    fn the_piece_check_catches_a_piece_over_the_frame_size() {
        let piece = [record(0), record(0), record(0)].concat();
        assert_piece(&piece, 300, 300, 0, 1, 200);
    }

    #[test]
    #[should_panic(expected = "outgrew its buffer")]
    fn the_piece_check_catches_a_grown_buffer() {
        assert_piece(&record(0), 200, 100, 0, 1, 100);
    }

    #[test]
    #[should_panic(expected = "count differs")]
    fn the_stream_check_catches_a_wrong_total() {
        let mut stream = vec![TAG_DATA, 0, 0, 0, 100];
        stream.extend_from_slice(&record(0));
        stream.push(TAG_END);
        stream.extend_from_slice(&2u64.to_be_bytes());
        assert_accepted_stream(&stream, &record(0), 2);
    }

    #[test]
    #[should_panic(expected = "not the frames' records")]
    fn the_stream_check_catches_records_that_were_not_sent() {
        let mut stream = vec![TAG_DATA, 0, 0, 0, 100];
        stream.extend_from_slice(&record(0));
        stream.push(TAG_END);
        stream.extend_from_slice(&1u64.to_be_bytes());
        assert_accepted_stream(&stream, &record(1), 1);
    }

    #[test]
    #[should_panic(expected = "took a hello from server 0")]
    fn the_hello_check_catches_a_hello_from_ourselves() {
        assert_hello_outcome(&hello(0, 2), 0, 2, &Ok(0));
    }

    #[test]
    #[should_panic(expected = "a good hello was refused")]
    fn the_hello_check_catches_a_good_hello_refused() {
        let refused = Err(Hello::Refused(Error::Net("no".into())));
        assert_hello_outcome(&hello(1, 2), 0, 2, &refused);
    }

    fn servers(ids: &[u32]) -> Config {
        Config {
            servers: ids
                .iter()
                .map(|&id| Server {
                    id,
                    host: "localhost".into(),
                    port: 8080 + id as u16,
                })
                .collect(),
        }
    }

    #[test]
    fn the_issue_config_passes_the_config_check() {
        let yaml = r#"servers: [{serverId: 1, host: "localhost", port: "8081"}, {serverId: 0, host: " h\u00e9\"x ", port: 8080}]"#;
        assert_valid_config(&Config::from_yaml(yaml).unwrap());
        assert!(check_netsort_config(yaml.as_bytes()));
    }

    #[test]
    #[should_panic(expected = "a config with 3 servers")]
    fn the_config_check_catches_a_count_that_is_not_a_power_of_two() {
        assert_valid_config(&servers(&[0, 1, 2]));
    }

    #[test]
    #[should_panic(expected = "server 0 has id 1")]
    fn the_config_check_catches_servers_out_of_order() {
        assert_valid_config(&servers(&[1, 0]));
    }

    #[test]
    #[should_panic(expected = "has host \" a\"")]
    fn the_config_check_catches_an_untrimmed_host() {
        let mut config = servers(&[0]);
        config.servers[0].host = " a".into();
        assert_valid_config(&config);
    }

    #[test]
    fn documented_sizes_pass_the_size_check() {
        for (text, bytes) in [
            ("1000", 1000),
            ("1mb", 1_000_000),
            ("2 GB", 2_000_000_000),
            ("1.5gib", 3 << 29),
        ] {
            assert_size_consistent(text, bytes);
            assert!(check_size(text.as_bytes()));
        }
    }

    #[test]
    #[should_panic(expected = "is 1 x 1000000")]
    fn the_size_check_catches_a_wrong_product() {
        assert_size_consistent("1mb", 1_000_001);
    }

    #[test]
    #[should_panic(expected = "outside [1000, 2000)")]
    fn the_size_check_catches_a_fraction_beyond_the_next_unit() {
        assert_size_consistent("1.5k", 2500);
    }

    #[test]
    #[should_panic(expected = "unknown unit")]
    fn the_size_check_catches_an_unknown_unit_taken() {
        assert_size_consistent("1 xb", 1);
    }
}

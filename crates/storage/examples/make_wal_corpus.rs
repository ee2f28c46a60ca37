//! Writes the seed corpus of the `wal_recover` fuzz target (valid, torn and
//! damaged segments) into the directory given as the first argument.

use std::fs;
use std::path::PathBuf;

use triton_storage::format::{encode_record, encode_segment_header, Record};
use triton_storage::{HardState, LogEntry};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: make_wal_corpus DIR"));
    fs::create_dir_all(&out).unwrap();
    let mut seg = encode_segment_header(1, 1).to_vec();
    encode_record(&mut seg, &Record::HardState(HardState::default()));
    for i in 1..=6u64 {
        encode_record(
            &mut seg,
            &Record::Entry(LogEntry {
                index: i,
                term: 1 + i / 4,
                payload: vec![i as u8; (i * 7) as usize],
            }),
        );
        if i == 3 {
            encode_record(
                &mut seg,
                &Record::HardState(HardState {
                    term: 1,
                    vote: 2,
                    commit: 2,
                }),
            );
        }
    }
    encode_record(&mut seg, &Record::Truncate { from: 5 });
    encode_record(
        &mut seg,
        &Record::Entry(LogEntry {
            index: 5,
            term: 3,
            payload: b"new leader".to_vec(),
        }),
    );
    encode_record(&mut seg, &Record::Snapshot { index: 0, term: 0 });
    let write = |name: &str, bytes: &[u8]| fs::write(out.join(name), bytes).unwrap();
    write("valid", &seg);
    write("header-only", &seg[..32]);
    write("torn-header", &seg[..17]);
    write("empty", &[]);
    for cut in [1usize, 5, 9, 13] {
        write(&format!("torn-tail-{cut}"), &seg[..seg.len() - cut]);
    }
    for pos in [3usize, 40, 45, 60, 90, 120] {
        let mut bad = seg.clone();
        bad[pos] ^= 0x41;
        write(&format!("flip-{pos}"), &bad);
    }
    let mut zeros = seg.clone();
    zeros.extend_from_slice(&[0; 64]);
    write("zero-tail", &zeros);
    let mut huge = seg[..32].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1]);
    write("huge-length", &huge);
    let mut gap = encode_segment_header(1, 1).to_vec();
    for i in [1u64, 3] {
        encode_record(
            &mut gap,
            &Record::Entry(LogEntry {
                index: i,
                term: 1,
                payload: vec![],
            }),
        );
    }
    write("gap", &gap);
    // Terms: valid checksums, but terms no Raft host writes (refused), and a
    // hard state lost after entries of a new term (recovered, term raised).
    let e = |index: u64, term: u64| {
        Record::Entry(LogEntry {
            index,
            term,
            payload: vec![7; 3],
        })
    };
    let hs = |term: u64| {
        Record::HardState(HardState {
            term,
            vote: 1,
            commit: 1,
        })
    };
    let terms: [(&str, Vec<Record>); 4] = [
        ("term-past-max", vec![hs(u64::MAX)]),
        ("term-decreasing", vec![hs(3), e(1, 3), e(2, 2)]),
        ("hard-state-below-log-term", vec![hs(5), e(1, 5), e(2, 9), hs(5)]),
        ("lost-hard-state", vec![hs(5), e(1, 5), e(2, 9)]),
    ];
    for (name, records) in terms {
        let mut bytes = encode_segment_header(1, 1).to_vec();
        for r in &records {
            encode_record(&mut bytes, r);
        }
        write(name, &bytes);
    }
}

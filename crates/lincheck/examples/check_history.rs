//! Checks a JSON-lines history and prints verdict, search steps and time per
//! key (the library alone, without building the `triton` binary):
//! `cargo run --release -p triton-lincheck --example check_history -- FILE`.

use std::io::BufReader;
use std::time::Instant;

use triton_lincheck::{check, history, CheckOptions, ParseLimits};

fn main() {
    let path = std::env::args().nth(1).expect("usage: check_history FILE");
    let file = std::fs::File::open(&path).expect("open history");
    let ops = history::parse_jsonl(BufReader::new(file), ParseLimits::default()).expect("parse history");
    let started = Instant::now();
    let report = check(&ops, &CheckOptions::default());
    let elapsed = started.elapsed();
    for key in &report.per_key {
        let minimal = key.violation.as_ref().map_or(0, |v| v.minimal.len());
        println!(
            "key {:?}: {:?}, {} ops, {} steps, minimal {}",
            key.key, key.verdict, key.operations, key.steps, minimal
        );
    }
    println!("{:?} in {:.3} s", report.verdict, elapsed.as_secs_f64());
}

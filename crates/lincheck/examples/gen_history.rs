//! Writes a generated linearizable history as JSON lines to stdout, for
//! trying `triton lincheck` by hand and for benchmarks:
//! `cargo run --release -p triton-lincheck --example gen_history -- SEED CLIENTS OPS_PER_CLIENT KEYS UNKNOWN_FRACTION [stale]`.
//! With `stale` as the last argument, one read is made stale (a violation).

use triton_lincheck::gen::{generate, GenParams};
use triton_lincheck::{history, Output};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: f64| -> f64 {
        args.get(i)
            .map(|a| {
                a.parse()
                    .unwrap_or_else(|_| panic!("argument {} is not a number: {a}", i + 1))
            })
            .unwrap_or(default)
    };
    let seed = num(0, 1.0) as u64;
    let params = GenParams {
        clients: num(1, 4.0) as u64,
        ops_per_client: num(2, 20.0) as usize,
        keys: num(3, 2.0) as usize,
        unknown_fraction: num(4, 0.05),
        ..GenParams::default()
    };
    let mut ops = generate(&params, seed);
    if args.get(5).map(String::as_str) == Some("stale") {
        // Make the middle read return the previous read's answer on its key.
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| matches!(ops[i].output, Some(Output::Get { .. })))
            .collect();
        if let Some(&target) = reads.get(reads.len() / 2) {
            let earlier = reads[..reads.len() / 2]
                .iter()
                .rev()
                .find(|&&i| ops[i].key == ops[target].key && ops[i].output != ops[target].output)
                .copied();
            if let Some(e) = earlier {
                ops[target].output = ops[e].output.clone();
            }
        }
    }
    history::write_jsonl(std::io::stdout().lock(), &ops).expect("writing to stdout");
}

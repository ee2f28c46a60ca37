//! A generator of random *valid* (linearizable by construction) histories:
//! concurrent clients against a simulated correct store whose every operation
//! takes effect at one instant drawn inside its interval. Tests and
//! benchmarks use it to show the checker accepts what a correct store does
//! and stays fast on realistic histories; mutating its output gives
//! histories that (usually) are not linearizable.

use std::collections::HashMap;

use crate::history::{Input, Operation, Output};

/// The shape of a generated history.
#[derive(Clone, Copy, Debug)]
pub struct GenParams {
    /// Concurrent clients (each issues one request at a time).
    pub clients: u64,
    /// Requests per client.
    pub ops_per_client: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Fraction (0..=1) of requests whose outcome is unknown to the client.
    pub unknown_fraction: f64,
    /// Longest request, in ns.
    pub max_duration: u64,
    /// Longest pause between a client's requests, in ns.
    pub max_think: u64,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            clients: 4,
            ops_per_client: 20,
            keys: 2,
            unknown_fraction: 0.05,
            max_duration: 100,
            max_think: 50,
        }
    }
}

/// A small deterministic PRNG (splitmix64): everything random takes a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Put,
    Append,
    Delete,
    Cas,
}

struct Planned {
    client: u64,
    key: usize,
    kind: Kind,
    call: u64,
    ret: u64,
    /// When it takes effect; `None` = never (only for unknown outcomes).
    effect: Option<u64>,
    unknown: bool,
    seq: usize,
}

/// One key of the simulated correct store.
#[derive(Default, Clone)]
struct Cell {
    value: Option<String>,
    version: u64,
}

/// Generates a linearizable history with `params`, deterministically from `seed`.
pub fn generate(params: &GenParams, seed: u64) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    let keys = params.keys.max(1);
    let mut planned: Vec<Planned> = Vec::new();
    for client in 0..params.clients {
        let mut t = rng.upto(params.max_think);
        for _ in 0..params.ops_per_client {
            let kind = match rng.upto(99) {
                0..=34 => Kind::Get,
                35..=59 => Kind::Put,
                60..=74 => Kind::Append,
                75..=79 => Kind::Delete,
                _ => Kind::Cas,
            };
            let duration = 1 + rng.upto(params.max_duration.max(1));
            let call = t;
            let ret = call + duration;
            let unknown = rng.chance(params.unknown_fraction);
            let effect = if !unknown {
                Some(call + rng.upto(duration))
            } else if rng.chance(0.5) {
                // May land after the client gave up.
                Some(call + rng.upto(duration * 3))
            } else {
                None
            };
            planned.push(Planned {
                client,
                key: rng.upto(keys as u64 - 1) as usize,
                kind,
                call,
                ret,
                effect,
                unknown,
                seq: planned.len(),
            });
            t = ret + 1 + rng.upto(params.max_think);
        }
    }

    // Apply in effect order; ties broken by plan order (an arbitrary but
    // fixed choice, as a real store serializes simultaneous requests).
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].effect.unwrap_or(u64::MAX), planned[i].seq));
    let mut cells: Vec<Cell> = vec![Cell::default(); keys];
    let mut log_index = 0u64;
    let mut seen: HashMap<(u64, usize), u64> = HashMap::new();
    let mut out: Vec<Operation> = Vec::with_capacity(planned.len());
    for i in order {
        let p = &planned[i];
        let cell = &mut cells[p.key];
        let applies = p.effect.is_some();
        // Delimited, so no value occurs inside another (see `prune::deadlines`).
        let unique = format!("<c{}n{}>", p.client, p.seq);
        let (input, output) = match p.kind {
            Kind::Get => (
                Input::Get,
                Output::Get {
                    value: cell.value.clone(),
                    version: if cell.value.is_some() { cell.version } else { 0 },
                },
            ),
            Kind::Put | Kind::Append => {
                let input = if p.kind == Kind::Put {
                    Input::Put { value: unique }
                } else {
                    Input::Append {
                        value: format!("{unique};"),
                    }
                };
                let mut version = 0;
                if applies {
                    // Other keys' entries also take log indices.
                    log_index += 1 + rng.upto(2);
                    version = log_index;
                    let new_value = match &input {
                        Input::Put { value } => value.clone(),
                        Input::Append { value } => {
                            format!("{}{value}", cell.value.as_deref().unwrap_or(""))
                        }
                        _ => unreachable!("only writes here"),
                    };
                    cell.value = Some(new_value);
                    cell.version = version;
                }
                let output = if p.kind == Kind::Put {
                    Output::Put { version }
                } else {
                    Output::Append { version }
                };
                (input, output)
            }
            Kind::Delete => {
                let existed = cell.value.is_some();
                if applies {
                    log_index += 1;
                    cell.value = None;
                }
                (Input::Delete, Output::Delete { existed })
            }
            Kind::Cas => {
                let current = if cell.value.is_some() { cell.version } else { 0 };
                let expected_version = match rng.upto(9) {
                    0..=4 => seen.get(&(p.client, p.key)).copied().unwrap_or(0),
                    5..=8 => current,
                    _ => rng.upto(log_index + 1),
                };
                let input = Input::Cas {
                    expected_version,
                    value: unique,
                };
                let ok = applies && cell.value.is_some() && cell.version == expected_version;
                let version = if ok {
                    log_index += 1 + rng.upto(2);
                    cell.value = Some(match &input {
                        Input::Cas { value, .. } => value.clone(),
                        _ => unreachable!("a Cas input"),
                    });
                    cell.version = log_index;
                    log_index
                } else {
                    current
                };
                (input, Output::Cas { ok, version })
            }
        };
        if !p.unknown {
            let observed = match output {
                Output::Get { version, .. }
                | Output::Put { version }
                | Output::Append { version }
                | Output::Cas { version, .. } => Some(version),
                Output::Delete { .. } => None,
            };
            if let Some(v) = observed {
                seen.insert((p.client, p.key), v);
            }
        }
        out.push(Operation {
            client: p.client,
            key: format!("key{}", p.key),
            input,
            output: (!p.unknown).then_some(output),
            call: p.call,
            ret: if p.unknown && rng.chance(0.5) {
                None
            } else {
                Some(p.ret)
            },
        });
    }
    out.sort_by_key(|op| (op.call, op.client));
    out
}

//! # `triton verify`
//!
//! A Jepsen-style test any user can point at a Triton cluster: concurrent
//! clients do Get/Put/Append on a few hot keys with unique values and record
//! when each call started and ended on one monotonic clock; a nemesis
//! injects faults on a schedule drawn from the seed (kill -9 and restart,
//! pause with SIGSTOP/SIGCONT, minority/majority partitions, isolating the
//! leader, freezing a cut-off leader inside its lease); besides the clients,
//! one reader per node asks only that node, so a node that answers when it
//! should not is heard; then the faults stop, the cluster must recover, and the whole
//! history must be linearizable (checked by `triton-lincheck`).

pub mod local;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_config::ClusterConfig;
use triton_lincheck::{CheckOptions, Input, Operation, Output, Verdict};
use triton_node::admin::{AdminCall, AdminClient, Member};
use triton_node::auth::with_token;
use triton_node::client::{ClientError, KvClient};
use triton_node::tls::Dialer;
use triton_proto::control::control_client::ControlClient;
use triton_proto::control::NodeIds;

use crate::local::LocalCluster;

/// A kind of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 a node, restart it later.
    Kill,
    /// Split the cluster into a minority and a majority.
    Partition,
    /// SIGSTOP a node, SIGCONT it later.
    Pause,
    /// Cut the current leader off from everyone.
    Leader,
    /// Remove a voter (the leader, sometimes) from the configuration, then
    /// add it back as a learner and promote it (joint consensus both ways).
    Membership,
    /// Cut the leader off and SIGSTOP it at once, while its lease is fresh;
    /// SIGCONT it still cut off, then heal. The others elect a new leader
    /// meanwhile: a resumed leader that still believes in its lease answers
    /// its pinned reader with stale values.
    Freeze,
}

impl Fault {
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Fault>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(match part {
                "kill" => Fault::Kill,
                "partition" => Fault::Partition,
                "pause" => Fault::Pause,
                "leader" => Fault::Leader,
                "membership" => Fault::Membership,
                "freeze" => Fault::Freeze,
                "none" => continue,
                other => bail!("unknown fault {other:?} (kill, partition, pause, leader, membership, freeze, none)"),
            });
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn needs_processes(self) -> bool {
        matches!(self, Fault::Kill | Fault::Pause | Fault::Freeze)
    }

    fn needs_test_rpcs(self) -> bool {
        matches!(self, Fault::Partition | Fault::Leader | Fault::Freeze)
    }
}

pub struct VerifyOptions {
    /// The `triton` binary used to start nodes.
    pub binary: PathBuf,
    /// Start the nodes of this config (else a generated one). With
    /// `endpoints`, only its TLS files and admin token are used.
    pub config: Option<PathBuf>,
    /// Nodes of a generated config.
    pub nodes: usize,
    /// Attach to a running cluster instead of starting one.
    pub endpoints: Option<Vec<String>>,
    pub duration: Duration,
    pub clients: usize,
    pub keys: usize,
    pub faults: Vec<Fault>,
    pub seed: u64,
    /// Where the history, logs and violation pages go.
    pub out_dir: PathBuf,
    /// Test-only broken mode: reads served by any node without ReadIndex.
    pub unsafe_stale_reads: bool,
    /// How long the cluster may take to recover once faults stop.
    pub recovery_timeout: Duration,
    pub progress: bool,
    /// At most about this many operations in the history: clients slow
    /// down to fit it into `duration` ([`pacing_interval`]).
    pub max_ops: u64,
}

/// The default history budget: about 400 MB of operations in memory, and a
/// check that takes seconds, not hours.
pub const DEFAULT_MAX_OPS: u64 = 2_000_000;

/// How long each of `workers` clients waits between the starts of its
/// operations so that a run of `duration` records at most about `max_ops`
/// (zero when they may go flat out: a minute's run never needs pacing).
/// The history is kept in memory and checked at the end, so a long run
/// (`--duration 2h`) at full speed would grow it without bound.
pub fn pacing_interval(duration: Duration, workers: usize, max_ops: u64) -> Duration {
    if max_ops == 0 || workers == 0 {
        return Duration::ZERO;
    }
    // What `mul_f64` computes, without its panic on overflow.
    let factor = workers as f64 / max_ops as f64;
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// Spaces one client's operations [`pacing_interval`] apart.
struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            next: tokio::time::Instant::now(),
        }
    }

    /// Waits for the next operation's slot. A slow operation does not earn
    /// a burst afterwards.
    async fn wait(&mut self) {
        if self.interval.is_zero() {
            return;
        }
        tokio::time::sleep_until(self.next).await;
        self.next = self.next.max(tokio::time::Instant::now()) + self.interval;
    }
}

/// What happened, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Summary {
    pub ops: BTreeMap<&'static str, (usize, usize, usize)>,
    /// Faults injected in full, per kind; a leader or freeze fault that found
    /// no leader and hit another node counts under a name of its own.
    pub faults: BTreeMap<String, usize>,
    /// Faults that could not be injected (and so did not count), per kind.
    pub failed_faults: BTreeMap<String, usize>,
    pub recovery: Option<Duration>,
    pub verdict: Option<Verdict>,
    pub violations: Vec<String>,
    pub liveness_failure: Option<String>,
    /// Anything else that makes the run no PASS: a node that exited on its
    /// own, a fault kind that could never be injected, a fault not healed.
    pub problems: Vec<String>,
    pub history_path: PathBuf,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.verdict == Some(Verdict::Linearizable)
            && self.liveness_failure.is_none()
            && self.problems.is_empty()
            && self.untested().is_none()
    }

    /// Why the history tested nothing, if no write completed with a known
    /// outcome: the checker may take every unknown write as never applied,
    /// so a cluster that refused every write would check as linearizable.
    fn untested(&self) -> Option<String> {
        let count = |kind| self.ops.get(kind).copied().unwrap_or_default();
        let (put, append) = (count("put"), count("append"));
        if put.0 + append.0 > 0 {
            return None;
        }
        let tried = put.0 + put.1 + put.2 + append.0 + append.1 + append.2;
        Some(format!(
            "no write completed with a known outcome ({tried} tried): a cluster that takes no write was not tested"
        ))
    }

    /// The verdict line's text.
    fn verdict_text(&self) -> String {
        let problems = match self.problems.len() + usize::from(self.untested().is_some()) {
            0 => None,
            1 => Some("1 problem above".to_string()),
            n => Some(format!("{n} problems above")),
        };
        match (self.verdict, &self.liveness_failure, problems) {
            (Some(Verdict::Violation), _, _) => "FAIL: the history is NOT linearizable".into(),
            (Some(Verdict::Linearizable), None, None) => {
                "PASS: the history is linearizable and the cluster recovered".into()
            }
            (Some(Verdict::Linearizable), _, Some(p)) => format!("FAIL: linearizable, but see the {p}"),
            (Some(Verdict::Linearizable), Some(_), None) => {
                "FAIL: linearizable, but the cluster did not recover".into()
            }
            (Some(Verdict::Unknown), _, Some(p)) => {
                format!("FAIL: see the {p} (and the checker ran out of budget)")
            }
            (Some(Verdict::Unknown), _, None) => "INCONCLUSIVE: the checker ran out of budget".into(),
            (None, _, _) => "FAIL: not checked".into(),
        }
    }
}

fn fault_list(faults: &BTreeMap<String, usize>) -> String {
    if faults.is_empty() {
        return "none".into();
    }
    let faults: Vec<String> = faults.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    faults.join(", ")
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "operations (ok / failed / unknown outcome):")?;
        for (kind, (ok, failed, unknown)) in &self.ops {
            writeln!(f, "  {kind:<7} {ok:>6} / {failed:>5} / {unknown:>5}")?;
        }
        writeln!(f, "faults injected: {}", fault_list(&self.faults))?;
        if !self.failed_faults.is_empty() {
            writeln!(
                f,
                "faults that could not be injected (not counted above): {}",
                fault_list(&self.failed_faults)
            )?;
        }
        match self.recovery {
            Some(d) => writeln!(f, "recovery after faults stopped: {:.2} s", d.as_secs_f64())?,
            None => writeln!(f, "recovery after faults stopped: did not recover")?,
        }
        writeln!(f, "history: {}", self.history_path.display())?;
        if let Some(l) = &self.liveness_failure {
            writeln!(f, "LIVENESS FAILURE: {l}")?;
        }
        for p in self.problems.iter().cloned().chain(self.untested()) {
            writeln!(f, "PROBLEM: {p}")?;
        }
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        write!(f, "verdict: {}", self.verdict_text())
    }
}

/// The shared record of client operations.
#[derive(Default)]
struct History {
    /// Operations that ended.
    ops: Vec<Operation>,
    /// Writes sent and not answered yet, by client (one each at most). A
    /// read may already have seen one, so a history saved now must hold it
    /// (as of unknown outcome), or the replay shows a value nobody wrote.
    in_flight: BTreeMap<u64, Operation>,
    /// Reads that failed (no effect, so not in `ops`).
    failed_gets: usize,
    /// What succeeded since faults stopped.
    after_heal: AfterHeal,
    /// Clients were started: from then on the run has a history to keep.
    started: bool,
    /// `ops` went to the history file (and may since have moved on to the checker).
    saved: bool,
}

impl History {
    /// Records a write about to be sent: `op` has no output and no return yet.
    fn begin_write(&mut self, op: Operation) {
        self.in_flight.insert(op.client, op);
    }

    /// Records the end of `client`'s write begun last.
    fn end_write(&mut self, client: u64, output: Option<Output>, ret: u64) {
        if let Some(mut op) = self.in_flight.remove(&client) {
            op.ret = output.is_some().then_some(ret);
            op.output = output;
            self.ops.push(op);
        }
    }

    /// Every operation, writes still in flight as of unknown outcome.
    fn all_ops(&self) -> impl Iterator<Item = &Operation> {
        self.ops.iter().chain(self.in_flight.values())
    }
}

/// Successes since the faults stopped: the cluster recovered once every
/// client had two operations answered, a write among them (a cluster that
/// only serves reads has not), and every node answered its pinned reader (a
/// node that never catches up has not).
#[derive(Clone, Debug, Default)]
struct AfterHeal {
    /// Per client: operations answered, and writes among them.
    ops: Vec<(usize, usize)>,
    /// Per node: reads its pinned reader got answered.
    reads: Vec<usize>,
}

impl AfterHeal {
    fn new(clients: usize, nodes: usize) -> AfterHeal {
        AfterHeal {
            ops: vec![(0, 0); clients],
            reads: vec![0; nodes],
        }
    }

    /// What has not recovered yet, one line each (empty: all of it has).
    /// Only the nodes marked in `members` must answer their pinned reader:
    /// a node removed from the cluster during the run (by the caller) is
    /// gone on purpose.
    fn not_recovered(&self, endpoints: &[String], members: &[bool]) -> Vec<String> {
        let mut out = Vec::new();
        for (c, &(ops, writes)) in self.ops.iter().enumerate() {
            if ops < 2 || writes < 1 {
                out.push(format!(
                    "client {c} had {ops} operations answered, {writes} of them writes (needs 2, a write among them)"
                ));
            }
        }
        for (i, &reads) in self.reads.iter().enumerate() {
            if reads < 1 && members.get(i).copied().unwrap_or(true) {
                let addr = endpoints.get(i).map_or("?", String::as_str);
                out.push(format!("node {i} ({addr}) answered no read of its pinned reader"));
            }
        }
        out
    }
}

/// Writes `ops` as the JSON-lines history `triton lincheck` reads.
fn write_history<'a>(path: &Path, ops: impl IntoIterator<Item = &'a Operation>) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for op in ops {
        triton_lincheck::history::write_jsonl(&mut out, std::slice::from_ref(op))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the history recorded so far unless it already was (or no client
/// ever ran): a run that ends early keeps its evidence, writes still in
/// flight included. Returns how many operations it wrote.
fn save_history(history: &Mutex<History>, path: &Path) -> anyhow::Result<Option<usize>> {
    let mut h = history.lock().unwrap();
    if h.saved || !h.started {
        return Ok(None);
    }
    write_history(path, h.all_ops())?;
    h.saved = true;
    Ok(Some(h.all_ops().count()))
}

struct Nemesis {
    rng: ChaCha8Rng,
    faults: Vec<Fault>,
    injected: BTreeMap<String, usize>,
    /// Per kind: attempts that could not be injected, and the first reason.
    failed: BTreeMap<String, (usize, String)>,
    /// Per kind (leader, freeze): faults that found no leader and hit a
    /// random node instead. They count in `injected` under a name of their
    /// own, not as the kind: they did not test what it tests.
    fell_back: BTreeMap<String, usize>,
    /// Each endpoint's node id, by position, once the node has answered: the
    /// partition RPC names nodes by id, and the endpoints need not be listed
    /// in id order (nor all be up yet: some may be nodes that join later).
    ids: Vec<Option<u64>>,
    /// Each endpoint this run ever asked to cut nodes off (even if the call
    /// seemed to fail: it may have landed). Only these must confirm a heal;
    /// a node never cut off that is down is no partition left behind.
    touched: Vec<bool>,
    /// A voter the membership fault removed and has not yet made a voter
    /// again: set before the removal is asked for, cleared once it is back,
    /// so an error or a stop in between still restores it ([`heal_all`]).
    removed: Option<Member>,
}

/// One step of the fault schedule with every random choice in it drawn up
/// front. The number and range of the draws depend only on the seed, the
/// requested kinds and the number of nodes, never on what the cluster
/// answered (which node leads, how many voters it has), so a seed replays
/// the same schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    /// Time without a fault before this one.
    quiet: Duration,
    /// None when no faults were requested.
    fault: Option<Fault>,
    hold: Duration,
    /// The node a kill or pause hits; a leader or freeze fault's target
    /// when no leader answers.
    node: usize,
    /// A partition's minority.
    minority: Vec<usize>,
    /// The membership fault's victim: this modulo the number of voters.
    pick: u64,
}

/// How a fault that happened was aimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aim {
    AsAsked,
    /// No leader answered: it hit this node instead.
    NoLeader(usize),
}

impl Nemesis {
    /// Draws the next step for a cluster of `n` nodes.
    fn next_step(&mut self, n: usize) -> Step {
        let n = n.max(1);
        let rng = &mut self.rng;
        let quiet = Duration::from_millis(rng.random_range(1000..2500));
        let fault = match self.faults.len() {
            0 => None,
            kinds => Some(self.faults[rng.random_range(0..kinds)]),
        };
        let hold = Duration::from_millis(rng.random_range(800..2500));
        let node = rng.random_range(0..n);
        let mut ids: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            ids.swap(i, j);
        }
        let k = rng.random_range(1..=((n - 1) / 2).max(1));
        let pick = rng.random();
        Step {
            quiet,
            fault,
            hold,
            node,
            minority: ids[..k].to_vec(),
            pick,
        }
    }

    /// The node a leader or freeze fault of `step` hits, given the `leader`
    /// found (if any).
    fn aim(&self, step: &Step, leader: Option<usize>) -> (usize, Aim) {
        match leader {
            Some(l) => (l, Aim::AsAsked),
            None => (step.node, Aim::NoLeader(step.node)),
        }
    }

    /// Counts one fault of kind `name` that happened, aimed as `aim`.
    fn count(&mut self, name: &str, aim: Aim) {
        match aim {
            Aim::AsAsked => *self.injected.entry(name.to_string()).or_default() += 1,
            Aim::NoLeader(node) => {
                *self
                    .injected
                    .entry(format!("{name} (no leader found, hit node {node})"))
                    .or_default() += 1;
                *self.fell_back.entry(name.to_string()).or_default() += 1;
            }
        }
    }

    /// Problems for the summary: every requested kind that was tried and
    /// never once injected (a run that claims to test it would not have).
    fn never_injected(&self) -> Vec<String> {
        let tried: std::collections::BTreeSet<&String> = self.failed.keys().chain(self.fell_back.keys()).collect();
        tried
            .into_iter()
            .filter(|kind| !self.injected.contains_key(*kind))
            .map(|kind| {
                let mut why = Vec::new();
                if let Some((n, first)) = self.failed.get(kind) {
                    let s = if *n == 1 { "" } else { "s" };
                    why.push(format!("{n} attempt{s} failed; the first: {first}"));
                }
                if let Some(n) = self.fell_back.get(kind) {
                    why.push(format!("{n} found no leader and hit a random node instead"));
                }
                format!("no {kind} fault could be injected ({})", why.join("; "))
            })
            .collect()
    }

    /// The victim of the membership fault of `step` among `voters`.
    fn membership_victim<'a, T>(&self, step: &Step, voters: &'a [T]) -> &'a T {
        &voters[(step.pick % voters.len() as u64) as usize]
    }
}

/// The caller's stop request (Ctrl-C, SIGTERM), as something every phase
/// can wait on: a phase that is stopped must still heal what the nemesis
/// did to a cluster the user attached, so it cannot simply be dropped.
#[derive(Clone)]
struct StopRequest(tokio::sync::watch::Receiver<Option<&'static str>>);

impl StopRequest {
    fn watch(stop: impl std::future::Future<Output = &'static str> + Send + 'static) -> StopRequest {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let why = stop.await;
            let _ = tx.send(Some(why));
        });
        StopRequest(rx)
    }

    /// Resolves (every time it is awaited) once a stop was requested.
    async fn requested(&self) -> &'static str {
        let mut rx = self.0.clone();
        let why = rx.wait_for(Option::is_some).await.map(|why| *why);
        match why {
            Ok(why) => why.expect("waited for Some"),
            // The watcher is gone without a stop: none will come.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The independent random streams of one run.
#[derive(Clone, Copy)]
enum Stream {
    Nemesis = 1,
    Client = 2,
    Reader = 3,
}

/// The seed of stream `index` of kind `stream` in the run of `seed`: a hash,
/// so no stream of one run repeats one of another run or of another kind
/// (`seed + c` made client 1 of seed 5 replay client 0 of seed 6).
fn sub_seed(seed: u64, stream: Stream, index: u64) -> u64 {
    fn splitmix64(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    splitmix64(splitmix64(splitmix64(seed) ^ stream as u64) ^ index)
}

/// How long healing may keep retrying a node before reporting it unhealed.
const HEAL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the whole test and returns its summary. When `stop` resolves (the
/// user's Ctrl-C), the run ends early with an error, but only after it has
/// healed every fault it injected: partitions lifted, a removed voter added
/// back, paused nodes resumed. Whenever it ends after the clients started,
/// the history recorded so far is in `history.jsonl` under the output dir.
pub async fn run(
    opts: VerifyOptions,
    stop: impl std::future::Future<Output = &'static str> + Send + 'static,
) -> anyhow::Result<Summary> {
    let user_stop = StopRequest::watch(stop);
    anyhow::ensure!(
        opts.clients > 0 && opts.keys > 0,
        "--clients and --keys must be positive"
    );
    // Instants past the clock's range panic when computed: refuse such a
    // duration before anything starts (with a day to spare for the rest).
    let too_long = || {
        anyhow::anyhow!(
            "--duration {:?} with --recovery-timeout {:?} is too long",
            opts.duration,
            opts.recovery_timeout
        )
    };
    let total = opts.duration.checked_add(opts.recovery_timeout).ok_or_else(too_long)?;
    total
        .checked_add(Duration::from_secs(86_400))
        .and_then(|t| Instant::now().checked_add(t))
        .ok_or_else(too_long)?;
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let mut cluster = match &opts.endpoints {
        Some(_) => None,
        None => {
            let config = match &opts.config {
                Some(c) => c.clone(),
                None => local::write_test_config(&opts.out_dir, opts.nodes)?,
            };
            Some(LocalCluster::start(&opts.binary, &config, &opts.out_dir)?)
        }
    };
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let history_path = opts.out_dir.join("history.jsonl");
    let result = run_on(&opts, &user_stop, cluster.as_mut(), &history, &stop, &history_path).await;
    // Clients of a run that failed stop too.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let exits: Vec<String> = match cluster.as_mut() {
        Some(c) => {
            c.stop_all();
            c.unexpected_exits().iter().map(ToString::to_string).collect()
        }
        None => Vec::new(),
    };
    match result {
        Ok(mut summary) => {
            summary.problems.splice(0..0, exits);
            Ok(summary)
        }
        Err(e) => {
            let mut notes = Vec::new();
            match save_history(&history, &history_path) {
                Ok(Some(n)) => notes.push(format!(
                    "the history so far ({n} operations) is in {p}; `triton lincheck {p}` checks it",
                    p = history_path.display()
                )),
                Ok(None) => {}
                Err(w) => notes.push(format!("the history could not be saved: {w:#}")),
            }
            notes.extend(exits);
            match notes.is_empty() {
                true => Err(e),
                false => Err(e.context(notes.join("\n"))),
            }
        }
    }
}

/// The run, on a started `cluster` (None: attached with `--endpoints`).
async fn run_on(
    opts: &VerifyOptions,
    user_stop: &StopRequest,
    mut cluster: Option<&mut LocalCluster>,
    history: &Arc<Mutex<History>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    history_path: &Path,
) -> anyhow::Result<Summary> {
    let endpoints = match (&opts.endpoints, &cluster) {
        (Some(e), _) => e.clone(),
        (None, Some(c)) => c.addrs(),
        (None, None) => unreachable!("either endpoints or a local cluster"),
    };
    if cluster.is_none() && opts.faults.iter().any(|f| f.needs_processes()) {
        bail!("kill, pause and freeze faults need a cluster started by triton verify (not --endpoints)");
    }
    let partitions = opts.faults.iter().any(|f| f.needs_test_rpcs());
    if let Some(c) = &cluster {
        if !c.config.enable_test_rpcs && partitions {
            bail!("partition, leader and freeze faults need enable_test_rpcs = true in the cluster config");
        }
    }
    // How clients reach the nodes (TLS, admin token): the started cluster's
    // config, else the one given with --endpoints, else plaintext and no token.
    let access = Arc::new(match (&cluster, &opts.config) {
        (Some(c), _) => Access::new(c.config.clone())?,
        (None, Some(path)) => Access::new(triton_config::load(path)?)?,
        (None, None) => Access::new(ClusterConfig::default())?,
    });
    tokio::select! {
        r = wait_for_leader(&access, &endpoints, Duration::from_secs(30)) => {
            r.context("the cluster never elected a leader")?
        }
        why = user_stop.requested() => bail!("{why}: stopped before any fault"),
    }
    if partitions {
        check_fault_rpcs(&access, &endpoints).await?;
    }
    if opts.faults.contains(&Fault::Partition) && endpoints.len() < 3 {
        bail!(
            "the partition fault needs at least 3 nodes (a minority and a majority); there are {}",
            endpoints.len()
        );
    }
    let ids = vec![None; endpoints.len()];
    if opts.faults.contains(&Fault::Membership) && access.config.admin_token.is_none() {
        bail!("the membership fault needs admin_token in the cluster config (--config)");
    }

    let clock = Instant::now();
    let keys = KeySpace::fresh(opts.keys);
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The recovery phase runs clients too: budget for its limit.
    let pace = pacing_interval(
        opts.duration.saturating_add(opts.recovery_timeout),
        opts.clients + endpoints.len(),
        opts.max_ops,
    );
    if pace >= Duration::from_millis(1) {
        eprintln!(
            "pacing: each client starts at most {:.0} operations per second, so the history stays under about {} operations (--max-ops)",
            1.0 / pace.as_secs_f64(),
            opts.max_ops
        );
    }
    {
        let mut h = history.lock().unwrap();
        h.after_heal = AfterHeal::new(opts.clients, endpoints.len());
        h.started = true;
    }
    let mut workers = Vec::new();
    for c in 0..opts.clients {
        let (history, healed, stop, endpoints) = (history.clone(), healed.clone(), stop.clone(), endpoints.clone());
        let access = access.clone();
        let keys = keys.clone();
        let stale = opts.unsafe_stale_reads;
        let seed = sub_seed(opts.seed, Stream::Client, c as u64);
        workers.push(tokio::spawn(async move {
            let pacer = Pacer::new(pace);
            client_loop(
                c, seed, keys, stale, &access, endpoints, clock, history, healed, stop, pacer,
            )
            .await
        }));
    }

    for (i, addr) in endpoints.iter().enumerate() {
        let (history, healed, stop, access) = (history.clone(), healed.clone(), stop.clone(), access.clone());
        let (addr, client) = (addr.clone(), (opts.clients + i) as u64);
        let (keys, seed) = (keys.clone(), sub_seed(opts.seed, Stream::Reader, i as u64));
        workers.push(tokio::spawn(async move {
            let reader = Reader { node: i, client, addr };
            pinned_reader(
                reader,
                seed,
                keys,
                &access,
                clock,
                history,
                healed,
                stop,
                Pacer::new(pace),
            )
            .await
        }));
    }

    let progress = progress_bar(opts.progress, opts.duration);
    let mut nemesis = Nemesis {
        rng: ChaCha8Rng::seed_from_u64(sub_seed(opts.seed, Stream::Nemesis, 0)),
        faults: opts.faults.clone(),
        injected: BTreeMap::new(),
        failed: BTreeMap::new(),
        fell_back: BTreeMap::new(),
        touched: vec![false; endpoints.len()],
        ids,
        removed: None,
    };
    let fault_end = clock.checked_add(opts.duration).context("--duration is too long")?;
    let faults = async {
        while Instant::now() < fault_end {
            if let Some(c) = cluster.as_deref_mut() {
                report_exits(c, &progress, clock);
            }
            let step = nemesis.next_step(endpoints.len());
            sleep_with_progress(
                &progress,
                step.quiet.min(fault_end.saturating_duration_since(Instant::now())),
                history,
                clock,
            )
            .await;
            let Some(fault) = step.fault.filter(|_| Instant::now() < fault_end) else {
                continue;
            };
            let name = format!("{fault:?}").to_lowercase();
            let injected = inject(
                &mut nemesis,
                &step,
                cluster.as_deref_mut(),
                &access,
                &endpoints,
                &progress,
                history,
                clock,
            )
            .await?;
            // Counted only once all of it happened.
            match injected {
                Ok(aim) => nemesis.count(&name, aim),
                Err(why) => {
                    say(
                        &progress,
                        format!("[{:>6.1}s] {name}: NOT injected: {why}", clock.elapsed().as_secs_f64()),
                    );
                    let failed = nemesis.failed.entry(name).or_insert((0, why));
                    failed.0 += 1;
                }
            }
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = faults => r,
        why = user_stop.requested() => Err(anyhow::anyhow!("{why}: stopped in the middle of the faults")),
    };
    progress.finish_and_clear();

    // Faults stop (or the run was stopped, or a fault failed): heal
    // everything, and in the first case watch the cluster recover.
    let heal_start = Instant::now();
    let unhealed = heal_all(&mut nemesis, cluster.as_deref_mut(), &access, &endpoints, partitions).await;
    if let Err(e) = outcome {
        let healed = match unhealed.is_empty() {
            true => "every fault it injected is healed".to_string(),
            false => format!("healing failed too: {}", unhealed.join("; ")),
        };
        return Err(e.context(format!("triton verify stopped early; {healed}")));
    }

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut summary = Summary {
        history_path: history_path.to_path_buf(),
        problems: unhealed,
        ..Default::default()
    };
    let mut members = vec![true; endpoints.len()];
    let recovery = async {
        let mut members_asked: Option<Instant> = None;
        loop {
            if let Some(c) = cluster.as_deref_mut() {
                report_exits(c, &progress, clock);
            }
            // The membership may still settle after the heal: ask again each second.
            if members_asked.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                members_asked = Some(Instant::now());
                members = current_members(&access, &endpoints, &nemesis.ids).await;
            }
            let done = history
                .lock()
                .unwrap()
                .after_heal
                .not_recovered(&endpoints, &members)
                .is_empty();
            if done {
                break Some(heal_start.elapsed());
            }
            if heal_start.elapsed() > opts.recovery_timeout {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let recovered = tokio::select! {
        r = recovery => r,
        why = user_stop.requested() => bail!("{why}: stopped while waiting for the cluster to recover (faults healed)"),
    };
    summary.recovery = recovered;
    if recovered.is_none() {
        let missing = history.lock().unwrap().after_heal.not_recovered(&endpoints, &members);
        summary.liveness_failure = Some(format!(
            "{:?} after the faults stopped, the cluster had not recovered: {}",
            opts.recovery_timeout,
            missing.join("; ")
        ));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    // The nodes are done: stopping them now also gives the checker the CPU,
    // and notices any node that exited on its own (the caller reports it).
    if let Some(c) = cluster {
        c.stop_all();
    }
    summary.problems.extend(nemesis.never_injected());
    summary.failed_faults = nemesis.failed.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
    summary.faults = nemesis.injected;

    // Record and check the history.
    let (ops, failed_gets) = {
        let mut h = history.lock().unwrap();
        // A worker that ended mid-write (a panic) leaves it in flight.
        let pending = std::mem::take(&mut h.in_flight);
        let mut ops = std::mem::take(&mut h.ops);
        ops.extend(pending.into_values());
        write_history(&summary.history_path, &ops)?;
        h.saved = true;
        (ops, h.failed_gets)
    };
    for op in &ops {
        let kind = match op.input {
            Input::Get => "get",
            Input::Put { .. } => "put",
            Input::Append { .. } => "append",
            _ => "other",
        };
        let e = summary.ops.entry(kind).or_default();
        // Writes never "fail" for sure: an error leaves the outcome unknown.
        if op.output.is_some() {
            e.0 += 1;
        } else {
            e.2 += 1;
        }
    }
    summary.ops.entry("get").or_default().1 += failed_gets;
    // On a thread of its own, so a stop request is still heard: the search
    // can take long on a history with many concurrent writes. The history
    // moves in: no second copy of it.
    let check = tokio::task::spawn_blocking(move || triton_lincheck::check_owned(ops, &CheckOptions::default()));
    let report = tokio::select! {
        r = check => r.context("the linearizability checker failed")?.context("the recorded history is invalid")?,
        why = user_stop.requested() => bail!(
            "{why}: stopped while checking (faults healed); the history is in {}, `triton lincheck` checks it",
            summary.history_path.display()
        ),
    };
    summary.verdict = Some(report.verdict);
    for k in report.violations() {
        let mut text = format!(
            "VIOLATION on key {:?}: no order of these operations explains what the clients saw:",
            k.key
        );
        if let Some(v) = &k.violation {
            for op in &v.minimal {
                text.push_str(&format!("\n  {}", describe(op)));
            }
        }
        if let Some(html) = k.render_html() {
            let path = opts.out_dir.join(format!("violation-{}.html", sanitize(&k.key)));
            std::fs::write(&path, html)?;
            text.push_str(&format!("\n  timeline: {}", path.display()));
        }
        summary.violations.push(text);
    }
    Ok(summary)
}

/// Records (in the cluster) and announces nodes that exited on their own.
fn report_exits(cluster: &mut LocalCluster, pb: &indicatif::ProgressBar, clock: Instant) {
    for e in cluster.poll_exits() {
        say(
            pb,
            format!(
                "[{:>6.1}s] node {} exited on its own ({}): the run will FAIL",
                clock.elapsed().as_secs_f64(),
                e.node,
                e.status
            ),
        );
    }
}

fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn describe(op: &Operation) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let ret = op.ret.map_or("never".to_string(), |r| format!("{:.1} ms", ms(r)));
    format!(
        "client {:>3}  {:>10.1} ms .. {:>10}  {:?} -> {}",
        op.client,
        ms(op.call),
        ret,
        op.input,
        op.output.as_ref().map_or("unknown".to_string(), |o| format!("{o:?}"))
    )
}

fn progress_bar(enabled: bool, duration: Duration) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(duration.as_millis() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

async fn sleep_with_progress(pb: &indicatif::ProgressBar, d: Duration, history: &Arc<Mutex<History>>, clock: Instant) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100).min(end.saturating_duration_since(Instant::now()))).await;
        let n = history.lock().unwrap().ops.len();
        pb.set_position(clock.elapsed().as_millis() as u64);
        pb.set_message(format!("{n} operations"));
    }
}

/// Injects the fault of `step` and heals it after its hold. `Err`: the run
/// cannot go on. `Ok(Err(why))`: the fault could not be injected (undone as
/// far as it went), so it must not count as tested.
#[allow(clippy::too_many_arguments)]
async fn inject(
    nemesis: &mut Nemesis,
    step: &Step,
    cluster: Option<&mut LocalCluster>,
    access: &Access,
    endpoints: &[String],
    pb: &indicatif::ProgressBar,
    history: &Arc<Mutex<History>>,
    clock: Instant,
) -> anyhow::Result<Result<Aim, String>> {
    let n = endpoints.len();
    let Some(fault) = step.fault else {
        return Ok(Ok(Aim::AsAsked));
    };
    let hold = step.hold;
    let name = format!("{fault:?}").to_lowercase();
    let at = || clock.elapsed().as_secs_f64();
    let mut aim = Aim::AsAsked;
    match fault {
        Fault::Kill | Fault::Pause => {
            let c = cluster.expect("checked: process faults need a local cluster");
            let victim = step.node;
            say(
                pb,
                format!("[{:>6.1}s] {name} node {victim} for {:.1}s", at(), hold.as_secs_f64()),
            );
            let done = if fault == Fault::Kill {
                c.kill(victim)
            } else {
                c.pause(victim)
            };
            if let Err(e) = done {
                return Ok(Err(format!("{e:#}")));
            }
            sleep_with_progress(pb, hold, history, clock).await;
            if fault == Fault::Kill {
                c.spawn(victim)?;
            } else if let Err(e) = c.resume(victim) {
                // It was paused all the same; its exit is recorded.
                say(pb, format!("[{:>6.1}s] resume: {e:#}", at()));
            }
        }
        Fault::Partition | Fault::Leader => {
            let minority: Vec<usize> = if fault == Fault::Leader {
                let (target, how) = nemesis.aim(step, find_leader(access, endpoints).await);
                aim = how;
                vec![target]
            } else {
                step.minority.clone()
            };
            let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
            say(
                pb,
                format!(
                    "[{:>6.1}s] {name}: {minority:?} | {majority:?} for {:.1}s{}",
                    at(),
                    hold.as_secs_f64(),
                    match aim {
                        Aim::AsAsked => "",
                        Aim::NoLeader(_) => " (no leader found: a random node instead)",
                    }
                ),
            );
            // A node left out of the partition would still talk to both sides.
            if let Err(why) = retrying(async || learn_node_ids(access, endpoints, &mut nemesis.ids).await).await {
                return Ok(Err(why));
            }
            let ids_of = |side: &[usize]| side.iter().filter_map(|&i| nemesis.ids[i]).collect::<Vec<u64>>();
            let (minority_ids, majority_ids) = (ids_of(&minority), ids_of(&majority));
            let mut failed = Vec::new();
            for (side, other) in [(&minority, &majority_ids), (&majority, &minority_ids)] {
                for &i in side {
                    nemesis.touched[i] = true;
                    if let Err(e) =
                        retrying(async || set_unreachable(access, &endpoints[i], other, ATTEMPT_TIMEOUT).await).await
                    {
                        failed.push(format!("node at {}: {e}", endpoints[i]));
                    }
                }
            }
            if !failed.is_empty() {
                undo_partition(access, endpoints, pb, clock).await;
                return Ok(Err(format!("cutting nodes off failed: {}", failed.join("; "))));
            }
            sleep_with_progress(pb, hold, history, clock).await;
            undo_partition(access, endpoints, pb, clock).await;
        }
        Fault::Freeze => {
            let c = cluster.expect("checked: process faults need a local cluster");
            let (leader, how) = nemesis.aim(step, find_leader(access, endpoints).await);
            aim = how;
            let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
            say(
                pb,
                format!(
                    "[{:>6.1}s] freeze: cut off {} {leader} and SIGSTOP it for {:.1}s, then SIGCONT it still cut off",
                    at(),
                    match aim {
                        Aim::AsAsked => "leader",
                        Aim::NoLeader(_) => "(no leader found) node",
                    },
                    hold.as_secs_f64()
                ),
            );
            if let Err(why) = retrying(async || learn_node_ids(access, endpoints, &mut nemesis.ids).await).await {
                return Ok(Err(why));
            }
            // Cut off first (it stops hearing acknowledgements), then freeze
            // it within its lease, then cut the others off from it.
            let other_ids: Vec<u64> = others.iter().filter_map(|&i| nemesis.ids[i]).collect();
            nemesis.touched[leader] = true;
            if let Err(e) =
                retrying(async || set_unreachable(access, &endpoints[leader], &other_ids, ATTEMPT_TIMEOUT).await).await
            {
                undo_partition(access, endpoints, pb, clock).await;
                return Ok(Err(format!("cutting off node at {}: {e}", endpoints[leader])));
            }
            if let Err(e) = c.pause(leader) {
                undo_partition(access, endpoints, pb, clock).await;
                return Ok(Err(format!("{e:#}")));
            }
            let leader_id: Vec<u64> = nemesis.ids[leader].into_iter().collect();
            let mut failed = Vec::new();
            for &i in &others {
                nemesis.touched[i] = true;
                if let Err(e) = set_unreachable(access, &endpoints[i], &leader_id, ATTEMPT_TIMEOUT).await {
                    failed.push(format!("node at {}: {e}", endpoints[i]));
                }
            }
            if !failed.is_empty() {
                let _ = c.resume(leader);
                undo_partition(access, endpoints, pb, clock).await;
                return Ok(Err(format!("cutting the others off failed: {}", failed.join("; "))));
            }
            sleep_with_progress(pb, hold, history, clock).await;
            if let Err(e) = c.resume(leader) {
                say(pb, format!("[{:>6.1}s] resume: {e:#}", at()));
            }
            sleep_with_progress(pb, Duration::from_millis(1000), history, clock).await;
            undo_partition(access, endpoints, pb, clock).await;
        }
        Fault::Membership => {
            let admin = AdminClient::new(endpoints.to_vec(), access.config.clone())?;
            let members = admin.call(AdminCall::Members).await.context("listing the members")?;
            let voters: Vec<_> = members.members.iter().filter(|m| m.role == "voter").collect();
            if voters.len() < 2 {
                return Ok(Err(format!(
                    "{} voter(s): none can be removed without losing the cluster",
                    voters.len()
                )));
            }
            let victim = (*nemesis.membership_victim(step, &voters)).clone();
            say(
                pb,
                format!(
                    "[{:>6.1}s] membership: remove node {}{} for {:.1}s, then add it back",
                    at(),
                    victim.id,
                    if members.leader == Some(victim.id) {
                        " (the leader)"
                    } else {
                        ""
                    },
                    hold.as_secs_f64()
                ),
            );
            nemesis.removed = Some(victim.clone());
            admin
                .call(AdminCall::Remove(victim.id))
                .await
                .with_context(|| format!("removing node {}", victim.id))?;
            sleep_with_progress(pb, hold, history, clock).await;
            admin
                .call(AdminCall::AddLearner {
                    id: victim.id,
                    addr: victim.addr.clone(),
                })
                .await
                .with_context(|| format!("adding node {} back as a learner", victim.id))?;
            admin
                .call(AdminCall::Promote(victim.id))
                .await
                .with_context(|| format!("promoting node {} again", victim.id))?;
            nemesis.removed = None;
        }
    }
    Ok(Ok(aim))
}

/// Lifts a partition during the faults. A node not healed yet is only
/// announced: the next fault may heal it, and the final [`heal_all`] retries
/// it and reports what stays unhealed.
async fn undo_partition(access: &Access, endpoints: &[String], pb: &indicatif::ProgressBar, clock: Instant) {
    for failure in heal_partitions(access, endpoints, Duration::from_secs(5)).await {
        say(pb, format!("[{:>6.1}s] heal: {failure}", clock.elapsed().as_secs_f64()));
    }
}

/// A line of the fault log: above the progress bar, or plain on stderr.
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

/// What a client of the cluster needs besides addresses: the config (for
/// the admin token) and the [`Dialer`] built from its TLS files.
struct Access {
    config: ClusterConfig,
    dialer: Dialer,
}

impl Access {
    fn new(config: ClusterConfig) -> anyhow::Result<Access> {
        let dialer = Dialer::from_config(&config)?;
        Ok(Access { config, dialer })
    }

    fn kv_client(&self, endpoints: Vec<String>) -> Result<KvClient, ClientError> {
        KvClient::with_dialer(endpoints, self.dialer.clone())
    }
}

/// How long one partition RPC may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an injection keeps retrying a node that does not answer: one
/// restarted by the previous fault may still be starting, and a fault kind
/// whose every try failed fails the run.
const INJECT_RETRY: Duration = Duration::from_secs(3);

/// `attempt`, retried every 100 ms until it succeeds or [`INJECT_RETRY`]
/// has passed (then its last error).
async fn retrying(mut attempt: impl AsyncFnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + INJECT_RETRY;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Tells the node at `addr` to drop messages from the nodes `from` (ids; none
/// heals it). The error says why it may not have heard.
async fn set_unreachable(access: &Access, addr: &str, from: &[u64], timeout: Duration) -> Result<(), String> {
    let ids = from.to_vec();
    let call = async {
        let endpoint = access.dialer.endpoint(addr).map_err(|e| format!("{e:#}"))?;
        let channel = endpoint.connect().await.map_err(|e| format!("cannot connect: {e}"))?;
        ControlClient::new(channel)
            .make_unreachable_from(with_token(NodeIds { ids }, &access.config))
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Fails at once when the cluster refuses the partition RPC (test RPCs
/// disabled, or no or a wrong admin token), instead of running a test whose
/// partitions silently never happen.
async fn check_fault_rpcs(access: &Access, endpoints: &[String]) -> anyhow::Result<()> {
    for addr in endpoints {
        let Ok(endpoint) = access.dialer.endpoint(addr) else {
            continue;
        };
        let Ok(Ok(channel)) = tokio::time::timeout(Duration::from_millis(500), endpoint.connect()).await else {
            continue;
        };
        let heal = with_token(NodeIds { ids: Vec::new() }, &access.config);
        match ControlClient::new(channel).make_unreachable_from(heal).await {
            Ok(_) => return Ok(()),
            Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
                bail!(
                    "{addr} refused the partition RPC ({}); give --config with the cluster's admin_token and enable_test_rpcs = true",
                    s.message()
                )
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// Undoes whatever fault may be in place, whether the fault phase ended,
/// failed or was stopped: restarts and resumes local nodes, lifts every
/// partition (when partitions were asked for: a cluster without the test RPCs
/// refuses the heal too), and makes a voter the membership fault removed a
/// voter again. Returns what could not be healed.
async fn heal_all(
    nemesis: &mut Nemesis,
    cluster: Option<&mut LocalCluster>,
    access: &Access,
    endpoints: &[String],
    partitions: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(c) = cluster {
        if let Err(e) = c.heal_processes() {
            problems.push(format!("healing the node processes: {e:#}"));
        }
    }
    if partitions {
        // Every node is asked (a stopped earlier run may have left one cut
        // off), but only those this run cut off must confirm.
        let (mut cut, mut never) = (Vec::new(), Vec::new());
        for (e, &touched) in endpoints.iter().zip(&nemesis.touched) {
            match touched {
                true => cut.push(e.clone()),
                false => never.push(e.clone()),
            }
        }
        problems.extend(heal_partitions(access, &cut, HEAL_DEADLINE).await);
        let _ = heal_partitions(access, &never, ATTEMPT_TIMEOUT).await;
    }
    if let Some(victim) = nemesis.removed.clone() {
        let limit = HEAL_DEADLINE;
        match tokio::time::timeout(limit, restore_voter(access, endpoints, &victim)).await {
            Ok(Ok(())) => nemesis.removed = None,
            Ok(Err(e)) => problems.push(format!("node {} is not a voter again: {e:#}", victim.id)),
            Err(_) => problems.push(format!("node {} is not a voter again after {limit:?}", victim.id)),
        }
    }
    problems
}

/// Makes `victim` a voter again from whatever step of its removal and
/// re-addition the membership fault stopped at. A change still in joint
/// consensus is waited out first: a removal asked for just before the stop
/// may yet commit.
async fn restore_voter(access: &Access, endpoints: &[String], victim: &Member) -> anyhow::Result<()> {
    let admin = AdminClient::new(endpoints.to_vec(), access.config.clone())?;
    loop {
        let members = admin.call(AdminCall::Members).await.context("listing the members")?;
        let role = members
            .members
            .iter()
            .find(|m| m.id == victim.id)
            .map(|m| m.role.as_str());
        match role {
            _ if members.joint => {}
            Some("voter") => return Ok(()),
            Some("learner") => {
                admin
                    .call(AdminCall::Promote(victim.id))
                    .await
                    .context("promoting it")?;
            }
            _ => {
                let (id, addr) = (victim.id, victim.addr.clone());
                admin
                    .call(AdminCall::AddLearner { id, addr })
                    .await
                    .context("adding it back as a learner")?;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Tells every node to drop no one, retrying each until it answers or
/// `deadline` passes (a node just restarted, or a moment unreachable, must
/// not stay cut off while verify says it healed). Returns one line per node
/// that never confirmed.
async fn heal_partitions(access: &Access, endpoints: &[String], deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut pending: Vec<(usize, String)> = (0..endpoints.len()).map(|i| (i, String::new())).collect();
    loop {
        let mut failed = Vec::new();
        for (i, _) in pending {
            let left = deadline.saturating_sub(start.elapsed()).max(Duration::from_millis(100));
            if let Err(e) = set_unreachable(access, &endpoints[i], &[], ATTEMPT_TIMEOUT.min(left)).await {
                failed.push((i, e));
            }
        }
        pending = failed;
        if pending.is_empty() || start.elapsed() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pending
        .into_iter()
        .map(|(i, e)| {
            format!(
                "node at {} may still be cut off: it did not confirm the heal within {deadline:?} ({e})",
                endpoints[i]
            )
        })
        .collect()
}

/// Which endpoints are nodes of the cluster now (by id, or by address for a
/// node whose id was never learned), as the leader lists them. All of them
/// when the list cannot be had (no admin access): then every node counts.
async fn current_members(access: &Access, endpoints: &[String], ids: &[Option<u64>]) -> Vec<bool> {
    let all = vec![true; endpoints.len()];
    let Ok(admin) = AdminClient::new(endpoints.to_vec(), access.config.clone()) else {
        return all;
    };
    match tokio::time::timeout(Duration::from_secs(2), admin.call(AdminCall::Members)).await {
        Ok(Ok(list)) => endpoints
            .iter()
            .zip(ids)
            .map(|(addr, id)| list.members.iter().any(|m| Some(m.id) == *id || m.addr == *addr))
            .collect(),
        _ => all,
    }
}

/// Fills in the node id of every endpoint that answers (ids never change,
/// so one answer is enough). Fails if one stays unknown: a partition cannot
/// name it, so it would talk to both sides.
async fn learn_node_ids(access: &Access, endpoints: &[String], ids: &mut [Option<u64>]) -> Result<(), String> {
    assert_eq!(endpoints.len(), ids.len());
    if ids.iter().all(Option::is_some) {
        return Ok(());
    }
    let mut probe = access.kv_client(endpoints.to_vec()).map_err(|e| format!("{e}"))?;
    probe.attempt_timeout = Duration::from_millis(500);
    let mut unknown = Vec::new();
    for (e, id) in endpoints.iter().zip(ids.iter_mut()) {
        if id.is_none() {
            match probe.status_of(e).await {
                Ok(s) => *id = Some(s.id),
                Err(err) => unknown.push(format!("{e} ({err})")),
            }
        }
    }
    match unknown.is_empty() {
        true => Ok(()),
        false => Err(format!("no node id from {}", unknown.join(", "))),
    }
}

async fn find_leader(access: &Access, endpoints: &[String]) -> Option<usize> {
    let mut probe = access.kv_client(endpoints.to_vec()).ok()?;
    probe.attempt_timeout = Duration::from_millis(300);
    for (i, e) in endpoints.iter().enumerate() {
        if let Ok(s) = probe.status_of(e).await {
            if s.role == "leader" {
                return Some(i);
            }
        }
    }
    None
}

async fn wait_for_leader(access: &Access, endpoints: &[String], timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if find_leader(access, endpoints).await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader among {endpoints:?} within {timeout:?}")
}

/// The keys one run uses: `k0..k<count>` under a prefix of their own. The
/// checker assumes every key starts missing, which keys left by an earlier
/// run (a reused `--out`, or `--endpoints` of a cluster that lives on) would
/// break with a false violation. The seed still decides every choice; only
/// the prefix differs between runs.
#[derive(Clone, Debug)]
struct KeySpace {
    prefix: Arc<str>,
    count: usize,
}

impl KeySpace {
    fn fresh(count: usize) -> KeySpace {
        // The time keeps runs apart across processes, the counter within one
        // (two calls may read the same time on a coarse clock).
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        KeySpace {
            prefix: format!("v{:x}-{}-{made}/", nanos, std::process::id()).into(),
            count: count.max(1),
        }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> String {
        format!("{}k{}", self.prefix, rng.random_range(0..self.count))
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    c: usize,
    seed: u64,
    keys: KeySpace,
    stale_reads: bool,
    access: &Access,
    endpoints: Vec<String>,
    clock: Instant,
    history: Arc<Mutex<History>>,
    healed: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut pacer: Pacer,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Ok(mut client) = access.kv_client(endpoints.clone()) else {
        return;
    };
    client.attempt_timeout = Duration::from_millis(1000);
    client.deadline = Duration::from_secs(3);
    let mut n = 0u64;
    let now = |clock: Instant| clock.elapsed().as_nanos() as u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        pacer.wait().await;
        n += 1;
        let key = keys.pick(&mut rng);
        let value = format!("c{c}n{n};");
        let roll = rng.random_range(0..10);
        let call = now(clock);
        let (input, output, write) = if roll < 4 {
            let r = if stale_reads {
                // The broken mode under test: any node answers from its own state.
                let addr = endpoints[rng.random_range(0..endpoints.len())].clone();
                match access.kv_client(vec![addr]) {
                    Ok(mut one) => {
                        one.attempt_timeout = Duration::from_millis(500);
                        one.deadline = Duration::from_secs(1);
                        one.get_with(key.as_bytes(), true).await
                    }
                    Err(e) => Err(e),
                }
            } else {
                client.get(key.as_bytes()).await
            };
            match r {
                Ok(v) => (
                    Input::Get,
                    Some(Output::Get {
                        version: v.as_ref().map_or(0, |v| v.version),
                        value: v.map(|v| String::from_utf8_lossy(&v.value).into_owned()),
                    }),
                    false,
                ),
                // A failed read has no effect: leave it out of the history.
                Err(_) => {
                    history.lock().unwrap().failed_gets += 1;
                    continue;
                }
            }
        } else {
            let input = match roll < 7 {
                true => Input::Put { value: value.clone() },
                false => Input::Append { value: value.clone() },
            };
            // In the history before it is sent: see `History::in_flight`.
            history.lock().unwrap().begin_write(Operation {
                client: c as u64,
                key: key.clone(),
                input: input.clone(),
                output: None,
                call,
                ret: None,
            });
            let output = match roll < 7 {
                true => write_output(client.put(key.as_bytes(), value.as_bytes()).await, |version| {
                    Output::Put { version }
                }),
                false => write_output(client.append(key.as_bytes(), value.as_bytes()).await, |version| {
                    Output::Append { version }
                }),
            };
            (input, output, true)
        };
        let ret = now(clock);
        let ok = output.is_some();
        let mut h = history.lock().unwrap();
        match write {
            true => h.end_write(c as u64, output, ret),
            false => h.ops.push(Operation {
                client: c as u64,
                key,
                input,
                output,
                call,
                ret: Some(ret),
            }),
        }
        if ok && healed.load(std::sync::atomic::Ordering::SeqCst) {
            let (ops, writes) = &mut h.after_heal.ops[c];
            *ops += 1;
            *writes += usize::from(write);
        }
    }
}

/// Which node a pinned reader asks, and as which client it records.
struct Reader {
    /// The node's position among the endpoints.
    node: usize,
    client: u64,
    addr: String,
}

/// Linearizable gets sent only to the node at `addr`, never redirected: a
/// node that answers when it should not (a cut-off or resumed old leader on
/// a lease it no longer holds) is caught by the checker, and one that never
/// answers again after the faults stopped fails the recovery. A failed read
/// has no effect and stays out of the history.
#[allow(clippy::too_many_arguments)]
async fn pinned_reader(
    reader: Reader,
    seed: u64,
    keys: KeySpace,
    access: &Access,
    clock: Instant,
    history: Arc<Mutex<History>>,
    healed: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut pacer: Pacer,
) {
    let Reader { node, client, addr } = reader;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Ok(endpoint) = access.dialer.endpoint(&addr) else {
        return;
    };
    let mut kv = triton_proto::kv::kv_client::KvClient::new(endpoint.connect_lazy());
    let now = |clock: Instant| clock.elapsed().as_nanos() as u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        pacer.wait().await;
        let key = keys.pick(&mut rng);
        let mut req = tonic::Request::new(triton_proto::kv::GetRequest {
            key: key.clone().into_bytes(),
            serializable: false,
        });
        req.set_timeout(Duration::from_secs(3));
        let call = now(clock);
        match kv.get(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let ret = now(clock);
                let mut h = history.lock().unwrap();
                if healed.load(std::sync::atomic::Ordering::SeqCst) {
                    h.after_heal.reads[node] += 1;
                }
                h.ops.push(Operation {
                    client,
                    key,
                    input: Input::Get,
                    output: Some(Output::Get {
                        version: r.version,
                        value: r.found.then(|| String::from_utf8_lossy(&r.value).into_owned()),
                    }),
                    call,
                    ret: Some(ret),
                });
            }
            Err(_) => {
                history.lock().unwrap().failed_gets += 1;
                // Not the leader, cut off or down: ask again a little later.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A write whose outcome is unknown (timeout, refusal after retries) may or
/// may not have happened: no output.
fn write_output(r: Result<u64, ClientError>, f: impl FnOnce(u64) -> Output) -> Option<Output> {
    r.ok().map(f)
}

/// Parses `60s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        other => bail!("bad duration unit {other:?} in {s:?} (ms, s, m)"),
    };
    anyhow::ensure!(secs.is_finite() && secs >= 0.0, "bad duration {s:?}");
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow::anyhow!("duration {s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn pacing_fits_a_long_run_into_the_budget_and_leaves_a_short_one_alone() {
        // A minute, 13 workers: a slot every 0.39 ms, faster than any
        // operation on a real cluster.
        let short = pacing_interval(Duration::from_secs(60), 13, DEFAULT_MAX_OPS);
        assert!(short < Duration::from_millis(1), "{short:?}");
        // Two hours: 13 workers at one operation per 46.8 ms each make
        // 2,000,000 operations.
        let long = pacing_interval(Duration::from_secs(7200), 13, DEFAULT_MAX_OPS);
        assert_eq!(long, Duration::from_micros(46_800));
        let ops = 7200.0 / long.as_secs_f64() * 13.0;
        assert!((ops - DEFAULT_MAX_OPS as f64).abs() < 1.0, "{ops}");
        assert_eq!(pacing_interval(Duration::from_secs(7200), 13, 0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_spaces_operations_and_gives_no_burst_after_a_slow_one() {
        let start = tokio::time::Instant::now();
        let mut pacer = Pacer::new(Duration::from_millis(100));
        for _ in 0..5 {
            pacer.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        // An operation that took a second: the next slot is not in the past.
        tokio::time::sleep(Duration::from_secs(1)).await;
        pacer.wait().await;
        let after_slow = start.elapsed();
        pacer.wait().await;
        assert_eq!(start.elapsed() - after_slow, Duration::from_millis(100));
    }

    #[test]
    fn sub_seeds_never_repeat_across_seeds_streams_and_indexes() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..32u64 {
            for stream in [Stream::Nemesis, Stream::Client, Stream::Reader] {
                for index in 0..64u64 {
                    assert!(seen.insert(sub_seed(seed, stream, index)), "{seed} {index}");
                }
            }
        }
        // Before: client 1 of seed 5 was client 0 of seed 6, and the nemesis
        // of seed 6 too.
        assert_ne!(sub_seed(5, Stream::Client, 1), sub_seed(6, Stream::Client, 0));
        assert_ne!(sub_seed(6, Stream::Nemesis, 0), sub_seed(5, Stream::Client, 0));
        // Still a pure function of its arguments: replays stay replays.
        assert_eq!(sub_seed(9, Stream::Reader, 2), sub_seed(9, Stream::Reader, 2));
    }

    #[test]
    fn a_huge_duration_is_an_error_not_a_panic() {
        let err = parse_duration("100000000000000000000000s").unwrap_err();
        assert!(err.to_string().contains("too long"), "{err:#}");
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        // Pacing a run that long saturates instead of overflowing.
        assert_eq!(pacing_interval(Duration::MAX, 13, 1), Duration::MAX);
    }

    #[test]
    fn any_problem_fails_a_linearizable_run() {
        let mut summary = Summary {
            verdict: Some(Verdict::Linearizable),
            recovery: Some(Duration::from_secs(1)),
            ops: BTreeMap::from([("put", (1, 0, 0))]),
            ..Default::default()
        };
        assert!(summary.passed());
        assert!(summary
            .to_string()
            .ends_with("verdict: PASS: the history is linearizable and the cluster recovered"));
        summary
            .problems
            .push("node 1 (id 1) exited on its own (exit status: 70)".into());
        summary.failed_faults.insert("pause".into(), 2);
        assert!(!summary.passed());
        let text = summary.to_string();
        assert!(text.contains("PROBLEM: node 1 (id 1) exited on its own"), "{text}");
        assert!(
            text.contains("faults that could not be injected (not counted above): pause x2"),
            "{text}"
        );
        assert!(
            text.ends_with("verdict: FAIL: linearizable, but see the 1 problem above"),
            "{text}"
        );
        summary.verdict = Some(Verdict::Unknown);
        assert!(summary.to_string().contains("verdict: FAIL"), "{summary}");
    }

    #[test]
    fn a_fault_kind_that_never_got_injected_is_a_problem() {
        let mut nemesis = Nemesis {
            rng: ChaCha8Rng::seed_from_u64(1),
            faults: vec![Fault::Kill, Fault::Pause],
            injected: BTreeMap::from([("kill".to_string(), 3)]),
            failed: BTreeMap::from([("pause".to_string(), (2, "node 1 had exited".to_string()))]),
            fell_back: BTreeMap::new(),
            ids: Vec::new(),
            touched: Vec::new(),
            removed: None,
        };
        let problems = nemesis.never_injected();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("no pause fault could be injected (2 attempts failed"),
            "{problems:?}"
        );
        // One that failed sometimes but was injected too was tested.
        nemesis.failed.insert("kill".to_string(), (1, "busy".to_string()));
        assert_eq!(nemesis.never_injected().len(), 1);
    }

    #[test]
    fn a_run_where_no_write_completed_fails() {
        // A cluster that refused every write: each one's outcome is unknown,
        // which the checker may take as never applied, and the reads all
        // see missing keys, so the history checks as linearizable.
        let mut summary = Summary {
            verdict: Some(Verdict::Linearizable),
            recovery: Some(Duration::from_secs(1)),
            ops: BTreeMap::from([("get", (40, 3, 0)), ("put", (0, 0, 25)), ("append", (0, 0, 20))]),
            ..Default::default()
        };
        assert!(!summary.passed(), "{summary}");
        let text = summary.to_string();
        assert!(
            text.contains("PROBLEM: no write completed with a known outcome (45 tried)"),
            "{text}"
        );
        assert!(
            text.ends_with("verdict: FAIL: linearizable, but see the 1 problem above"),
            "{text}"
        );
        // One write that completed is enough.
        summary.ops.insert("append", (1, 0, 19));
        assert!(summary.passed(), "{summary}");
    }

    #[test]
    fn recovery_needs_a_write_from_every_client_not_just_reads() {
        let endpoints = ["a:1".to_string(), "b:2".to_string()];
        let mut after = AfterHeal::new(2, 2);
        after.reads = vec![5, 5];
        // Both clients had reads answered, no write: not recovered.
        after.ops = vec![(4, 0), (3, 0)];
        let missing = after.not_recovered(&endpoints, &[true; 3]);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[0].starts_with("client 0 had 4 operations answered, 0 of them writes"),
            "{missing:?}"
        );
        after.ops = vec![(4, 1), (3, 0)];
        assert_eq!(after.not_recovered(&endpoints, &[true; 3]).len(), 1);
        after.ops = vec![(4, 1), (2, 2)];
        assert!(after.not_recovered(&endpoints, &[true; 3]).is_empty());
        // A write alone is not two operations.
        after.ops = vec![(1, 1), (2, 2)];
        assert_eq!(after.not_recovered(&endpoints, &[true; 3]).len(), 1);
    }

    #[test]
    fn recovery_needs_every_nodes_pinned_reader_answered() {
        let endpoints = ["a:1".to_string(), "b:2".to_string(), "c:3".to_string()];
        let mut after = AfterHeal::new(1, 3);
        after.ops = vec![(10, 5)];
        // Node 1 never caught up: the clients, served by the others, do not
        // make up for it.
        after.reads = vec![3, 0, 2];
        assert_eq!(
            after.not_recovered(&endpoints, &[true; 3]),
            ["node 1 (b:2) answered no read of its pinned reader"]
        );
        after.reads[1] = 1;
        assert!(after.not_recovered(&endpoints, &[true; 3]).is_empty());
        // A node the caller removed from the cluster is not waited for.
        after.reads[1] = 0;
        assert!(after.not_recovered(&endpoints, &[true, false, true]).is_empty());
    }

    #[test]
    fn a_saved_history_holds_the_writes_still_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let history = Mutex::new(History {
            started: true,
            ..Default::default()
        });
        let value = "c0n1;".to_string();
        {
            let mut h = history.lock().unwrap();
            // Client 0's put is sent, applied, and not answered yet when the
            // run stops; a reader saw its value meanwhile.
            h.begin_write(Operation {
                client: 0,
                key: "k".into(),
                input: Input::Put { value: value.clone() },
                output: None,
                call: 10,
                ret: None,
            });
            h.ops.push(Operation {
                client: 1,
                key: "k".into(),
                input: Input::Get,
                output: Some(Output::Get {
                    value: Some(value),
                    version: 7,
                }),
                call: 20,
                ret: Some(30),
            });
            // A write that ended is recorded once, with its answer.
            h.begin_write(Operation {
                client: 2,
                key: "k".into(),
                input: Input::Append { value: "c2n1;".into() },
                output: None,
                call: 40,
                ret: None,
            });
            h.end_write(2, Some(Output::Append { version: 9 }), 50);
        }
        assert_eq!(save_history(&history, &path).unwrap(), Some(3));
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let ops = triton_lincheck::history::parse_jsonl(file, Default::default()).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        let pending = ops.iter().find(|op| op.client == 0).expect("the write in flight");
        assert_eq!((pending.output.as_ref(), pending.ret), (None, None));
        let report = triton_lincheck::check(&ops, &CheckOptions::default());
        assert_eq!(report.verdict, Verdict::Linearizable);
    }

    fn nemesis(seed: u64, faults: Vec<Fault>) -> Nemesis {
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            injected: BTreeMap::new(),
            failed: BTreeMap::new(),
            fell_back: BTreeMap::new(),
            ids: Vec::new(),
            touched: Vec::new(),
            removed: None,
        }
    }

    #[test]
    fn the_fault_schedule_is_a_function_of_the_seed_alone() {
        let all = Fault::parse_list("kill,partition,pause,leader,membership,freeze").unwrap();
        // Two runs of one seed against clusters that answer differently: in
        // one a leader is always found and there are 3 voters, in the other
        // none is and there are 2. The steps drawn, and what they hit when
        // the same leader answers, must not differ.
        let run = |leader: Option<usize>, voters: usize| {
            let mut n = nemesis(11, all.clone());
            let mut steps = Vec::new();
            for _ in 0..60 {
                let step = n.next_step(5);
                match step.fault {
                    Some(Fault::Leader | Fault::Freeze) => {
                        let _ = n.aim(&step, leader);
                    }
                    Some(Fault::Membership) => {
                        let _ = n.membership_victim(&step, &vec![(); voters]);
                    }
                    _ => {}
                }
                steps.push(step);
            }
            steps
        };
        let steps = run(Some(0), 3);
        assert_eq!(steps, run(None, 2));
        assert_ne!(steps, {
            let mut other = nemesis(12, all.clone());
            (0..60).map(|_| other.next_step(5)).collect::<Vec<_>>()
        });
        let kinds: std::collections::BTreeSet<_> = steps.iter().filter_map(|s| s.fault).collect();
        assert_eq!(kinds.len(), all.len(), "{kinds:?}");
        let n = nemesis(0, all.clone());
        for step in &steps {
            assert!(step.node < 5 && (1..=2).contains(&step.minority.len()), "{step:?}");
            assert_eq!(n.aim(step, Some(3)), (3, Aim::AsAsked));
            assert_eq!(n.aim(step, None), (step.node, Aim::NoLeader(step.node)));
            let voters = [10, 11, 12];
            assert_eq!(*n.membership_victim(step, &voters), voters[(step.pick % 3) as usize]);
        }
    }

    #[test]
    fn a_leader_fault_that_found_no_leader_counts_apart() {
        let mut n = nemesis(1, vec![Fault::Freeze, Fault::Leader]);
        n.count("leader", Aim::NoLeader(2));
        n.count("freeze", Aim::AsAsked);
        assert_eq!(
            n.injected,
            BTreeMap::from([
                ("freeze".to_string(), 1),
                ("leader (no leader found, hit node 2)".to_string(), 1)
            ])
        );
        assert_eq!(
            n.never_injected(),
            ["no leader fault could be injected (1 found no leader and hit a random node instead)"]
        );
        n.count("leader", Aim::AsAsked);
        assert!(n.never_injected().is_empty());
    }

    /// A node's Control service that refuses the first `refuse` partition
    /// RPCs (as a node still starting, or busy, would) and then obeys.
    struct FakeControl {
        refuse: usize,
        calls: Arc<std::sync::atomic::AtomicUsize>,
        cut_off: Arc<Mutex<Vec<u64>>>,
    }

    #[tonic::async_trait]
    impl triton_proto::control::control_server::Control for FakeControl {
        async fn crash(
            &self,
            _: tonic::Request<triton_proto::control::ControlEmpty>,
        ) -> Result<tonic::Response<triton_proto::control::ControlEmpty>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }

        async fn restore(
            &self,
            _: tonic::Request<triton_proto::control::ControlEmpty>,
        ) -> Result<tonic::Response<triton_proto::control::ControlEmpty>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }

        async fn is_crashed(
            &self,
            _: tonic::Request<triton_proto::control::ControlEmpty>,
        ) -> Result<tonic::Response<triton_proto::control::CrashState>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }

        async fn make_unreachable_from(
            &self,
            request: tonic::Request<NodeIds>,
        ) -> Result<tonic::Response<triton_proto::control::ControlEmpty>, tonic::Status> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.refuse {
                return Err(tonic::Status::unavailable("not ready"));
            }
            *self.cut_off.lock().unwrap() = request.into_inner().ids;
            Ok(tonic::Response::new(triton_proto::control::ControlEmpty {}))
        }

        async fn drop_next_replies(
            &self,
            _: tonic::Request<triton_proto::control::DropReplies>,
        ) -> Result<tonic::Response<triton_proto::control::ControlEmpty>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }
    }

    /// Serves a [`FakeControl`] cut off from nodes 1 and 2; returns its
    /// address, its RPC count and whom it drops.
    async fn fake_node(refuse: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>, Arc<Mutex<Vec<u64>>>) {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cut_off = Arc::new(Mutex::new(vec![1, 2]));
        let fake = FakeControl {
            refuse,
            calls: calls.clone(),
            cut_off: cut_off.clone(),
        };
        let addr = format!("127.0.0.1:{}", local::free_port().unwrap());
        let socket = addr.parse().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(triton_proto::control::control_server::ControlServer::new(fake))
                .serve(socket),
        );
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (addr, calls, cut_off)
    }

    #[tokio::test]
    async fn healing_retries_a_node_until_it_confirms() {
        let (addr, calls, cut_off) = fake_node(3).await;
        let access = Access::new(ClusterConfig::default()).unwrap();
        let failures = heal_partitions(&access, std::slice::from_ref(&addr), Duration::from_secs(20)).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert!(cut_off.lock().unwrap().is_empty(), "the node is still cut off");
    }

    #[tokio::test]
    async fn a_node_that_never_confirms_the_heal_is_reported_by_address() {
        let (addr, _, cut_off) = fake_node(0).await;
        // Nothing listens there.
        let dead = format!("127.0.0.1:{}", local::free_port().unwrap());
        let access = Access::new(ClusterConfig::default()).unwrap();
        let endpoints = [addr, dead.clone()];
        let failures = heal_partitions(&access, &endpoints, Duration::from_millis(600)).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(&format!("node at {dead} may still be cut off")),
            "{failures:?}"
        );
        assert!(
            cut_off.lock().unwrap().is_empty(),
            "the live node was healed all the same"
        );
    }

    #[test]
    fn each_run_gets_keys_no_earlier_run_wrote() {
        let (a, b) = (KeySpace::fresh(3), KeySpace::fresh(3));
        assert_ne!(a.prefix, b.prefix);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let k = a.pick(&mut rng);
            let i: usize = k
                .strip_prefix(&*a.prefix)
                .and_then(|n| n.strip_prefix('k'))
                .unwrap()
                .parse()
                .unwrap();
            assert!(i < 3, "{k}");
        }
    }
}

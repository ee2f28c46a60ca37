//! `triton verify` end to end: it passes on a correct cluster under every
//! kind of fault, and it catches the stale reads of a deliberately broken
//! read path (a checker that cannot fail is no checker).

use std::process::Command;

fn verify(args: &[&str], out: &std::path::Path) -> (bool, String) {
    verify_with_env(args, out, &[])
}

/// The arguments of a run against a local 3-node cluster that verify starts.
struct Local {
    duration: &'static str,
    clients: u32,
    keys: u32,
    seed: u64,
    faults: &'static str,
}

impl Local {
    fn args(&self) -> Vec<String> {
        [
            "--nodes",
            "3",
            "--duration",
            self.duration,
            "--clients",
            &self.clients.to_string(),
            "--keys",
            &self.keys.to_string(),
            "--seed",
            &self.seed.to_string(),
            "--faults",
            self.faults,
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// Runs it, with `extra` arguments and environment `env`.
    fn run(&self, extra: &[&str], out: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
        let mut args = self.args();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        verify_with_env(&args, out, env)
    }
}

fn verify_with_env(args: &[&str], out: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_triton"))
        .envs(env.iter().copied())
        .arg("verify")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run triton verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn verify_passes_on_a_correct_cluster_under_all_faults() {
    let dir = tempfile::tempdir().unwrap();
    let run = Local {
        duration: "10s",
        clients: 4,
        keys: 2,
        seed: 7,
        faults: "kill,partition,pause,leader,freeze",
    };
    let (ok, text) = run.run(&[], dir.path(), &[]);
    assert!(ok, "verify failed on a correct cluster:\n{text}");
    assert!(text.contains("PASS"), "{text}");
    assert!(
        text.contains("faults injected:") && !text.contains("faults injected: none"),
        "{text}"
    );
    let history = std::fs::read_to_string(dir.path().join("history.jsonl")).unwrap();
    assert!(history.lines().count() > 50, "too few operations recorded");
}

#[test]
fn verify_passes_while_voters_are_removed_and_added_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = Local {
        duration: "8s",
        clients: 4,
        keys: 2,
        seed: 3,
        faults: "membership",
    };
    let (ok, text) = run.run(&[], dir.path(), &[]);
    assert!(ok, "verify failed under membership changes:\n{text}");
    assert!(text.contains("PASS"), "{text}");
    assert!(text.contains("faults injected: membership x"), "{text}");
    assert!(
        text.contains("then add it back"),
        "the fault log names each change: {text}"
    );
}

#[test]
fn verify_catches_stale_reads_from_a_broken_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let run = Local {
        duration: "8s",
        clients: 6,
        keys: 1,
        seed: 3,
        faults: "leader",
    };
    let (ok, text) = run.run(&["--unsafe-stale-reads"], dir.path(), &[]);
    assert!(!ok, "verify passed although reads skipped ReadIndex:\n{text}");
    assert!(text.contains("NOT linearizable"), "{text}");
    let pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("violation-"))
        .collect();
    assert!(!pages.is_empty(), "no violation timeline was written");
}

#[test]
fn verify_rejects_bad_arguments_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = verify(&["--faults", "meteor", "--duration", "1s"], dir.path());
    assert!(!ok);
    assert!(text.contains("unknown fault"), "{text}");
    let (ok, text) = verify(
        &["--endpoints", "127.0.0.1:1", "--faults", "kill", "--duration", "1s"],
        dir.path(),
    );
    assert!(!ok);
    assert!(text.contains("need a cluster started by triton verify"), "{text}");
}

/// The freeze fault against nodes whose ticks come from a timer (the clock
/// before lease reads, behind a test-only switch): a leader frozen inside
/// its lease resumes thinking little time passed and answers its pinned
/// reader from a lease that ended long ago. Verify must say so. (With the
/// real clock the freeze fault passes: see the test above, which includes it.)
#[test]
fn verify_catches_stale_lease_reads_of_a_leader_whose_clock_lags() {
    // Whether one freeze shows a stale read depends on where in its lease
    // the leader was frozen; 16 s gives five freezes (10 s, three, once
    // missed all three in about a dozen runs). A run that catches none is
    // followed by one with the next seed, up to three: verify must catch
    // the violation in one of them (a miss in all three is about one in
    // 250,000 from that rate; a verify that cannot catch it fails every time).
    let mut passed = Vec::new();
    let (ok, text) = loop {
        let seed = passed.len() as u64 + 1;
        let dir = tempfile::tempdir().unwrap();
        let run = Local {
            duration: "16s",
            clients: 4,
            keys: 1,
            seed,
            faults: "freeze",
        };
        let (ok, text) = run.run(&[], dir.path(), &[("TRITON_UNSAFE_TIMER_TICKS", "1")]);
        if !ok || seed == 3 {
            break (ok, text);
        }
        passed.push(text);
    };
    assert!(
        !ok,
        "verify passed three runs although frozen leaders' ticks lagged:\n{}\n{text}",
        passed.join("\n")
    );
    assert!(!ok);
    assert!(text.contains("NOT linearizable"), "{text}");
    assert!(text.contains("freeze: cut off leader"), "{text}");
}

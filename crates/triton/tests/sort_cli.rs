//! Process tests of `triton gensort | showsort | valsort | sort`: the real
//! binary on real files, checked with valsort and its checksum.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TRITON: &str = env!("CARGO_BIN_EXE_triton");

/// A scratch directory removed on drop (also when a test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "triton-sort-cli-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

fn triton(args: &[&str]) -> Output {
    Command::new(TRITON).args(args).output().expect("run triton")
}

fn ok(args: &[&str]) -> String {
    let out = triton(args);
    assert!(
        out.status.success(),
        "triton {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn fails(args: &[&str], expected: &str) {
    let out = triton(args);
    assert!(!out.status.success(), "triton {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(expected),
        "triton {args:?}: expected {expected:?} in {stderr}"
    );
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

struct Valsort {
    sorted: bool,
    records: u64,
    duplicates: u64,
    checksum: String,
}

fn valsort(path: &Path) -> Valsort {
    let out = triton(&["valsort", p(path)]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_string()
    };
    let sorted = text.contains("File is sorted");
    assert_eq!(out.status.success(), sorted, "exit code must match the verdict: {text}");
    Valsort {
        sorted,
        records: field("Records:").parse().unwrap(),
        duplicates: field("Duplicate keys:").parse().unwrap(),
        checksum: field("Checksum:"),
    }
}

/// Sort `input` into a new file and check it is a sorted permutation.
fn sort_and_check(dir: &Path, input: &Path, extra: &[&str]) -> PathBuf {
    let output = dir.join(format!("{}.sorted", input.file_name().unwrap().to_str().unwrap()));
    let mut args = vec!["sort", p(input), p(&output)];
    args.extend_from_slice(extra);
    ok(&args);
    let before = valsort(input);
    let after = valsort(&output);
    assert!(after.sorted, "{} not sorted", output.display());
    assert_eq!(before.records, after.records);
    assert_eq!(before.checksum, after.checksum, "sort changed the multiset of records");
    output
}

#[test]
fn gensort_is_deterministic_and_rounds_up() {
    let dir = tempdir();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    ok(&["gensort", p(&a), "1001", "--seed", "5"]);
    ok(&["gensort", p(&b), "1001", "--seed", "5"]);
    ok(&["gensort", p(&c), "1001", "--seed", "6"]);
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 1100);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    ok(&["gensort", p(&a), "0.5 kb"]);
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 500);
    ok(&["gensort", p(&a), "1KiB"]);
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 1100);
    fails(&["gensort", p(&a), "12 parsecs"], "unknown unit");
}

#[test]
fn showsort_prints_one_line_per_record() {
    let dir = tempdir();
    let f = dir.path().join("f");
    ok(&["gensort", p(&f), "300", "--seed", "1"]);
    let text = ok(&["showsort", p(&f)]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let bytes = std::fs::read(&f).unwrap();
    let key_hex: String = bytes[..10].iter().map(|b| format!("{b:02x}")).collect();
    assert!(lines[0].starts_with(&format!("{key_hex} 0000")), "{}", lines[0]);
    assert!(lines[2].contains("00000000000000000000000000000002"), "{}", lines[2]);
    assert_eq!(ok(&["showsort", p(&f), "--limit", "1"]).lines().count(), 1);
}

#[test]
fn sorts_empty_single_and_multi_megabyte_files() {
    let dir = tempdir();
    for (name, size) in [("empty", "0"), ("one", "100"), ("three-mb", "3mb")] {
        let input = dir.path().join(name);
        ok(&["gensort", p(&input), size, "--seed", "3"]);
        let out = sort_and_check(dir.path(), &input, &[]);
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            std::fs::metadata(&input).unwrap().len()
        );
    }
    let unsorted = valsort(&dir.path().join("three-mb"));
    assert!(!unsorted.sorted, "random input should not be sorted");
}

#[test]
fn external_sort_beyond_the_memory_budget_matches_in_memory_sort() {
    let dir = tempdir();
    let input = dir.path().join("big");
    ok(&["gensort", p(&input), "4mb", "--seed", "9"]);
    let in_memory = sort_and_check(dir.path(), &input, &["--threads", "1"]);
    let in_memory_bytes = std::fs::read(&in_memory).unwrap();
    let external = dir.path().join("external");
    let out = triton(&["sort", p(&input), p(&external), "--memory", "256KiB"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("external"), "4 MB in 256 KiB must spill runs: {stderr}");
    assert!(
        std::fs::read(&external).unwrap() == in_memory_bytes,
        "external sort differs"
    );
    // No temporary runs are left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".triton-sort"))
        .collect();
    assert!(leftovers.is_empty(), "temporary runs left behind");
}

#[test]
fn duplicate_keys_sort_and_keep_every_record() {
    let dir = tempdir();
    let input = dir.path().join("dups");
    let mut data = Vec::new();
    for i in 0..20_000u32 {
        let mut record = [b'v'; 100];
        record[..10].fill((i % 7) as u8 * 37); // 7 distinct keys
        record[10..14].copy_from_slice(&i.to_be_bytes()); // distinct values
        data.extend_from_slice(&record);
    }
    std::fs::write(&input, &data).unwrap();
    for extra in [&[][..], &["--memory", "128KiB"][..]] {
        let out = sort_and_check(dir.path(), &input, extra);
        let report = valsort(&out);
        assert_eq!(report.duplicates, 20_000 - 7);
        // Stable: equal keys keep their input order.
        let sorted = std::fs::read(&out).unwrap();
        for (a, b) in sorted.chunks(100).zip(sorted.chunks(100).skip(1)) {
            if a[..10] == b[..10] {
                assert!(a[10..14] < b[10..14], "equal keys reordered");
            }
        }
    }
}

#[test]
fn valsort_catches_an_unsorted_file() {
    let dir = tempdir();
    let f = dir.path().join("f");
    let mut data = vec![0u8; 300];
    data[0] = 1; // record 0 > record 1
    data[200] = 2;
    std::fs::write(&f, &data).unwrap();
    let out = triton(&["valsort", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not sorted: record 1"), "{text}");
}

#[test]
fn malformed_inputs_give_clear_errors() {
    let dir = tempdir();
    let odd = dir.path().join("odd");
    std::fs::write(&odd, [0u8; 150]).unwrap();
    let out = dir.path().join("out");
    fails(
        &["sort", p(&odd), p(&out)],
        "not a multiple of the 100-byte record size",
    );
    fails(&["valsort", p(&odd)], "not a multiple of the 100-byte record size");
    fails(&["showsort", p(&odd)], "not a multiple of the 100-byte record size");
    let missing = dir.path().join("missing");
    fails(&["sort", p(&missing), p(&out)], "opening input");
    fails(&["valsort", p(&missing)], "opening");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, []).unwrap();
    fails(&["sort", p(&empty), p(&out), "--memory", "1kb"], "at least 64 KiB");
    fails(&["sort", p(&empty), p(&out), "--memory", "lots"], "invalid size");
    fails(&["sort", p(&empty), p(&out), "--threads", "0"], "--threads");
}

/// `triton args` with files limited to `limit` bytes (RLIMIT_FSIZE) and
/// SIGXFSZ ignored, so a write past the limit fails with EFBIG: a write
/// failure without filling a disk.
fn triton_with_file_limit(args: &[&str], limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(TRITON);
    command.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("run triton")
}

fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".triton-"))
        .collect()
}

#[test]
fn a_failed_write_leaves_input_and_output_as_they_were() {
    let dir = tempdir();
    let f = dir.path().join("f");
    ok(&["gensort", p(&f), "3mb", "--seed", "4"]);
    let original = std::fs::read(&f).unwrap();
    let g = dir.path().join("g");
    // In memory and external (runs fit the limit, the output does not).
    for extra in [&[][..], &["--memory", "256KiB"][..]] {
        // Sorted onto itself: the input survives.
        let mut args = vec!["sort", p(&f), p(&f)];
        args.extend_from_slice(extra);
        let out = triton_with_file_limit(&args, 2_000_000);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail past the file size limit");
        assert_eq!(stderr.matches("File too large").count(), 1, "{stderr}");
        assert!(std::fs::read(&f).unwrap() == original, "{args:?} damaged the input");
        assert!(temporary_files(dir.path()).is_empty(), "{args:?} left temporary files");
        // A new output is not created, an old one is not touched.
        let mut args = vec!["sort", p(&f), p(&g)];
        args.extend_from_slice(extra);
        assert!(!triton_with_file_limit(&args, 2_000_000).status.success());
        assert!(!g.exists(), "{args:?} left a partial output");
        std::fs::write(&g, b"previous result").unwrap();
        assert!(!triton_with_file_limit(&args, 2_000_000).status.success());
        assert_eq!(std::fs::read(&g).unwrap(), b"previous result");
        std::fs::remove_file(&g).unwrap();
        assert!(temporary_files(dir.path()).is_empty(), "{args:?} left temporary files");
    }
    // Without the limit, sorting onto itself works.
    let before = valsort(&f);
    ok(&["sort", p(&f), p(&f)]);
    let after = valsort(&f);
    assert!(after.sorted);
    assert_eq!(after.checksum, before.checksum);
}

#[test]
fn an_io_error_names_its_cause_once() {
    let dir = tempdir();
    let out = triton(&["sort", p(&dir.path().join("missing")), p(&dir.path().join("out"))]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opening input"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

/// Peak resident size in KiB of a successful `triton args` (its rusage).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the rusage
fn peak_rss_kib(args: &[&str]) -> i64 {
    let child = Command::new(TRITON)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run triton");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for (and reaps) our own child, with valid out-pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "triton {args:?} failed"
    );
    usage.ru_maxrss
}

#[test]
fn an_external_sort_stays_near_its_memory_budget() {
    let dir = tempdir();
    let input = dir.path().join("big");
    let output = dir.path().join("big.sorted");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, []).unwrap();
    ok(&["gensort", p(&input), "60mb", "--seed", "8"]);
    let before = valsort(&input);
    let baseline = peak_rss_kib(&["sort", p(&empty), p(&dir.path().join("empty.sorted"))]);
    // Hundreds of runs, merged in two passes: what the merge reads of the
    // runs must not stay resident.
    for (memory, kib) in [("256KiB", 256), ("1MiB", 1024)] {
        let peak = peak_rss_kib(&["sort", p(&input), p(&output), "--memory", memory]);
        let after = valsort(&output);
        assert!(after.sorted);
        assert_eq!(before.checksum, after.checksum);
        // Generous: the process's own baseline, the budget, and 32 MiB for
        // buffers and page granularity (whole runs resident would be up to
        // 60 MB more).
        let limit = baseline + kib + 32 * 1024;
        assert!(
            peak <= limit,
            "peak RSS {peak} KiB with --memory {memory} (baseline {baseline} KiB, limit {limit} KiB)"
        );
    }
}

/// A sort stopped by SIGINT or SIGTERM takes its spilled runs and its
/// unfinished output with it, and leaves the input and an old output be.
#[test]
fn a_sort_stopped_by_a_signal_leaves_no_temporary_files() {
    let dir = tempdir();
    let input = dir.path().join("big");
    let output = dir.path().join("big.sorted");
    ok(&["gensort", p(&input), "40mb", "--seed", "9"]);
    std::fs::write(&output, b"the old output").unwrap();
    let before = valsort(&input);
    for (signal, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = Command::new(TRITON)
            .args(["sort", p(&input), p(&output), "--memory", "256KiB"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn triton sort");
        // Stopped once it has spilled a run or more.
        let start = std::time::Instant::now();
        while temporary_files(dir.path()).is_empty() {
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "no runs spilled");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the sort ended before it could be stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{stderr}");
        assert!(stderr.contains("removed"), "{stderr}");
        assert_eq!(temporary_files(dir.path()), Vec::<String>::new(), "{stderr}");
        assert_eq!(std::fs::read(&output).unwrap(), b"the old output");
        assert_eq!(valsort(&input).checksum, before.checksum);
    }
}

/// An output that is not a regular file (`/dev/null`, a FIFO) cannot be
/// written at positions or sized: the sort still delivers every record, in
/// order, whether it fits the budget or spills runs.
#[test]
fn sorts_into_dev_null_and_a_fifo() {
    let dir = tempdir();
    let input = dir.path().join("in");
    ok(&["gensort", p(&input), "2mb", "--seed", "12"]);
    let before = valsort(&input);
    for memory in [None, Some("256KiB")] {
        let mut args = vec!["sort", p(&input), "/dev/null"];
        args.extend(memory.iter().flat_map(|m| ["--memory", *m]));
        ok(&args);

        let fifo = dir.path().join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(p(&fifo)).unwrap();
        // SAFETY: a NUL-terminated path and a mode; mkfifo(3) touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
        };
        let mut args = vec!["sort", p(&input), p(&fifo)];
        args.extend(memory.iter().flat_map(|m| ["--memory", *m]));
        ok(&args);
        let sorted = reader.join().unwrap();
        let copy = dir.path().join("from-fifo");
        std::fs::write(&copy, &sorted).unwrap();
        let after = valsort(&copy);
        assert!(after.sorted, "memory {memory:?}");
        assert_eq!(after.checksum, before.checksum, "memory {memory:?}");
        assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
    }
}

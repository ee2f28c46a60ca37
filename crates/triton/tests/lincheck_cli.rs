//! `triton lincheck` end to end: exit status 0 on a linearizable history, 1
//! on a violation (with the HTML timeline written) or an unreadable file, 3
//! when there is nothing to check.

use std::path::PathBuf;
use std::process::Command;

/// A scratch directory removed on drop (even when a test panics).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("triton-lincheck-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PUT_A: &str =
    r#"{"client":1,"key":"k","input":{"Put":{"value":"a"}},"output":{"Put":{"version":1}},"call":0,"ret":10}"#;
const PUT_B: &str =
    r#"{"client":2,"key":"k","input":{"Put":{"value":"b"}},"output":{"Put":{"version":2}},"call":20,"ret":30}"#;
const STALE_GET: &str =
    r#"{"client":3,"key":"k","input":"Get","output":{"Get":{"value":"a","version":1}},"call":40,"ret":50}"#;
const FRESH_GET: &str =
    r#"{"client":3,"key":"k","input":"Get","output":{"Get":{"value":"b","version":2}},"call":40,"ret":50}"#;
const UNKNOWN_APPEND: &str =
    r#"{"client":4,"key":"k","input":{"Append":{"value":"x"}},"output":null,"call":5,"ret":null}"#;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_triton"))
        .arg("lincheck")
        .args(args)
        .output()
        .expect("run triton");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn linearizable_history_exits_zero() {
    let dir = Scratch::new("ok");
    let file = dir.0.join("h.jsonl");
    std::fs::write(&file, [PUT_A, PUT_B, UNKNOWN_APPEND, FRESH_GET].join("\n")).unwrap();
    let (code, text) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("linearizable"), "{text}");
    assert!(
        text.contains("4 operations: 3 with a known answer, 1 with an unknown outcome"),
        "{text}"
    );
}

#[test]
fn stale_read_exits_one_and_writes_the_timeline() {
    let dir = Scratch::new("bad");
    let file = dir.0.join("h.jsonl");
    let html = dir.0.join("out.html");
    std::fs::write(&file, [PUT_A, PUT_B, UNKNOWN_APPEND, STALE_GET].join("\n") + "\n").unwrap();
    let (code, text) = run(&[file.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT linearizable"), "{text}");
    // The minimal failing sub-history is printed as JSON lines.
    assert!(text.contains(STALE_GET), "{text}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<svg") && page.contains("No order of these operations"));
    assert!(
        !page.contains("http://") || page.contains("http://www.w3.org/2000/svg"),
        "no external fetches"
    );
}

#[test]
fn malformed_history_is_an_error_not_a_panic() {
    let dir = Scratch::new("junk");
    let file = dir.0.join("h.jsonl");
    std::fs::write(&file, format!("{PUT_A}\n{{\"client\": 1}}\n")).unwrap();
    let (code, text) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// The reviewer's `typo.jsonl`: "result" for "output". Read as an unknown
/// outcome, the impossible read (a value nobody wrote) went unchecked.
#[test]
fn a_misspelled_output_is_refused_not_taken_as_unknown() {
    let dir = Scratch::new("typo");
    let file = dir.0.join("h.jsonl");
    let typo = [
        r#"{"client":1,"key":"k","input":{"Put":{"value":"a"}},"result":{"Put":{"version":7}},"call":0,"ret":10}"#,
        r#"{"client":2,"key":"k","input":"Get","result":{"Get":{"value":"zzz","version":99}},"call":20,"ret":30}"#,
    ];
    std::fs::write(&file, typo.join("\n") + "\n").unwrap();
    let (code, text) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("line 1") && text.contains("result"), "{text}");
    assert!(!text.contains("linearizable"), "{text}");
}

#[test]
fn a_history_without_known_answers_has_nothing_to_check() {
    let dir = Scratch::new("nothing");
    let empty = dir.0.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let (code, text) = run(&[empty.to_str().unwrap()]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("nothing to check"), "{text}");
    assert!(!text.contains("linearizable"), "{text}");
    let unknown_only = dir.0.join("unknown.jsonl");
    std::fs::write(&unknown_only, format!("{UNKNOWN_APPEND}\n")).unwrap();
    let (code, text) = run(&[unknown_only.to_str().unwrap()]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("0 with a known answer, 1 with an unknown outcome"),
        "{text}"
    );
    // The status is documented where a script writer looks.
    let (code, help) = run(&["--help"]);
    assert_eq!(code, 0, "{help}");
    assert!(help.contains("3 nothing to check"), "{help}");
}

#[test]
fn a_history_over_the_byte_limit_is_refused() {
    let dir = Scratch::new("big");
    let file = dir.0.join("h.jsonl");
    std::fs::write(&file, [PUT_A, PUT_B, FRESH_GET].join("\n")).unwrap();
    let (code, text) = run(&[file.to_str().unwrap(), "--max-bytes", "150"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("longer than 150 bytes"), "{text}");
    let (code, text) = run(&[file.to_str().unwrap(), "--max-bytes", "100000"]);
    assert_eq!(code, 0, "{text}");
}

/// The reviewer's `fab.jsonl` and `stuck.jsonl`: the minimal sub-history
/// keeps the unknown write its read saw (printed with a `?` answer) and only
/// the operations of the anomaly.
#[test]
fn a_violation_shows_the_unknown_write_its_read_saw() {
    let dir = Scratch::new("fab");
    let unknown_put = r#"{"client":1,"key":"k","input":{"Put":{"value":"a"}},"output":null,"call":0,"ret":null}"#;
    let fab = [
        unknown_put,
        r#"{"client":2,"key":"k","input":"Get","output":{"Get":{"value":"a","version":5}},"call":1,"ret":10}"#,
        r#"{"client":3,"key":"k","input":{"Put":{"value":"b"}},"output":{"Put":{"version":5}},"call":2,"ret":3}"#,
    ];
    let file = dir.0.join("fab.jsonl");
    std::fs::write(&file, fab.join("\n")).unwrap();
    let (code, text) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no order of these 3 explains"), "{text}");
    assert!(
        text.contains(r#"Put("a") -> ?"#) && text.contains(unknown_put),
        "{text}"
    );

    let stuck = [
        r#"{"client":1,"key":"k","input":{"Put":{"value":"p"}},"output":{"Put":{"version":1}},"call":0,"ret":1}"#,
        r#"{"client":1,"key":"k","input":{"Put":{"value":"q"}},"output":{"Put":{"version":2}},"call":2,"ret":3}"#,
        r#"{"client":2,"key":"k","input":"Get","output":{"Get":{"value":"q","version":2}},"call":4,"ret":5}"#,
        r#"{"client":3,"key":"k","input":{"Put":{"value":"a"}},"output":null,"call":6,"ret":null}"#,
        r#"{"client":2,"key":"k","input":"Get","output":{"Get":{"value":"a","version":10}},"call":7,"ret":8}"#,
        r#"{"client":4,"key":"k","input":{"Put":{"value":"b"}},"output":{"Put":{"version":10}},"call":9,"ret":10}"#,
    ];
    let file = dir.0.join("stuck.jsonl");
    std::fs::write(&file, stuck.join("\n")).unwrap();
    let (code, text) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no order of these 3 explains"), "{text}");
    assert!(!text.contains(r#"Put("p")"#), "an unrelated write was kept: {text}");
}

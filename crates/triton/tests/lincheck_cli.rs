//! `triton lincheck` end to end: exit status 0 on a linearizable history, 1
//! on a violation (with the HTML timeline written) or an unreadable file.

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

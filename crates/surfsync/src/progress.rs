//! Progress output: indicatif bars on a terminal, plain lines otherwise, so
//! logs of scripted runs stay readable.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on stderr (use when stderr is a terminal).
    Bars,
    /// One line per phase on stderr.
    Lines,
    /// Nothing (library use, tests).
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> ProgressMode {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// One phase (hashing, upload, download) counted in bytes.
#[derive(Clone)]
pub struct Phase {
    name: &'static str,
    bar: Option<ProgressBar>,
    mode: ProgressMode,
    done: Arc<AtomicU64>,
    items: Arc<AtomicU64>,
    started: Instant,
}

impl Phase {
    /// Starts a phase expected to move `total_bytes`.
    pub fn start(mode: ProgressMode, name: &'static str, total_bytes: u64) -> Phase {
        let bar = (mode == ProgressMode::Bars).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name);
            bar
        });
        Phase {
            name,
            bar,
            mode,
            done: Arc::new(AtomicU64::new(0)),
            items: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
        }
    }

    /// Counts `bytes` more done, in one more item (file or block).
    pub fn inc(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        self.items.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Prints a warning without garbling the bar.
    pub fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("triton sync: warning: {message}")),
            None if self.mode != ProgressMode::Quiet => {
                eprintln!("triton sync: warning: {message}")
            }
            None => {}
        }
    }

    /// Ends the phase; in line mode prints what it did.
    pub fn finish(&self, unit: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let items = self.items.load(Ordering::Relaxed);
        if self.mode != ProgressMode::Quiet && items > 0 {
            eprintln!(
                "{}: {} {unit}, {} in {:.2} s",
                self.name,
                items,
                human_bytes(self.done.load(Ordering::Relaxed)),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// `1234567` -> `"1.2 MB"`: sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(u64::MAX), "18446744.1 TB");
    }
}

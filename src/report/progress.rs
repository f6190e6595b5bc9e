//! Progress of long work, one kind for both halves: a bar with an ETA on a terminal, and plain
//! lines (one per milestone the caller marks, such as a finished epoch or run, and one at every
//! tenth of the work, each with the ETA) when stderr is a log file or a batch job's output, so
//! that a job that runs for hours is never silent.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// Plain lines on stderr at each milestone.
    Lines,
    /// Nothing.
    Silent,
}

/// Progress over a known amount of work (`unit`s: SGD steps, training images, runs).
pub struct Progress {
    bar: ProgressBar,
    mode: Mode,
    unit: String,
    start: Mutex<Instant>,
    /// The last tenth of the work announced in line mode.
    tenth: AtomicU64,
}

impl Progress {
    /// Progress over `total` units: a bar when `visible` and stderr is a terminal, plain lines
    /// when `visible` and it is not, nothing otherwise.
    pub fn new(total: u64, unit: &str, visible: bool) -> Self {
        let mode = match (visible, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Silent,
            (true, true) => Mode::Bar,
            (true, false) => Mode::Lines,
        };
        let bar = if mode == Mode::Bar {
            ProgressBar::new(total)
        } else {
            let b = ProgressBar::hidden();
            b.set_length(total);
            b
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "[{{elapsed_precise}}] {{wide_bar}} {{percent}}% {{human_pos}}/{{human_len}} {unit} ETA {{eta}} | {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            mode,
            unit: unit.to_string(),
            start: Mutex::new(Instant::now()),
            tenth: AtomicU64::new(0),
        }
    }

    /// No output at all.
    pub fn hidden() -> Self {
        Progress::new(0, "", false)
    }

    /// Sets the total (work already done before a resume is best left out of it, so that the
    /// ETA is measured on work done in this process) and restarts the clock.
    pub fn set_length(&self, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(0);
        if let Ok(mut s) = self.start.lock() {
            *s = Instant::now();
        }
        self.tenth.store(0, Ordering::Relaxed);
        self.bar.reset_elapsed();
    }

    /// Adds `n` units of finished work (in line mode, a line at every tenth of the work).
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if self.mode == Mode::Lines {
            let len = self.bar.length().unwrap_or(0).max(1);
            let tenth = (10 * self.bar.position() / len).min(10);
            if self.tenth.fetch_max(tenth, Ordering::Relaxed) < tenth {
                let line = self.status_line("");
                let _ = writeln!(std::io::stderr().lock(), "{}", line.trim_end_matches(" | "));
            }
        }
    }

    /// The bar's message (what runs now); not printed in line mode.
    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// A milestone (an epoch, a run or a cell finished): the bar's message on a terminal, a
    /// line with the elapsed time, the fraction done and the ETA in line mode.
    pub fn milestone(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match self.mode {
            Mode::Bar => self.bar.set_message(msg),
            Mode::Lines => {
                let line = self.status_line(&msg);
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Mode::Silent => {}
        }
    }

    /// A note printed in both visible modes (what a resume loaded, what remains).
    pub fn note(&self, msg: impl AsRef<str>) {
        match self.mode {
            Mode::Bar => self.bar.println(msg.as_ref()),
            Mode::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "{}", msg.as_ref());
            }
            Mode::Silent => {}
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn status_line(&self, msg: &str) -> String {
        let elapsed = self
            .start
            .lock()
            .map(|s| s.elapsed())
            .unwrap_or(Duration::ZERO);
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let eta = if pos == 0 || pos >= len {
            "-".to_string()
        } else {
            let secs = elapsed.as_secs_f64() * (len - pos) as f64 / pos as f64;
            hms(Duration::from_secs_f64(secs))
        };
        let pct = if len == 0 {
            100.0
        } else {
            100.0 * pos as f64 / len as f64
        };
        format!(
            "[{}] {pct:5.1}% {pos}/{len} {} ETA {eta} | {msg}",
            hms(elapsed),
            self.unit
        )
    }
}

/// `h:mm:ss`.
fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_reports_fraction_and_eta() {
        let p = Progress::new(100, "steps", true);
        p.inc(25);
        let line = p.status_line("run 1 done");
        assert!(line.contains(" 25.0% 25/100 steps ETA "), "{line}");
        assert!(line.ends_with("| run 1 done"), "{line}");
        p.inc(75);
        assert!(p.status_line("x").contains("ETA -"));
        assert_eq!(hms(Duration::from_secs(3725)), "1:02:05");
    }
}

//! Progress of long work: an `indicatif` bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress reporter for `total` steps of `what`.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    total: u64,
    last_log: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>12} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        Progress {
            bar,
            what,
            total,
            last_log: Instant::now(),
        }
    }

    /// `done` of the total steps are finished.
    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if done == self.total || self.last_log.elapsed() > Duration::from_secs(5) {
                    self.last_log = Instant::now();
                    tracing::info!(what = self.what, done, total = self.total, "progress");
                }
            }
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

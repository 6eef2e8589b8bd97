//! Fails a hung test fast instead of letting it block the whole run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Aborts the test process if not dropped within the limit, naming the test.
#[must_use = "the watchdog stops watching when dropped"]
pub(crate) struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub(crate) fn new(label: &str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let label = label.to_owned();
        thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            eprintln!("WATCHDOG: test `{label}` still running after {limit:?}: aborting");
            std::process::abort();
        });
        Watchdog { done }
    }

    /// The default limit: 60 s.
    pub(crate) fn start(label: &str) -> Watchdog {
        Watchdog::new(label, Duration::from_secs(60))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

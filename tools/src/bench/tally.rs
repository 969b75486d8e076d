//! What the workers share: the requests they check, the success and failure
//! tally, the request budget and the progress line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A 16-byte request numbered `index` (lowercase hex, so uppercasing changes it)
/// and the reply it must get.
///
/// Written digit by digit rather than with `format!`: the pipeline scenario makes
/// two per request, and a formatted `String` (an allocation, the formatting
/// machinery, a free) cost the load generator some 1,500 instructions of its
/// ~3,700 per request (callgrind), CPU the server it measures then lacks.
pub(super) fn small_request(index: u64) -> ([u8; SMALL_REQUEST], [u8; SMALL_REQUEST]) {
    const PREFIX: &[u8; 4] = b"req-";
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut request = [0u8; SMALL_REQUEST];
    request[..PREFIX.len()].copy_from_slice(PREFIX);
    // The low 48 bits, as 12 lowercase hex digits, most significant first.
    for (position, digit) in request[PREFIX.len()..].iter_mut().rev().enumerate() {
        *digit = DIGITS[((index >> (4 * position)) & 0xf) as usize];
    }
    let mut expected = request;
    expected.make_ascii_uppercase();
    (request, expected)
}

/// The requests of one stream, in order, and their replies: `small_request(0)`,
/// `small_request(1)`, ..., each made from the last by counting in its digits.
/// The pipeline scenario numbers some four million requests a second, and
/// `small_request`'s 24 digit lookups per request (for the request and for the
/// reply it checks) were 7 % of the load generator's time (perf), time the stacks
/// it measures then lacked.
pub(super) struct Numbered {
    /// The current request, as `small_request` makes it.
    request: [u8; SMALL_REQUEST],
    /// Its reply.
    expected: [u8; SMALL_REQUEST],
}

impl Numbered {
    /// Starts at request 0.
    pub(super) fn new() -> Self {
        let (request, expected) = small_request(0);
        Self { request, expected }
    }

    /// The current request.
    pub(super) fn request(&self) -> &[u8; SMALL_REQUEST] {
        &self.request
    }

    /// The reply the current request must get.
    pub(super) fn expected(&self) -> &[u8; SMALL_REQUEST] {
        &self.expected
    }

    /// Moves to the next request: adds one to the hex number, wrapping after 48
    /// bits as `small_request` does.
    pub(super) fn advance(&mut self) {
        let digits = 4..SMALL_REQUEST;
        for at in digits.rev() {
            let (next, upper, carry) = match self.request[at] {
                b'f' => (b'0', b'0', true),
                b'9' => (b'a', b'A', false),
                digit => (digit + 1, (digit + 1).to_ascii_uppercase(), false),
            };
            self.request[at] = next;
            self.expected[at] = upper;
            if !carry {
                return;
            }
        }
    }
}

/// Counts outcomes from many tasks, and keeps the first error.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) ok: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
}

impl Tally {
    /// Counts one checked exchange that echoed `bytes` of request body.
    pub(super) fn succeed(&self, bytes: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn fail(&self, error: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            *first = Some(format!("{error:#}"));
        }
    }

    /// Copies the counts and the first error into `report`. Takes `&self`: other
    /// holders of the tally (the progress line) may outlive the run.
    pub(super) fn report_into(&self, report: &mut Report) {
        report.ok = self.ok.load(Ordering::SeqCst);
        report.failed = self.failed.load(Ordering::SeqCst);
        report.bytes = self.bytes.load(Ordering::SeqCst);
        report.first_error = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
    }
}

/// The shared limits of a run: a deadline and, optionally, a count of requests that
/// workers claim one at a time.
pub(super) struct Budget {
    pub(super) deadline: Instant,
    pub(super) remaining: Option<AtomicU64>,
    /// Claims so far: the clock is read on every [`CLOCK_EVERY`]th.
    claims: AtomicU64,
    /// The deadline has passed (seen by some claim).
    expired: AtomicBool,
}

/// How many claims share one reading of the clock. A pipelining writer claims a
/// request every few hundred nanoseconds, and `Instant::now` per claim was 8 % of
/// the load generator's time (perf, pipeline scenario), time the stacks it
/// measures then lacked; a run now ends at most this many requests per worker
/// past its deadline, which its elapsed time includes.
const CLOCK_EVERY: u64 = 64;

impl Budget {
    pub(super) fn new(options: &Options) -> Self {
        Self {
            deadline: Instant::now() + options.duration,
            remaining: options.requests.map(AtomicU64::new),
            claims: AtomicU64::new(0),
            expired: AtomicBool::new(false),
        }
    }

    /// Claims one request: `false` once the count or the time is used up.
    pub(super) fn claim(&self) -> bool {
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CLOCK_EVERY)
            && Instant::now() >= self.deadline
        {
            self.expired.store(true, Ordering::Relaxed);
        }
        if self.expired.load(Ordering::Relaxed) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(remaining) => remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok(),
        }
    }
}

/// Prints `ok`/`failed` counts once a second on stderr until dropped.
pub(super) struct Progress {
    pub(super) done: Arc<AtomicBool>,
    /// The task printing the line, stopped when the run ends so that no line comes
    /// after the report.
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(options: &Options, tally: &Arc<Tally>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let mut task = None;
        if options.progress {
            let (done, tally) = (Arc::clone(&done), Arc::clone(tally));
            let name = options.scenario.name();
            task = Some(tokio::spawn(async move {
                let started = Instant::now();
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let ok = tally.ok.load(Ordering::Relaxed);
                    eprintln!(
                        "{name}: {:.0}s {ok} ok ({:.0}/s), {} failed",
                        started.elapsed().as_secs_f64(),
                        ok as f64 / started.elapsed().as_secs_f64(),
                        tally.failed.load(Ordering::Relaxed)
                    );
                }
            }));
        }
        Self { done, task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_requests_count_as_small_request_numbers_them() {
        let mut numbered = Numbered::new();
        for index in 0..70_000u64 {
            assert_eq!(
                (*numbered.request(), *numbered.expected()),
                small_request(index),
                "{index}"
            );
            numbered.advance();
        }
        // Every carry, up to the wrap after 48 bits.
        let mut numbered = Numbered::new();
        numbered.request[4..].copy_from_slice(b"fffffffffffe");
        numbered.expected[4..].copy_from_slice(b"FFFFFFFFFFFE");
        numbered.advance();
        assert_eq!(numbered.request(), b"req-ffffffffffff");
        numbered.advance();
        assert_eq!(
            (*numbered.request(), *numbered.expected()),
            small_request(0)
        );
    }

    #[test]
    fn small_requests_are_numbered_in_lowercase_hex_and_answered_in_uppercase() {
        for index in [0, 1, 0xabc, 0xffff_ffff_ffff, 0x1_0000_0000_0001, u64::MAX] {
            let (request, expected) = small_request(index);
            let text = format!("req-{:012x}", index & 0xffff_ffff_ffff);
            assert_eq!(request, text.as_bytes());
            assert_eq!(expected, text.to_ascii_uppercase().as_bytes());
        }
    }
}

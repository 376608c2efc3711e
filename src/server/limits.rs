//! What one review may hold while it is read and decided, so that no client can hold what other
//! clients need (issue 16).
//!
//! A review goes through two stages that cost different things, and each has its own bound:
//!
//! 1. **Reading the body** costs memory and time, not CPU: a slow client can make it last until
//!    the review's deadline. So it takes a *body read* slot — at most
//!    `--max-body-reads-per-connection` for one connection (further streams of that connection
//!    wait their turn, holding nothing shared) and `--max-concurrent-body-reads` in all (beyond
//!    that, 429 at once) — and the bytes it buffers beyond the first [`FREE_BODY_BYTES`] are
//!    charged to a process-wide budget (`--max-buffered-body-mib`, 429 when exhausted). The body
//!    read ends at the review's deadline.
//! 2. **Deciding** costs CPU: it starts only once the body is in, with a *decision* slot
//!    (`--max-concurrent-reviews`, 429 at once beyond it) for an ordinary review, or a *large
//!    decision* slot (`--max-concurrent-large-reviews`, waited for until the deadline) for a body
//!    over the inline size, decided on the blocking pool.
//!
//! So clients that trickle their bodies hold only body-read slots, which are many and cheap, and
//! never the decision slots; one HTTP/2 connection with a thousand open streams holds at most
//! its per-connection share (and `--http2-max-concurrent-streams` streams at all); large reviews
//! queue among themselves and never take an ordinary review's slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// Bytes every body may buffer without charging the shared budget: an ordinary review (a few
/// KiB, a large Deployment tens of KiB) never waits on what large ones hold.
pub const FREE_BODY_BYTES: usize = 64 * 1024;

/// The process-wide bounds on reviews (see the module documentation).
#[derive(Clone)]
pub struct Limits {
    /// Ordinary reviews decided at once.
    pub decisions: Arc<Semaphore>,
    /// Large reviews decided at once, on the blocking pool.
    pub large_decisions: Arc<Semaphore>,
    /// Bodies being read at once, over every connection.
    pub body_reads: Arc<Semaphore>,
    /// Bytes buffered by bodies beyond [`FREE_BODY_BYTES`] each.
    pub body_bytes: Arc<ByteBudget>,
}

/// The sizes of [`Limits`].
#[derive(Debug, Clone, Copy)]
pub struct LimitSizes {
    pub decisions: usize,
    pub large_decisions: usize,
    pub body_reads: usize,
    pub body_bytes: usize,
}

impl Default for LimitSizes {
    /// The defaults of `hostguard serve`.
    fn default() -> Self {
        LimitSizes {
            decisions: 256,
            large_decisions: 2,
            body_reads: 512,
            body_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    pub fn new(sizes: LimitSizes) -> Self {
        Limits {
            decisions: Arc::new(Semaphore::new(sizes.decisions)),
            large_decisions: Arc::new(Semaphore::new(sizes.large_decisions)),
            body_reads: Arc::new(Semaphore::new(sizes.body_reads)),
            body_bytes: Arc::new(ByteBudget::new(sizes.body_bytes)),
        }
    }
}

/// The body reads one connection may have at once; put in each request's extensions by the
/// listener. Requests without it (the router tested in-process) have no per-connection bound.
#[derive(Clone)]
pub struct ConnectionReads(pub Arc<Semaphore>);

/// A number of bytes shared by every body being buffered.
#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Self {
        ByteBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes` more to `charge`, or returns false (charging nothing) when the budget
    /// would be exceeded.
    pub fn try_grow(self: &Arc<Self>, charge: &mut Charge, bytes: usize) -> bool {
        let grown = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if grown {
            charge.bytes += bytes;
        }
        grown
    }

    /// An empty charge against this budget, returned in full when dropped.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }
}

/// Bytes held against a [`ByteBudget`] until dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_would_exceed_it_and_gets_back_what_is_dropped() {
        let budget = Arc::new(ByteBudget::new(100));
        let mut a = budget.charge();
        assert!(budget.try_grow(&mut a, 60));
        let mut b = budget.charge();
        assert!(!budget.try_grow(&mut b, 41), "60 + 41 > 100");
        assert!(budget.try_grow(&mut b, 40));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}

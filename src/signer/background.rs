//! Preprocessing that no signing waits for, on one low-priority thread.
//!
//! Validating commitments handed to us ahead of time, validating the commitments a coordinator
//! announced, and making spare nonces each cost tens of microseconds of curve arithmetic. They
//! fall due right after a share or a signature was produced, exactly when the next step of the
//! signing (aggregation, the answer to the node) wants the CPU. Run at the lowest scheduling
//! priority, they use only what signings leave idle. Every job is optional: when the queue is
//! full a job is dropped, and what it would have prepared is prepared on demand instead (a
//! commitment decoded when used, a nonce made when issued, a refill asked for when low).

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{debug, warn};

/// Jobs queued at most; beyond that new ones are dropped.
const QUEUE: usize = 256;
/// The nice value of the thread: the lowest priority Linux offers short of SCHED_IDLE.
const NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the background thread; the thread ends when every handle is dropped.
pub(super) struct Background {
    jobs: SyncSender<Job>,
    /// Kinds of job queued, not yet started, through [`Background::run_unless_pending`].
    pending: Arc<Mutex<HashSet<&'static str>>>,
}

impl Background {
    /// Starts the thread.
    pub(super) fn start() -> std::io::Result<Background> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("cosigner-bg".into())
            .spawn(move || {
                let tid = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
                    warn!("background thread keeps normal priority: {e}");
                }
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        Ok(Background {
            jobs,
            pending: Arc::default(),
        })
    }

    /// Queues `job` unless a job of the same kind (`what`) is queued and not started yet: for
    /// work that tops something up, where one job that has not looked yet serves every
    /// request for it. (Once it starts, a new request queues another, which sees what the
    /// running one may have missed.)
    pub(super) fn run_unless_pending(
        &self,
        what: &'static str,
        job: impl FnOnce() + Send + 'static,
    ) {
        if !pending(&self.pending).insert(what) {
            return;
        }
        let set = self.pending.clone();
        let queued = self.run(what, move || {
            pending(&set).remove(what);
            job();
        });
        if !queued {
            pending(&self.pending).remove(what);
        }
    }

    /// Queues `job`, or drops it if the queue is full or the thread is gone; whether it was
    /// queued.
    pub(super) fn run(&self, what: &'static str, job: impl FnOnce() + Send + 'static) -> bool {
        match self.jobs.try_send(Box::new(job)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                debug!(what, "background queue full: job dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                warn!(what, "background thread is gone: job dropped");
                false
            }
        }
    }
}

fn pending<'a>(set: &'a Mutex<HashSet<&'static str>>) -> MutexGuard<'a, HashSet<&'static str>> {
    // A set of names: a panic while it was held cannot leave it inconsistent.
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn runs_jobs_in_order_on_another_thread() {
        let background = Background::start().unwrap();
        let (tx, rx) = channel();
        let caller = std::thread::current().id();
        for i in 0..3 {
            let tx = tx.clone();
            assert!(background.run("test", move || {
                tx.send((i, std::thread::current().id())).unwrap();
            }));
        }
        for i in 0..3 {
            let (n, thread) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(n, i);
            assert_ne!(thread, caller);
        }
    }

    #[test]
    fn a_full_queue_drops_jobs_instead_of_blocking() {
        let background = Background::start().unwrap();
        let (release_tx, release_rx) = channel::<()>();
        let (started_tx, started_rx) = channel();
        background.run("block", move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (ran_tx, ran_rx) = channel();
        let queued = (0..QUEUE + 10)
            .filter(|_| {
                let ran_tx = ran_tx.clone();
                background.run("fill", move || ran_tx.send(()).unwrap())
            })
            .count();
        assert_eq!(queued, QUEUE);
        drop(ran_tx);
        release_tx.send(()).unwrap();
        let ran = ran_rx.iter().count();
        assert_eq!(ran, QUEUE, "the jobs beyond the queue were dropped");
    }

    #[test]
    fn a_kind_already_pending_is_not_queued_twice() {
        let background = Background::start().unwrap();
        let (release_tx, release_rx) = channel::<()>();
        let (started_tx, started_rx) = channel();
        background.run("block", move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (ran_tx, ran_rx) = channel();
        for _ in 0..3 {
            let ran_tx = ran_tx.clone();
            background.run_unless_pending("top up", move || ran_tx.send(1).unwrap());
        }
        release_tx.send(()).unwrap();
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        // Once it ran, the kind may be queued again.
        let again = ran_tx.clone();
        background.run_unless_pending("top up", move || again.send(2).unwrap());
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        drop(ran_tx);
        assert!(
            ran_rx.recv_timeout(Duration::from_secs(1)).is_err(),
            "ran only twice"
        );
    }
}

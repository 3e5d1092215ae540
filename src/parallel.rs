//! A crew of persistent worker threads that run a job together with the caller.
//!
//! The threads are spawned once ([`Crew::spawn`]) and then, for every [`Crew::run`], wake up
//! at a barrier, run the job, meet the others at the barrier again, and park. How the work
//! inside a job is split (the static engine claims groups of documents and parameter parts
//! from atomic counters) is the job's business. The barrier is a `Mutex` and a `Condvar`
//! (waiters spin briefly on an atomic first); none of it allocates, so a run allocates
//! nothing.
//!
//! A panic in a job (a bug: the model checks its inputs on the caller before a run) is
//! caught so that every thread still reaches the barrier, and re-raised on the caller after
//! the run. Dropping the crew wakes the parked threads with a shutdown and joins them.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Work that a crew runs: every thread runs it with its own `Local` state (e.g. its
/// activation buffers) and its party's number: 0 for the caller, `1..=workers` for the
/// workers, the same thread the same number at every run.
pub trait Job: Send + Sync + 'static {
    type Local: Send + 'static;
    fn run(&self, local: &mut Self::Local, party: usize);
}

/// A reusable barrier for a fixed number of parties that can also be shut down, which
/// releases every waiter (a `std::sync::Barrier` cannot be, so a crew with a thread that
/// failed to spawn could not be stopped).
struct Gate {
    parties: usize,
    state: Mutex<GateState>,
    cv: Condvar,
    /// `state.generation`, readable without the lock by a waiter that spins
    generation: AtomicU64,
}

/// Checks of the generation a waiter spins for before it sleeps on the condition variable:
/// the other threads usually arrive within microseconds, and waking a sleeping thread costs
/// tens of them (see docs/measurements.md).
const SPINS: usize = 2000;

struct GateState {
    arrived: usize,
    generation: u64,
    shutdown: bool,
    /// waiters asleep on the condition variable: the last arrival wakes them only if there
    /// are any (a wake-up is a system call; the waiters that spin see the generation)
    sleepers: usize,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until all parties have arrived (`true`) or the gate is shut down (`false`).
    fn wait(&self) -> bool {
        let generation = {
            let mut s = self.lock();
            if s.shutdown {
                return false;
            }
            s.arrived += 1;
            if s.arrived == self.parties {
                s.arrived = 0;
                s.generation += 1;
                // Release after every party's arrival (each under the lock): whoever sees the
                // new generation also sees everything the parties did before arriving
                self.generation.store(s.generation, Ordering::Release);
                if s.sleepers > 0 {
                    self.cv.notify_all();
                }
                return true;
            }
            s.generation
        };
        for _ in 0..SPINS {
            if self.generation.load(Ordering::Acquire) != generation {
                return true;
            }
            std::hint::spin_loop();
        }
        let mut s = self.lock();
        s.sleepers += 1;
        while s.generation == generation && !s.shutdown {
            s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.sleepers -= 1;
        s.generation != generation
    }

    fn shut_down(&self) {
        self.lock().shutdown = true;
        self.cv.notify_all();
    }
}

struct Shared<J> {
    job: Arc<J>,
    gate: Gate,
    /// a worker's phase panicked during the current run
    failed: AtomicBool,
}

/// `n` worker threads (the caller is one more party of every run).
pub struct Crew<J: Job> {
    shared: Arc<Shared<J>>,
    handles: Vec<JoinHandle<()>>,
}

impl<J: Job> Crew<J> {
    /// Spawns one worker per element of `locals`, each owning its element.
    pub fn spawn(job: Arc<J>, locals: Vec<J::Local>) -> Result<Crew<J>> {
        let shared = Arc::new(Shared {
            job,
            gate: Gate {
                parties: locals.len() + 1,
                state: Mutex::new(GateState {
                    arrived: 0,
                    generation: 0,
                    shutdown: false,
                    sleepers: 0,
                }),
                cv: Condvar::new(),
                generation: AtomicU64::new(0),
            },
            failed: AtomicBool::new(false),
        });
        let mut crew = Crew {
            handles: Vec::with_capacity(locals.len()),
            shared,
        };
        for (i, local) in locals.into_iter().enumerate() {
            let shared = Arc::clone(&crew.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("microgpt-worker-{}", i + 1))
                .spawn(move || work(&shared, local, i + 1));
            match spawned {
                Ok(h) => crew.handles.push(h),
                // dropping `crew` shuts down and joins the workers spawned so far
                Err(e) => return Err(Error(format!("cannot start worker thread {}: {e}", i + 1))),
            }
        }
        Ok(crew)
    }

    /// Number of worker threads (besides the caller).
    pub fn workers(&self) -> usize {
        self.handles.len()
    }

    /// Runs the job on the caller (with `local`) and on each worker. Returns when all are
    /// done.
    pub fn run(&self, local: &mut J::Local) {
        let s = &*self.shared;
        s.gate.wait();
        let panic = catch_unwind(AssertUnwindSafe(|| s.job.run(local, 0))).err();
        s.gate.wait();
        if let Some(p) = panic {
            resume_unwind(p);
        }
        if s.failed.swap(false, Ordering::SeqCst) {
            panic!("a worker thread panicked (see its message above)");
        }
    }
}

/// A worker's life: wait for a run, do its share, repeat until shut down.
fn work<J: Job>(s: &Shared<J>, mut local: J::Local, party: usize) {
    while s.gate.wait() {
        if catch_unwind(AssertUnwindSafe(|| s.job.run(&mut local, party))).is_err() {
            s.failed.store(true, Ordering::SeqCst);
        }
        if !s.gate.wait() {
            return;
        }
    }
}

impl<J: Job> Drop for Crew<J> {
    fn drop(&mut self) {
        self.shared.gate.shut_down();
        for h in self.handles.drain(..) {
            // a worker's panics are caught inside it, so join fails only if the thread was
            // killed some other way; there is nothing left to clean up then
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;

    /// Records which thread ran as which party, run by run.
    struct Roll(Mutex<Vec<(usize, usize, ThreadId)>>);

    impl Job for Roll {
        type Local = usize; // the runs this thread has seen
        fn run(&self, runs: &mut usize, party: usize) {
            self.0
                .lock()
                .unwrap()
                .push((*runs, party, std::thread::current().id()));
            *runs += 1;
        }
    }

    #[test]
    fn every_run_has_each_party_once_the_caller_as_0_and_the_same_thread_as_the_same_party() {
        let job = Arc::new(Roll(Mutex::new(Vec::new())));
        let crew = Crew::spawn(Arc::clone(&job), vec![0, 0, 0]).unwrap();
        let mut runs = 0;
        for _ in 0..20 {
            crew.run(&mut runs);
        }
        drop(crew);
        let roll = job.0.lock().unwrap();
        assert_eq!(roll.len(), 4 * 20);
        let caller = std::thread::current().id();
        let mut thread_of = [None; 4];
        for run in 0..20 {
            let mut parties: Vec<usize> = roll.iter().filter(|r| r.0 == run).map(|r| r.1).collect();
            parties.sort();
            assert_eq!(parties, [0, 1, 2, 3], "run {run}");
        }
        for &(_, party, thread) in roll.iter() {
            assert_eq!(party == 0, thread == caller, "party {party}");
            assert_eq!(
                *thread_of[party].get_or_insert(thread),
                thread,
                "party {party}"
            );
        }
    }
}

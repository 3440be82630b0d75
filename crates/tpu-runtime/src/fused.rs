//! Fused mode: one open trace per device collects ops until a cut point — a
//! read to host, `sync()`, a size limit, a mode switch, or a detected step
//! boundary — and then runs as one program. Every cut is counted by reason.
//! Devices have traces of their own so that ranks driving several devices
//! from one process (thread ranks of `tpu_dist`) do not cut each other's.
//!
//! Step boundaries: `optimizer.step()` marks the end of a training step (a
//! hook installed by `torch_tpu`), and the trace is cut there. Loops without
//! an optimizer are found from the stream of op signatures (name, shapes,
//! dtypes): when a long enough sequence repeats three times in a row, the
//! trace is cut once per repetition. Either way every step runs the same graph
//! and nothing recompiles.

use crate::error::Result;
use crate::metrics;
use crate::storage::{Storage, Value};
use crate::trace::Trace;
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

/// Shortest op sequence taken for a step.
const MIN_PERIOD: usize = 8;
/// How often a sequence must occur in a row before it is taken for a step:
/// twice is common inside one step (two identical layers).
const REPEATS: usize = 3;

#[derive(Default)]
struct StepDetector {
    /// Signatures since the last cut.
    seq: Vec<u64>,
    last_seen: HashMap<u64, usize>,
    /// Candidate period and how many signatures in a row matched it.
    candidate: usize,
    run: usize,
    /// The confirmed step's signatures.
    step: Option<Vec<u64>>,
    /// Position in `seq` of the last in-place op.
    last_write: Option<usize>,
}

impl StepDetector {
    /// Takes the next op's signature (and whether it updates a tensor in
    /// place); true when the trace should be cut after it.
    fn push(&mut self, sig: u64, in_place: bool) -> bool {
        if let Some(step) = &self.step {
            if step.get(self.seq.len()) == Some(&sig) {
                self.seq.push(sig);
                if self.seq.len() == step.len() {
                    self.seq.clear();
                    return true;
                }
                return false;
            }
            self.step = None;
            self.restart();
        }
        let n = self.seq.len();
        self.seq.push(sig);
        if in_place {
            self.last_write = Some(n);
        }
        if self.candidate > 0 && n >= self.candidate && self.seq[n - self.candidate] == sig {
            self.run += 1;
        } else {
            self.candidate = 0;
            self.run = 0;
            if let Some(&p) = self.last_seen.get(&sig) {
                self.candidate = n - p;
                self.run = 1;
            }
        }
        self.last_seen.insert(sig, n);
        // A step carries state to the next one through an in-place update (the
        // parameters); a repeating chain of pure ops is one computation.
        let updates_state = self.last_write.is_some_and(|w| w + self.candidate > n);
        if self.candidate >= MIN_PERIOD
            && self.run >= (REPEATS - 1) * self.candidate
            && updates_state
        {
            self.step = Some(self.seq[n + 1 - self.candidate..].to_vec());
            self.restart();
            return true;
        }
        false
    }

    fn restart(&mut self) {
        self.last_write = None;
        self.seq.clear();
        self.last_seen.clear();
        self.candidate = 0;
        self.run = 0;
    }
}

#[derive(Default)]
struct State {
    /// By device index.
    open: Vec<Option<Trace>>,
    steps: Vec<StepDetector>,
    /// `mark_step` was called: steps are marked, not detected.
    marked: bool,
}

impl State {
    fn slot(&mut self, device: usize) -> (&mut Option<Trace>, &mut StepDetector) {
        if self.open.len() <= device {
            self.open.resize_with(device + 1, || None);
            self.steps.resize_with(device + 1, StepDetector::default);
        }
        (&mut self.open[device], &mut self.steps[device])
    }

    /// Runs every open trace (the first error is returned after all ran).
    fn run_all(&mut self, reason: &str) -> Result<()> {
        let mut first = Ok(());
        for (open, steps) in self.open.iter_mut().zip(&mut self.steps) {
            steps.restart();
            if let Some(t) = open.take() {
                let r = run(t, reason);
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }
}

/// The open traces. Held while a fused program runs, not only while ops are
/// recorded: a storage is pending only in an open trace or in the one being
/// run under this lock (an op reads storages of its own device only; copies
/// across devices cut every trace first), so a thread recording never meets a value that
/// another thread's program has yet to write back.
static STATE: Mutex<Option<State>> = Mutex::new(None);

thread_local! {
    /// This thread holds `STATE` (a re-entrant call would deadlock).
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `STATE`, locked; an error instead of a deadlock when this thread already holds it.
fn lock_state() -> Result<StateGuard> {
    if HOLDING.with(|h| h.get()) {
        return Err(crate::error::Error::Invalid(
            "internal: the fused trace was re-entered while it was being recorded or run".into(),
        ));
    }
    let guard = STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    HOLDING.with(|h| h.set(true));
    Ok(StateGuard(guard))
}

struct StateGuard(std::sync::MutexGuard<'static, Option<State>>);

impl Drop for StateGuard {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

impl StateGuard {
    fn state(&mut self) -> &mut State {
        self.0.get_or_insert_with(State::default)
    }
}

/// Largest number of ops in one fused graph (`TORCH_TPU_FUSED_MAX_OPS`).
fn max_ops() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        // Validated at import, so the default never replaces a bad value.
        let v = crate::env::FUSED_MAX_OPS.get();
        v.unwrap_or(crate::env::FUSED_MAX_OPS.default) as usize
    })
}

fn run(t: Trace, reason: &str) -> Result<()> {
    if t.is_empty() {
        return Ok(());
    }
    metrics::count_cut(reason);
    t.cut(reason).map(|_| ())
}

/// Records into `device`'s open trace (opening one if needed).
pub fn with_trace<R>(device: usize, f: impl FnOnce(&mut Trace) -> Result<R>) -> Result<R> {
    record(device, None, f)
}

/// Like [`with_trace`] for a dispatched op with signature `sig`, which may end a step.
pub fn with_trace_step<R>(
    device: usize,
    sig: (u64, bool),
    f: impl FnOnce(&mut Trace) -> Result<R>,
) -> Result<R> {
    record(device, Some(sig), f)
}

fn record<R>(
    device: usize,
    sig: Option<(u64, bool)>,
    f: impl FnOnce(&mut Trace) -> Result<R>,
) -> Result<R> {
    let mut guard = lock_state()?;
    let state = guard.state();
    let marked = state.marked;
    let (open, steps) = state.slot(device);
    let t = open.get_or_insert_with(|| Trace::new(device));
    let r = f(t)?;
    let step_end = !marked && sig.is_some_and(|(s, w)| steps.push(s, w));
    let full = t.ops >= max_ops();
    if step_end || full {
        let t = open.take().expect("open");
        if full {
            steps.restart();
        }
        run(
            t,
            if step_end {
                "step boundary"
            } else {
                "size limit"
            },
        )?;
    }
    Ok(r)
}

/// The end of a training step: runs the open trace (without waiting).
pub fn mark_step() -> Result<()> {
    lock_state()?.state().marked = true;
    if crate::mode::current().records() {
        cut("step boundary")?;
    }
    Ok(())
}

/// Runs the open traces, if any (under the lock: see `STATE`).
pub fn cut(reason: &str) -> Result<()> {
    let mut guard = lock_state()?;
    let state = guard.state();
    // An explicit sync starts over: steps are detected again until the next optimizer step.
    if reason == "sync" {
        state.marked = false;
    }
    state.run_all(reason)
}

/// `torch.tpu.synchronize()`: runs the open traces, then waits until every
/// live value is computed (also `torch.accelerator.synchronize()`, through the C ABI).
pub fn synchronize() -> Result<()> {
    cut("sync")?;
    crate::trace::wait_all()
}

/// Runs the open traces like [`cut`] and returns the program of the one that
/// had work (None when nothing was recorded): a compiled graph's first call
/// keeps it (`graphcache.rs`). Work on several devices gives no program.
pub fn cut_planned(
    reason: &str,
) -> Result<std::result::Result<Option<crate::program::Program>, &'static str>> {
    let mut guard = lock_state()?;
    let state = guard.state();
    let busy = state
        .open
        .iter()
        .flatten()
        .filter(|t| !t.is_empty())
        .count();
    if busy > 1 {
        state.run_all(reason)?;
        return Ok(Err("the graph ran on several devices"));
    }
    for steps in &mut state.steps {
        steps.restart();
    }
    // At most one trace has work; the empty ones are dropped.
    let mut planned = None;
    for t in state.open.iter_mut().filter_map(Option::take) {
        if !t.is_empty() {
            planned = Some(t);
        }
    }
    match planned {
        Some(t) => {
            metrics::count_cut(reason);
            Ok(Ok(t.cut_planned(reason)?.1))
        }
        None => Ok(Ok(None)),
    }
}

/// Hands the open traces' programs to background compile threads and drops
/// them unrun (what they wrote keeps its old value): `torch.compile`'s
/// `precompile_sizes` records a bucket's graph on zero inputs this way.
pub fn compile_open_in_background() -> Result<()> {
    let mut guard = lock_state()?;
    let state = guard.state();
    for steps in &mut state.steps {
        steps.restart();
    }
    for t in state.open.iter_mut().filter_map(Option::take) {
        t.compile_in_background()?;
    }
    Ok(())
}

/// Cuts if the storage's value is still being computed by the open trace.
pub fn ensure_computed(s: &Arc<Storage>, reason: &str) -> Result<()> {
    if matches!(s.value(), Value::Pending(_)) {
        cut(reason)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::StepDetector;

    /// Cuts `StepDetector` asks for over `steps` repetitions of a step of
    /// `len` ops whose last op updates state when `writes`.
    fn cuts(len: u64, steps: usize, writes: bool) -> Vec<usize> {
        let mut d = StepDetector::default();
        let mut at = Vec::new();
        for i in 0..len as usize * steps {
            let op = i as u64 % len;
            if d.push(op, writes && op == len - 1) {
                at.push(i);
            }
        }
        at
    }

    #[test]
    fn a_repeating_training_step_is_cut_once_per_step() {
        let at = cuts(10, 6, true);
        // Found after three repetitions, then at the end of every step.
        assert!(!at.is_empty() && at.len() >= 3, "{at:?}");
        for w in at.windows(2) {
            assert_eq!(w[1] - w[0], 10, "{at:?}");
        }
    }

    #[test]
    fn a_pure_repeating_chain_or_a_short_period_is_not_a_step() {
        assert!(cuts(10, 6, false).is_empty());
        assert!(cuts(4, 20, true).is_empty());
    }
}

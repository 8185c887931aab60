//! Liveness and readiness, served beside `/metrics` as `/livez` and `/readyz`.
//!
//! Live: the process answers at all (its runtime is not wedged). Ready: every check the role
//! registered passes now; each is evaluated when asked, so the answer is never older than the
//! request. The kubelet probes them; the webhook Service sends admission calls only to ready
//! controller replicas, and a DaemonSet rollout waits for each new speaker to be ready.

use std::sync::{Arc, LazyLock, RwLock};

/// One readiness condition: `Err(why)` while it does not hold.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

static CHECKS: LazyLock<RwLock<Vec<(&'static str, Check)>>> = LazyLock::new(Default::default);

/// Adds (or replaces) the readiness condition `name`.
pub fn register(name: &'static str, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
    let mut checks = CHECKS.write().unwrap_or_else(|p| p.into_inner());
    checks.retain(|(n, _)| *n != name);
    checks.push((name, Arc::new(check)));
}

/// A condition that holds once [`Flag::set`] is called, e.g. "the webhook listens".
#[derive(Clone)]
pub struct Flag(Arc<RwLock<Result<(), String>>>);

impl Flag {
    /// Registers `name`, failing with `why` until set.
    pub fn new(name: &'static str, why: &str) -> Flag {
        let flag = Flag(Arc::new(RwLock::new(Err(why.to_string()))));
        let reader = flag.clone();
        register(name, move || reader.0.read().unwrap_or_else(|p| p.into_inner()).clone());
        flag
    }

    pub fn set(&self, state: Result<(), String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

/// Ready (no check fails), or every failing check as `name: why`, one per line.
pub fn readiness() -> Result<(), String> {
    let checks: Vec<(&'static str, Check)> = CHECKS.read().unwrap_or_else(|p| p.into_inner()).clone();
    let failing: Vec<String> =
        checks.iter().filter_map(|(name, check)| check().err().map(|why| format!("{name}: {why}"))).collect();
    if failing.is_empty() { Ok(()) } else { Err(failing.join("\n")) }
}

/// From now on the process is not ready: it is shutting down, and no new work (an admission
/// call) should be sent to it.
pub fn terminating() {
    Flag::new("terminating", "shutting down (SIGTERM)");
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the checks are process-wide, so parallel tests would see each other's.
    #[test]
    fn readiness_follows_every_registered_check() {
        let listed = Flag::new("test-listed", "still listing");
        let live = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let l = live.clone();
        register("test-agent", move || {
            if l.load(std::sync::atomic::Ordering::SeqCst) { Ok(()) } else { Err("agent silent".into()) }
        });
        let why = readiness().unwrap_err();
        assert!(
            why.contains("test-listed: still listing") && why.contains("test-agent: agent silent"),
            "{why}"
        );
        listed.set(Ok(()));
        assert_eq!(readiness().unwrap_err(), "test-agent: agent silent");
        live.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(readiness(), Ok(()));
        // Registering a name again replaces the old check instead of adding a second.
        register("test-agent", || Err("replaced".into()));
        assert_eq!(readiness().unwrap_err(), "test-agent: replaced");
        register("test-agent", || Ok(()));
        terminating();
        assert_eq!(readiness().unwrap_err(), "terminating: shutting down (SIGTERM)");
    }
}

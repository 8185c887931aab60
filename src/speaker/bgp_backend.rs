//! Turns the speaker's desired FRR configuration into Apply calls on frr-agent.
//!
//! A change after a quiet spell goes at once; changes within a short window after the last
//! Apply wait for the window's end and go together (a Service flood becomes a few Applies, not
//! hundreds), and only the latest desired configuration is ever sent. Waiting the window before
//! every change, as before, added its length to every lone Service's time to the router. While
//! the agent is unreachable or FRR fails, it retries with capped exponential backoff. It follows
//! the agent's status stream, so when the agent restarts (and forgets what it ran) the
//! configuration is sent again.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frr_sidecar::proto::frr_agent_client::FrrAgentClient;
use frr_sidecar::proto::{AgentStatus, ApplyRequest, StatusRequest, apply_reply::Outcome};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

pub use super::extras_guard::Desired;
use super::extras_guard::{ExtrasGuard, Sent};

#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub socket: PathBuf,
    /// How long after one Apply ended the next may begin: the changes meanwhile go together.
    pub window: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl BackendSettings {
    pub fn new(socket: impl Into<PathBuf>) -> BackendSettings {
        BackendSettings {
            socket: socket.into(),
            window: Duration::from_millis(50),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the backend knows, for status reporting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendReport {
    /// The generation the agent confirmed running the latest desired configuration with.
    pub applied_generation: Option<u64>,
    /// The [`fingerprint`] of the desired configuration FRR runs (whatever bgpextras went
    /// with it): the speaker compares it with what it asked for last.
    pub applied_config: Option<u64>,
    /// The desired configuration FRR has not taken, since the last Apply that succeeded.
    pub failing: Option<ApplyFailure>,
    /// True while the latest desired configuration is not running yet.
    pub behind: bool,
    pub agent_reachable: bool,
    /// The agent's or FRR's last complaint; empty once an Apply succeeds.
    pub last_error: String,
    pub applies: u64,
    /// The agent's latest status (sessions, BFD).
    pub agent: Option<AgentStatus>,
}

/// A desired configuration that did not reach FRR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyFailure {
    /// Its [`fingerprint`].
    pub config: u64,
    /// Applies of it that failed in a row.
    pub attempts: u32,
    /// FRR refused its text: retrying cannot help.
    pub rejected: bool,
}

impl ApplyFailure {
    fn next(previous: Option<&ApplyFailure>, config: u64, rejected: bool) -> ApplyFailure {
        let attempts = previous.filter(|p| p.config == config).map_or(0, |p| p.attempts) + 1;
        ApplyFailure { config, attempts, rejected }
    }
}

/// Whether FRR does this speaker's BGP work: frr-agent answers, FRR answers it with every
/// daemon up, and (once the speaker has a configuration for it) that configuration was applied.
pub fn readiness(report: &BackendReport, has_config: bool) -> Result<(), String> {
    let why = |what: &str| match report.last_error.as_str() {
        "" => what.to_string(),
        e => format!("{what} ({e})"),
    };
    if !report.agent_reachable {
        return Err(why("frr-agent does not answer"));
    }
    let Some(status) = &report.agent else { return Err("no status from frr-agent yet".into()) };
    if !status.frr_reachable {
        return Err(why("FRR does not answer frr-agent"));
    }
    if !status.daemons_down.is_empty() {
        return Err(format!("FRR daemons down: {}", status.daemons_down.join("; ")));
    }
    if has_config && report.applied_generation.is_none() {
        return Err(why("the configuration is not applied yet"));
    }
    Ok(())
}

pub struct BgpBackend {
    desired: watch::Sender<Option<Desired>>,
    report: watch::Receiver<BackendReport>,
}

impl BgpBackend {
    /// Starts the backend task on the current tokio runtime.
    pub fn start(settings: BackendSettings) -> BgpBackend {
        let (desired, desired_rx) = watch::channel(None);
        let (report_tx, report) = watch::channel(BackendReport::default());
        tokio::spawn(run(settings, desired_rx, report_tx));
        BgpBackend { desired, report }
    }

    /// Sets the configuration FRR should run, `bgpextras` at its end. Cheap: identical
    /// configurations are dropped here.
    pub fn set(&self, config: String, extras: Option<String>) {
        let want = Desired { config, extras };
        self.desired.send_if_modified(|now| {
            let changed = now.as_ref() != Some(&want);
            if changed {
                *now = Some(want);
            }
            changed
        });
    }

    pub fn report(&self) -> watch::Receiver<BackendReport> {
        self.report.clone()
    }

    /// Has FRR withdraw every route (the sessions stay) and waits until the agent reports no
    /// prefix sent on any session, at most `limit`. False when that was not seen.
    pub async fn withdraw(&self, limit: Duration) -> bool {
        let Some(Desired { config, extras }) = self.desired.borrow().clone() else { return true };
        let config = crate::bgp::withdrawn(&config);
        let print = fingerprint(&config);
        self.set(config, extras);
        let mut report = self.report.clone();
        let done = report.wait_for(|r| {
            r.applied_config == Some(print)
                && r.agent.as_ref().is_some_and(|a| a.neighbors.iter().all(|n| n.prefixes_sent == 0))
        });
        matches!(tokio::time::timeout(limit, done).await, Ok(Ok(_)))
    }

    /// A backend with no task behind it: what it is asked to run stays in the watch returned.
    #[cfg(test)]
    pub fn detached() -> (BgpBackend, watch::Receiver<Option<Desired>>) {
        let (desired, asked) = watch::channel(None);
        let (_, report) = watch::channel(BackendReport::default());
        (BgpBackend { desired, report }, asked)
    }
}

/// A configuration's fingerprint: cheap to keep and compare, unlike the text (~30 bytes a
/// Service).
pub fn fingerprint(config: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    config.hash(&mut h);
    h.finish()
}

/// Generations keep increasing across speaker restarts, so the agent never mistakes a new
/// speaker's first configuration for one it already runs.
fn first_generation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}

async fn run(
    settings: BackendSettings,
    mut desired: watch::Receiver<Option<Desired>>,
    report: watch::Sender<BackendReport>,
) {
    let mut client = frr_sidecar::server::client(&settings.socket);
    let mut generation = first_generation();
    let mut sent: Option<(u64, String)> = None;
    let mut due: Option<Instant> = None;
    // When the last Apply ended: the window runs from there, so a burst leaves FRR a window
    // between Applies however long each takes.
    let mut last_apply: Option<Instant> = None;
    let mut backoff = settings.min_backoff;
    let mut statuses = None;
    let mut guard = ExtrasGuard::default();
    loop {
        if statuses.is_none() {
            statuses = client.watch_status(StatusRequest {}).await.ok().map(|r| r.into_inner());
            report.send_modify(|r| r.agent_reachable = statuses.is_some());
        }
        let wait_status = async {
            match statuses.as_mut() {
                Some(s) => s.next().await,
                // Not connected: look again after a backoff step.
                None => {
                    tokio::time::sleep(backoff).await;
                    None
                }
            }
        };
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    return; // the speaker dropped the backend
                }
                if due.is_none() {
                    let now = Instant::now();
                    due = Some(last_apply.map_or(now, |at| (at + settings.window).max(now)));
                }
            }
            status = wait_status => match status {
                Some(Ok(s)) => {
                    let running = s.running_generation;
                    report.send_modify(|r| { r.agent_reachable = true; r.agent = Some(s); });
                    // The agent restarted (it runs nothing) or someone else applied: send it
                    // again. An older generation is only a status from before our last Apply.
                    if sent.as_ref().is_some_and(|(g, _)| running == 0 || running > *g) && due.is_none() {
                        tracing::info!(running, "frr-agent does not run the last configuration; sending it again");
                        sent = None;
                        due = Some(Instant::now());
                    }
                }
                _ => {
                    statuses = None;
                    if due.is_none() && desired.borrow().is_some() {
                        sent = None;
                        due = Some(Instant::now() + backoff);
                    }
                }
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                due = None;
                let Some(want) = desired.borrow_and_update().clone() else { continue };
                let (config, chosen) = guard.text(&want);
                if sent.as_ref().is_some_and(|(_, c)| *c == config) {
                    continue;
                }
                generation += 1;
                let started = Instant::now();
                let outcome = apply(&mut client, &config, generation).await;
                let took = started.elapsed();
                last_apply = Some(started + took);
                crate::metrics::METRICS.apply_seconds.observe(took.as_secs_f64());
                if let Err(Failure::Rejected(e) | Failure::Retry(e, true)) = &outcome
                    && guard.refused(&want, chosen)
                {
                    tracing::error!(error = %e, "FRR refused the bgpextras; running the configuration with the extras it accepted last");
                    report.send_modify(|r| r.last_error = format!("bgpextras refused by FRR: {e}"));
                    // The same desired configuration again, the refused extras left out; sent
                    // even when it is what went last, if this batch failed half way (FRR may
                    // then run part of it).
                    if matches!(outcome, Err(Failure::Retry(..))) {
                        sent = None;
                    }
                    due = Some(Instant::now());
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        // One line per Apply (changes are coalesced): when FRR took each change.
                        tracing::info!(generation, took_ms = took.as_millis() as u64, "FRR configuration applied");
                        guard.applied(&want, chosen);
                        backoff = settings.min_backoff;
                        sent = Some((generation, config));
                        report.send_modify(|r| {
                            r.applied_generation = Some(generation);
                            r.applied_config = Some(fingerprint(&want.config));
                            r.failing = None;
                            r.behind = false;
                            r.agent_reachable = true;
                            // Running without refused extras is still worth saying.
                            if chosen != Sent::Fallback {
                                r.last_error.clear();
                            }
                            r.applies += 1;
                        });
                    }
                    Err(Failure::Rejected(e)) => {
                        // Retrying the same text cannot help; wait for a new desired config.
                        tracing::error!(error = %e, "FRR rejected the configuration");
                        sent = Some((generation, config));
                        report.send_modify(|r| {
                            r.behind = true;
                            r.last_error = e;
                            r.failing = Some(ApplyFailure::next(r.failing.as_ref(), fingerprint(&want.config), true));
                        });
                    }
                    Err(Failure::Retry(e, reachable)) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "applying the FRR configuration failed");
                        due = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(settings.max_backoff);
                        report.send_modify(|r| {
                            r.behind = true;
                            r.last_error = e;
                            r.agent_reachable = reachable;
                            r.failing = Some(ApplyFailure::next(r.failing.as_ref(), fingerprint(&want.config), false));
                        });
                    }
                }
            }
        }
    }
}

enum Failure {
    Rejected(String),
    /// (why, whether the agent answered)
    Retry(String, bool),
}

async fn apply(client: &mut FrrAgentClient<Channel>, config: &str, generation: u64) -> Result<(), Failure> {
    let request = ApplyRequest { config: config.to_string(), generation };
    let reply = match client.apply(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(Failure::Retry(format!("frr-agent: {}", status.message()), false)),
    };
    match reply.outcome() {
        Outcome::Applied | Outcome::Unchanged => Ok(()),
        Outcome::Rejected => Err(Failure::Rejected(reply.error)),
        Outcome::Failed | Outcome::Unspecified => Err(Failure::Retry(reply.error, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_agent_frr_and_the_configuration_are_all_there() {
        let mut r = BackendReport { last_error: "connection refused".into(), ..Default::default() };
        assert_eq!(readiness(&r, false), Err("frr-agent does not answer (connection refused)".into()));
        r.agent_reachable = true;
        assert_eq!(readiness(&r, false), Err("no status from frr-agent yet".into()));
        r.agent = Some(AgentStatus {
            frr_reachable: true,
            daemons_down: vec!["bfdd: bfdd.vty: gone".into()],
            ..Default::default()
        });
        assert_eq!(readiness(&r, false), Err("FRR daemons down: bfdd: bfdd.vty: gone".into()));
        r.agent.as_mut().unwrap().daemons_down.clear();
        r.last_error.clear();
        // Nothing to apply yet: FRR being up is enough.
        assert_eq!(readiness(&r, false), Ok(()));
        assert_eq!(readiness(&r, true), Err("the configuration is not applied yet".into()));
        r.applied_generation = Some(7);
        assert_eq!(readiness(&r, true), Ok(()));
    }
}

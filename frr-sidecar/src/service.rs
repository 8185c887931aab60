//! The agent's state: one applier shared by Apply calls and the restart monitor, and the latest
//! status, polled from FRR and published to every watcher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::apply::{Applied, Applier, ApplyError, Vtysh};
use crate::proto::{AgentStatus, ApplyReply, BfdPeer, Neighbor, apply_reply::Outcome};
use crate::{daemons, status};

/// Daemons whose restart loses configuration the agent pushed.
const DAEMONS: &[&str] = &["mgmtd", "zebra", "bgpd", "bfdd", "staticd"];

/// How long after an Apply FRR's state (sessions, BFD) is read again.
const STATE_AFTER_APPLY: Duration = Duration::from_millis(200);

pub struct Settings {
    pub vtysh: Vtysh,
    /// Where FRR keeps its `<daemon>.pid` files (its vty socket directory).
    pub run_dir: PathBuf,
    /// FRR's configuration directory, whose `daemons` file says what should run.
    pub config_dir: Option<PathBuf>,
    /// Where the agent writes the files it hands to vtysh.
    pub state_dir: PathBuf,
    /// How often FRR's state is read and restarts are looked for.
    pub poll: Duration,
}

#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    applier: Mutex<Applier>,
    vtysh: Vtysh,
    run_dir: PathBuf,
    config_dir: Option<PathBuf>,
    poll: Duration,
    notes: Mutex<Notes>,
    /// The process behind each daemon's pid file, as last seen by the monitor or by an Apply:
    /// a daemon whose process changed since has none of the configuration pushed before.
    pids: Mutex<BTreeMap<&'static str, String>>,
    status: watch::Sender<AgentStatus>,
    poke: Notify,
}

#[derive(Default)]
struct Notes {
    last_error: String,
    restores: u64,
    /// A restart was seen and the configuration is not back yet.
    restore_pending: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave Applier half-updated (it swaps state at the
    // end), so carrying on is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    pub fn new(settings: Settings) -> Agent {
        let applier = Applier::new(settings.vtysh.clone(), settings.state_dir);
        let (status, _) = watch::channel(AgentStatus::default());
        Agent {
            inner: Arc::new(Inner {
                applier: Mutex::new(applier),
                vtysh: settings.vtysh,
                run_dir: settings.run_dir,
                config_dir: settings.config_dir,
                poll: settings.poll,
                notes: Mutex::new(Notes::default()),
                pids: Mutex::new(BTreeMap::new()),
                status,
                poke: Notify::new(),
            }),
        }
    }

    pub async fn apply(&self, config: String, generation: u64) -> ApplyReply {
        let inner = self.inner.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            // Held from the readiness probe on: nothing else of the agent's opens a vty on
            // FRR while this Apply runs (see `Inner::daemons_down`).
            let mut applier = lock(&inner.applier);
            let ready = inner.ready_for_apply(applier.generation().is_some());
            let restarted = matches!(ready, Ok(true));
            let outcome = ready.and_then(|_| applier.apply(&config, generation));
            drop(applier);
            // The monitor restores it; `notes` is never taken while the applier is held.
            if restarted {
                lock(&inner.notes).restore_pending = true;
            }
            outcome
        })
        .await
        .unwrap_or_else(|e| Err(ApplyError::Vtysh(format!("apply task failed: {e}"))));
        let running_generation = lock(&self.inner.applier).generation().unwrap_or(0);
        let mut reply = ApplyReply { running_generation, ..Default::default() };
        match outcome {
            Ok(Applied::Unchanged) => reply.outcome = Outcome::Unchanged.into(),
            Ok(Applied::Changed { added, removed, took }) => {
                reply.outcome = Outcome::Applied.into();
                reply.lines_added = added as u32;
                reply.lines_removed = removed as u32;
                reply.took_micros = took.as_micros() as u64;
            }
            Err(e) => {
                let rejected = matches!(e, ApplyError::Rejected(_));
                reply.outcome = if rejected { Outcome::Rejected } else { Outcome::Failed }.into();
                reply.error = e.to_string();
            }
        }
        // What the reply says is news at once. Reading FRR's state (two to four vtysh runs)
        // waits a moment: started at once, it competed with bgpd for the CPU just as bgpd was
        // sending the change to its peers.
        let mut notes = lock(&self.inner.notes);
        notes.last_error = reply.error.clone();
        self.inner.publish(|now| now.last_error.clone_from(&reply.error));
        drop(notes);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STATE_AFTER_APPLY).await;
            inner.poke.notify_one();
        });
        reply
    }

    pub fn status(&self) -> AgentStatus {
        let mut status = self.inner.status.borrow().clone();
        status.watchers = self.inner.status.receiver_count() as u32;
        status
    }

    pub fn watch(&self) -> watch::Receiver<AgentStatus> {
        self.inner.status.subscribe()
    }

    /// Runs forever: restores the configuration after restarts and keeps the status current.
    pub async fn monitor(self) {
        loop {
            let inner = self.inner.clone();
            let _ = tokio::task::spawn_blocking(move || {
                inner.check_restarts();
                inner.refresh_status();
            })
            .await;
            // A session's `bfd` lines go in at the first poll that sees it established (one
            // period at most). Not sooner: polling faster while any wait would poll a peer that
            // never comes up that much faster for good.
            tokio::select! {
                _ = tokio::time::sleep(self.inner.poll) => {}
                _ = self.inner.poke.notified() => {}
            }
        }
    }
}

impl Inner {
    /// The process each running daemon's pid file names now.
    fn read_pids(&self) -> BTreeMap<&'static str, String> {
        DAEMONS
            .iter()
            .filter_map(|d| {
                let pid = std::fs::read_to_string(self.run_dir.join(format!("{d}.pid"))).ok()?;
                Some((*d, pid.trim().to_string()))
            })
            .collect()
    }

    /// An Apply waits until every daemon FRR should run answers: vtysh sends each line to the
    /// daemons that are connected and says nothing of one that is still starting, so a
    /// configuration applied while bgpd starts is lost without an error (found on a speaker
    /// pod replaced in a rollout: its FRR had no `router bgp` while the speaker believed it
    /// applied). Failing instead makes the speaker retry, and remembering the processes the
    /// configuration went to lets the monitor see any of them replaced afterwards. Called with
    /// the applier held; Ok(true) when a daemon restarted since it was last seen.
    fn ready_for_apply(&self, applied: bool) -> Result<bool, ApplyError> {
        let down = daemons::down(&self.run_dir, self.config_dir.as_deref(), daemons::Reach::Socket);
        if !down.is_empty() {
            return Err(ApplyError::NotReady(down.join("; ")));
        }
        Ok(self.note_pids(self.read_pids(), applied))
    }

    /// Remembers the daemons' processes; one that changed since it was last seen, or appeared
    /// after a configuration was `applied`, runs with none of it: true, restore it.
    fn note_pids(&self, now: BTreeMap<&'static str, String>, applied: bool) -> bool {
        let mut seen = lock(&self.pids);
        let mut any = false;
        for (d, pid) in &now {
            let restarted = match seen.get(d) {
                Some(old) => old != pid,
                None => applied,
            };
            if restarted {
                tracing::warn!(daemon = d, pid = %pid, "FRR daemon restarted; restoring the configuration");
                any = true;
            }
        }
        *seen = now;
        any
    }

    fn check_restarts(&self) {
        let applied = lock(&self.applier).generation().is_some();
        if self.note_pids(self.read_pids(), applied) {
            lock(&self.notes).restore_pending = true;
        }
        if !lock(&self.notes).restore_pending {
            return;
        }
        // bgpd answers vtysh before it has read anything: wait for it to know about BGP at all.
        if self.vtysh.show_in("bgpd", "show bgp vrf all summary json").is_err() {
            return;
        }
        let result = lock(&self.applier).reconcile();
        let mut notes = lock(&self.notes);
        match result {
            Ok(applied) => {
                tracing::info!(?applied, "configuration restored");
                notes.restore_pending = false;
                notes.restores += 1;
                notes.last_error.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, "restoring the configuration failed; retrying");
                notes.last_error = format!("restoring after a restart: {e}");
            }
        }
    }

    fn refresh_status(&self) {
        // Asks FRR only while the version is unknown (before the first answer, after a restart).
        let frr_version = lock(&self.applier).frr_version().map(|v| v.to_string()).unwrap_or_default();
        let daemons_down = self.daemons_down();
        let state = self.read_state();
        if let Ok((neighbors, _)) = &state {
            self.release_bfd(neighbors);
        }
        let notes = lock(&self.notes);
        let mut next = AgentStatus {
            frr_version,
            last_error: notes.last_error.clone(),
            restores: notes.restores,
            frr_reachable: state.is_ok(),
            daemons_down,
            ..Default::default()
        };
        match state {
            Ok((n, b)) => (next.neighbors, next.bfd_peers) = (n, b),
            Err(e) if next.last_error.is_empty() => next.last_error = format!("reading FRR's state: {e}"),
            Err(_) => {}
        }
        self.publish(|now| *now = next);
        drop(notes);
    }

    /// The daemons whose vty does not answer. Probed with the applier held: connecting to
    /// mgmtd's vty and closing it is what makes FRR 9.0 to 10.3's mgmtd forget a commit in
    /// flight ([`crate::apply::Vtysh::show_in`]).
    fn daemons_down(&self) -> Vec<String> {
        let _applying = lock(&self.applier);
        daemons::down(&self.run_dir, self.config_dir.as_deref(), daemons::Reach::Socket)
    }

    /// Gives the applier the sessions now established, so `bfd` lines waiting for them go in.
    fn release_bfd(&self, neighbors: &[Neighbor]) {
        let established =
            neighbors.iter().filter(|n| n.established).map(|n| (n.vrf.clone(), n.peer.clone())).collect();
        match lock(&self.applier).sessions(established) {
            Ok(Some(applied)) => tracing::info!(?applied, "BFD configured for sessions now established"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "configuring BFD for established sessions failed; retrying"),
        }
    }

    /// Changes the published status with `change`, its running generation read now. Called with
    /// `notes` held, so two publications never cross: an Apply's outcome, published at once, is
    /// never overwritten by a status refresh that read the generation before it.
    fn publish(&self, change: impl FnOnce(&mut AgentStatus)) {
        let running_generation = lock(&self.applier).generation().unwrap_or(0);
        // Clocks tick on every poll; only a change in anything else wakes watchers.
        self.status.send_if_modified(|now| {
            let before = without_clocks(now);
            change(now);
            now.running_generation = running_generation;
            before != without_clocks(now)
        });
    }
}

impl Inner {
    fn read_state(&self) -> Result<(Vec<Neighbor>, Vec<BfdPeer>), String> {
        // bgpd and bfdd alone: these run beside Applies ([`crate::apply::Vtysh::show_in`]).
        let text = self.vtysh.show_in("bgpd", status::NEIGHBORS_COMMAND).map_err(|e| e.to_string())?;
        let neighbors = status::neighbors(&text).map_err(|e| e.to_string())?;
        let vrfs: BTreeSet<&str> =
            std::iter::once("default").chain(neighbors.iter().map(|n| n.vrf.as_str())).collect();
        let mut bfd = Vec::new();
        for vrf in vrfs {
            let text = self.vtysh.show_in("bfdd", &status::bfd_command(vrf)).map_err(|e| e.to_string())?;
            let mut peers = status::bfd_peers(&text).map_err(|e| e.to_string())?;
            if !peers.is_empty() {
                let text = self
                    .vtysh
                    .show_in("bfdd", &status::bfd_counters_command(vrf))
                    .map_err(|e| e.to_string())?;
                status::add_bfd_counters(&mut peers, &text).map_err(|e| e.to_string())?;
            }
            bfd.extend(peers);
        }
        Ok((neighbors, bfd))
    }
}

/// Keepalives and BFD packets move the counters on every poll, as clocks do: neither is news.
fn without_clocks(s: &AgentStatus) -> AgentStatus {
    let mut s = s.clone();
    s.neighbors.iter_mut().for_each(|n| (n.state_for_millis, n.messages) = (0, None));
    s.bfd_peers.iter_mut().for_each(|p| (p.status_for_seconds, p.counters) = (0, None));
    s
}

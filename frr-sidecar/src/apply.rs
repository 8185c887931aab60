//! Applying a desired configuration to FRR: validate with FRR itself, diff against what was
//! applied last (or what FRR runs, after a restart), send the difference as one vtysh batch.
//!
//! No soft refresh follows: with announcement classes a changed attribute means a new class and a
//! re-originated `network` line, so no route-map is ever edited under routes already sent. (FRR
//! 8.4 also lost the withdrawal of a route announced right after a `clear bgp * soft out` on a
//! session less than a few seconds old; the lab test for that sequence passes without it.)
//! On failure nothing stays half-applied: the previous configuration is restored.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bfd_hold::{self, Session};
use crate::dialect::{Dialect, FrrVersion};
use crate::diff;
use crate::tree::ConfigTree;

/// How to reach one FRR instance with vtysh.
#[derive(Debug, Clone)]
pub struct Vtysh {
    pub program: PathBuf,
    /// Extra arguments before the command, e.g. `--vty_socket DIR --config_dir DIR`.
    pub args: Vec<String>,
}

/// The longest one vtysh call may take (applying 10,000 prefixes takes seconds). FRR 10.3's
/// mgmtd was seen keeping its datastore lock after a commit a daemon failed, and after another
/// vty closed during a commit ([`Vtysh::show_in`]), and `vtysh -f` then retries for ever; past
/// this the call is an error the speaker reports and retries, not an Apply that never returns.
const VTYSH_DEADLINE: Duration = Duration::from_secs(120);

impl Vtysh {
    fn run(&self, args: &[&str]) -> Result<(bool, String), ApplyError> {
        let out = output_within(Command::new(&self.program).args(&self.args).args(args), VTYSH_DEADLINE)
            .map_err(|e| {
                ApplyError::Vtysh(redact(&format!("{} {}: {e}", self.program.display(), args.join(" "))))
            })?;
        Ok(verdict(&out))
    }

    /// A dry run (`-C`) of whatever script it will be handed on its stdin, started now.
    fn start_check(&self) -> Option<Checker> {
        let mut command = Command::new(&self.program);
        command.args(&self.args).args(["-C", "-f", "/dev/stdin"]);
        spawn(&mut command, std::process::Stdio::piped()).ok().map(|child| Checker { child: Some(child) })
    }

    /// Where the daemons' vty sockets are: what `--vty_socket` tells vtysh, or FRR's default.
    fn vty_dir(&self) -> PathBuf {
        let split = self.args.iter().skip_while(|a| *a != "--vty_socket").nth(1).cloned();
        let joined = self.args.iter().find_map(|a| a.strip_prefix("--vty_socket=").map(str::to_string));
        split.or(joined).map_or_else(|| PathBuf::from("/var/run/frr"), PathBuf::from)
    }

    pub fn show(&self, command: &str) -> Result<String, ApplyError> {
        answer(command, self.run(&["-c", command])?)
    }

    /// `command` asked of one daemon only. What the agent reads while an Apply may run goes
    /// this way: FRR 9.0 to 10.3's mgmtd copies its running datastore over the shared
    /// candidate whenever any vty on it closes, so a vtysh that connects to every daemon and
    /// exits during another session's commit makes mgmtd's running datastore forget that
    /// commit (zebra applied it; `show running-config` shows the old lines for good). Fixed
    /// upstream in 10.4 (FRR issue #18541, commit b12b4c28b4); seen here on 10.3.
    pub fn show_in(&self, daemon: &str, command: &str) -> Result<String, ApplyError> {
        answer(command, self.run(&["-d", daemon, "-c", command])?)
    }
}

/// A show command's output, or what vtysh said when it failed.
fn answer(command: &str, (ok, text): (bool, String)) -> Result<String, ApplyError> {
    match ok {
        true => Ok(text),
        false => Err(ApplyError::Vtysh(format!("{command}: {text}"))),
    }
}

/// `command`'s output, or an error once it ran past `deadline`: then it is killed with every
/// process it started (vtysh -f forks one per file), in its own process group.
fn output_within(command: &mut Command, deadline: Duration) -> Result<std::process::Output, String> {
    let child = spawn(command, std::process::Stdio::null())?;
    wait_within(child, deadline)
}

/// `command` started in its own process group, its output piped.
fn spawn(command: &mut Command, stdin: std::process::Stdio) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())
}

/// Whether vtysh succeeded, and what it said (stdout, then stderr), redacted. A failure's text
/// becomes an error in the speaker's status: FRR's words only, without vtysh's progress lines.
fn verdict(out: &std::process::Output) -> (bool, String) {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let ok = out.status.success();
    let text = if ok { text } else { without_progress(&text) };
    (ok, redact(&text))
}

/// Kills the process group `leader` leads (a vtysh and whatever it forked).
fn kill_group(leader: u32) {
    if let Ok(id) = i32::try_from(leader) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(id), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A started `child`'s output, as [`output_within`].
fn wait_within(child: std::process::Child, deadline: Duration) -> Result<std::process::Output, String> {
    let leader = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => out.map_err(|e| e.to_string()),
        Err(_) => {
            kill_group(leader);
            // The pipes close with the group, so the waiter returns.
            let _ = waiter.join();
            Err(format!("did not finish within {deadline:?} and was killed"))
        }
    }
}

/// FRR 10's vtysh tells each daemon's progress through a file (`[1234|bgpd] sending
/// configuration`, `... done`, `Waiting for children ...`) around the lines that say what
/// failed; those lines are kept, the progress dropped.
fn without_progress(text: &str) -> String {
    let progress = |l: &str| {
        let l = l.trim();
        let tagged = l.starts_with('[') && l.find("] ").is_some_and(|i| l[1..i].contains('|'));
        l.is_empty()
            || l.starts_with("Waiting for children to finish")
            || (tagged && (l.ends_with("] sending configuration") || l.ends_with("] done")))
    };
    text.lines().filter(|l| !progress(l)).map(|l| format!("{l}\n")).collect()
}

/// vtysh echoes offending lines; passwords must never reach a log or an API answer.
pub fn redact(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("password ") {
            Some(i) => format!("{}password REDACTED", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("FRR rejected the configuration: {0}")]
    Rejected(String),
    #[error("applying failed and the previous configuration was restored: {0}")]
    RolledBack(String),
    #[error("applying failed and restoring the previous configuration failed too: {0}")]
    Inconsistent(String),
    #[error("vtysh: {0}")]
    Vtysh(String),
    #[error("writing {0}: {1}")]
    File(String, String),
    /// Some daemon FRR should run does not answer yet; nothing was sent.
    #[error("FRR is not up yet: {0}")]
    NotReady(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The generation was already applied, or the configuration did not change.
    Unchanged,
    Changed {
        added: usize,
        removed: usize,
        took: Duration,
    },
}

/// A dry run started before the change it checks arrives. vtysh spends nearly all of a dry
/// run's time starting (its whole command tree is built before the first line is read; where
/// vtysh runs through a wrapper, the wrapper's start too), none of it on a change of a few
/// lines; started after each Apply, it waits on its stdin, so the next change is checked in
/// the time checking it takes. The check is FRR's own, the same as `-C -f FILE`.
struct Checker {
    child: Option<std::process::Child>,
}

/// What a started dry run made of a script.
enum Checked {
    /// FRR's verdict: whether it takes the script, and what vtysh said.
    Verdict(bool, String),
    /// No verdict from this checker (it had stopped, or was stopped by a signal): check the
    /// usual way.
    Unavailable,
    /// It ran past the deadline and was killed: no second wait as long.
    Failed(String),
}

impl Checker {
    /// FRR's verdict on `script`.
    fn check(mut self, script: &str) -> Checked {
        let Some(mut child) = self.child.take() else { return Checked::Unavailable };
        let stdin = child.stdin.take();
        let (Ok(None), Some(mut stdin)) = (child.try_wait(), stdin) else {
            let _ = child.wait();
            return Checked::Unavailable;
        };
        let script = script.to_string();
        // Written from a thread: a long script's errors may fill vtysh's output pipe while it
        // is still being written.
        let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()).is_ok());
        let out = match wait_within(child, VTYSH_DEADLINE) {
            Ok(out) => out,
            Err(e) => return Checked::Failed(format!("vtysh -C: {e}")),
        };
        // Killed by a signal (the OOM killer, say) is no verdict on the script.
        if !writer.join().unwrap_or(false) || out.status.code().is_none() {
            return Checked::Unavailable;
        }
        let (ok, text) = verdict(&out);
        Checked::Verdict(ok, text)
    }
}

impl Drop for Checker {
    /// Its stdin closed, an unused checker reads an empty script and exits; it is reaped here.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            if !matches!(child.try_wait(), Ok(Some(_))) {
                kill_group(child.id());
                let _ = child.wait();
            }
        }
    }
}

pub struct Applier {
    vtysh: Vtysh,
    /// The next change's dry run, started after the last Apply.
    checker: Option<Checker>,
    /// Changes checked by a dry run started ahead of them.
    checked_ahead: u64,
    /// Batches (changes and undos) that went to bgpd's vty ([`crate::vty`]), taken or not.
    sent_to_bgpd: u64,
    dir: PathBuf,
    /// The generation and owned configuration FRR was last brought to, and the text it came
    /// from (read again in the dialect of whatever version comes back after a restart).
    current: Option<(u64, ConfigTree, String)>,
    /// How the running FRR prints configuration; read from `show version` on first use and
    /// again after a daemon restarts (a new image may bring a new version).
    dialect: Option<Dialect>,
    /// A batch failed half way and putting back what was there may not have worked either:
    /// FRR may run neither the old nor the new configuration, so the next change is diffed
    /// against what it runs. (Diffed against the old one, whatever the failed batch left, a
    /// new filter say, stays in FRR for good: no later diff knows of it.)
    unsure: bool,
    /// The BGP sessions established when FRR's state was last read.
    established: BTreeSet<Session>,
    /// The sessions whose `bfd` lines wait for them ([`crate::bfd_hold`]).
    held: BTreeSet<Session>,
}

impl Applier {
    pub fn new(vtysh: Vtysh, dir: impl Into<PathBuf>) -> Applier {
        Applier {
            vtysh,
            checker: None,
            checked_ahead: 0,
            sent_to_bgpd: 0,
            dir: dir.into(),
            current: None,
            dialect: None,
            unsure: false,
            established: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// The running FRR's version, asked once and remembered until [`Applier::reconcile`].
    pub fn frr_version(&mut self) -> Result<FrrVersion, ApplyError> {
        if let Some(d) = self.dialect {
            return Ok(d.version);
        }
        let text = self.vtysh.show("show version")?;
        let version = FrrVersion::parse(&text)
            .ok_or_else(|| ApplyError::Vtysh(format!("show version gave no FRR version: {text}")))?;
        // Once at the start and after each restart: which FRR a node runs, for whoever reads
        // the log (a node's FRR version decides which of FRR's bugs apply, see the README).
        tracing::info!(version = %version, "FRR version read");
        self.dialect = Some(Dialect::new(version));
        Ok(version)
    }

    fn dialect(&mut self) -> Result<Dialect, ApplyError> {
        self.frr_version().map(Dialect::new)
    }

    /// The part of `config` the agent owns, as the running FRR would print it back.
    pub fn desired(&mut self, config: &str) -> Result<ConfigTree, ApplyError> {
        let dialect = self.dialect()?;
        let tree = ConfigTree::parse(config).map_err(|e| ApplyError::Rejected(e.to_string()))?;
        Ok(dialect.normalize(&diff::owned(&tree)))
    }

    /// Starts the next change's dry run. At once: its start-up runs while the daemons take the
    /// change just sent, which measured no slower (`benches/reload.rs`: Apply -> the ToR's FIB
    /// 142.6 ms at once, 143.5 ms when started 100 ms later, FRR 8.4), and a change that comes
    /// soon after this one finds it further along.
    fn check_ahead(&mut self) {
        self.checker = self.vtysh.start_check();
    }

    /// How many changes a dry run started ahead of them checked (the rest were checked by a
    /// dry run started for them: the first, and any after a checker stopped).
    pub fn checked_ahead(&self) -> u64 {
        self.checked_ahead
    }

    pub fn sent_to_bgpd(&self) -> u64 {
        self.sent_to_bgpd
    }

    pub fn generation(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.0)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, ApplyError> {
        let path = self.dir.join(name);
        let file_err = |e: std::io::Error| ApplyError::File(path.display().to_string(), e.to_string());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(file_err)?;
        f.write_all(text.as_bytes()).map_err(file_err)?;
        Ok(path)
    }

    /// What FRR runs now, reduced to what the agent owns.
    pub fn running(&mut self) -> Result<ConfigTree, ApplyError> {
        let dialect = self.dialect()?;
        let text = self.vtysh.show("show running-config")?;
        let tree = ConfigTree::parse(&text).map_err(|e| ApplyError::Vtysh(e.to_string()))?;
        Ok(dialect.normalize(&diff::owned(&tree)))
    }

    /// Brings FRR to `config`. Serialise calls: the diff assumes nobody else changed FRR since.
    pub fn apply(&mut self, config: &str, generation: u64) -> Result<Applied, ApplyError> {
        if self.generation() == Some(generation) {
            return Ok(Applied::Unchanged);
        }
        self.bring(config, generation)
    }

    /// Tells the applier which sessions are established; once one whose `bfd` lines wait is,
    /// brings FRR to the configuration it runs again, with them.
    pub fn sessions(&mut self, established: BTreeSet<Session>) -> Result<Option<Applied>, ApplyError> {
        let released = self.held.iter().any(|s| established.contains(s));
        self.established = established;
        match self.current.clone() {
            Some((generation, _, text)) if released => self.bring(&text, generation).map(Some),
            _ => Ok(None),
        }
    }

    fn bring(&mut self, config: &str, generation: u64) -> Result<Applied, ApplyError> {
        let started = Instant::now();
        let base = match &self.current {
            Some((_, tree, _)) if !self.unsure => tree.clone(),
            _ => self.running()?,
        };
        let (new, held) = bfd_hold::hold(&self.desired(config)?, &base, &self.established);
        let script = diff::diff(&base, &new);
        if !script.is_empty() {
            // Every line already in FRR passed this check when it was applied, so checking the
            // change is enough, and costs what the change costs, not what the whole file does.
            let file = self.write("change.conf", &script.text)?;
            let checked = self.checker.take().map_or(Checked::Unavailable, |c| c.check(&script.text));
            let (ok, text) = match checked {
                Checked::Verdict(ok, text) => {
                    self.checked_ahead += 1;
                    (ok, text)
                }
                Checked::Unavailable => self.vtysh.run(&["-C", "-f", path(&file)])?,
                Checked::Failed(e) => return Err(ApplyError::Vtysh(e)),
            };
            if !ok {
                self.check_ahead();
                return Err(ApplyError::Rejected(text));
            }
            let sent = self.send(&file, &script.text, &base);
            self.check_ahead();
            sent?;
        }
        self.current = Some((generation, new, config.to_string()));
        self.held = held;
        self.unsure = false;
        if script.is_empty() {
            return Ok(Applied::Unchanged);
        }
        Ok(Applied::Changed { added: script.added, removed: script.removed, took: started.elapsed() })
    }

    /// After FRR (or one daemon) restarted. `show running-config` merges every daemon's view,
    /// so filters a restarted bgpd lost still show up through zebra: a diff would miss them.
    /// The whole desired configuration is pushed again instead (vtysh merges, so lines that
    /// are already there stay untouched), then anything still differing is diffed away. It is
    /// pushed as the agent holds it, in the running version's dialect, so no default is ever
    /// written out.
    pub fn reconcile(&mut self) -> Result<Applied, ApplyError> {
        let Some((generation, _, text)) = self.current.clone() else { return Ok(Applied::Unchanged) };
        let started = Instant::now();
        let was = self.dialect.take();
        let desired = self.desired(&text)?;
        if was.is_some_and(|w| Some(w) != self.dialect) {
            tracing::info!(version = %self.frr_version()?, "FRR came back as another version");
        }
        // A restarted bgpd runs no `bfd` line and no session; one that kept running keeps both,
        // and its lines stay whatever the sessions do.
        self.established.clear();
        let (desired, held) = bfd_hold::hold(&desired, &self.running()?, &self.established);
        self.held = held;
        self.current = Some((generation, desired.clone(), text));
        let everything = diff::diff(&diff::owned(&ConfigTree::default()), &desired);
        let file = self.write("desired.conf", &everything.text)?;
        let (ok, out) = self.vtysh.run(&["-f", path(&file)])?;
        if !ok {
            self.unsure = true;
            return Err(ApplyError::Vtysh(out));
        }
        let running = self.running()?;
        let rest = diff::diff(&running, &desired);
        if !rest.is_empty() {
            let file = self.write("change.conf", &rest.text)?;
            self.send(&file, &rest.text, &running)?;
        }
        self.unsure = false;
        Ok(Applied::Changed { added: desired.len(), removed: rest.removed, took: started.elapsed() })
    }

    /// Sends the change `text` (written in `file`) to FRR; on a failure, puts back `base`.
    fn send(&mut self, file: &Path, text: &str, base: &ConfigTree) -> Result<(), ApplyError> {
        let (ok, text) = self.deliver(file, text)?;
        if !ok {
            // Until a change goes through whole, what FRR runs is read, not assumed.
            self.unsure = true;
            // vtysh -f keeps every line that worked: put back what was there.
            let undo = self.running().map(|now| diff::diff(&now, base));
            return match undo {
                Ok(undo) => {
                    let back = self.write("undo.conf", &undo.text)?;
                    match self.deliver(&back, &undo.text)? {
                        (true, _) => Err(ApplyError::RolledBack(text)),
                        (false, more) => Err(ApplyError::Inconsistent(format!("{text}\n{more}"))),
                    }
                }
                Err(e) => Err(ApplyError::Inconsistent(format!("{text}\n{e}"))),
            };
        }
        Ok(())
    }

    /// One batch to FRR: straight to bgpd's vty when only bgpd reads it (a Service coming or
    /// going), through `vtysh -f` otherwise. Whether FRR took all of it, and its words if not.
    fn deliver(&mut self, file: &Path, text: &str) -> Result<(bool, String), ApplyError> {
        if !crate::vty::bgpd_only(text) {
            return self.vtysh.run(&["-f", path(file)]);
        }
        self.sent_to_bgpd += 1;
        let socket = self.vtysh.vty_dir().join("bgpd.vty");
        // A broken connection may have left part of the batch in bgpd: undone like a refusal.
        let (ok, said) = crate::vty::configure(&socket, text, VTYSH_DEADLINE).unwrap_or_else(|e| (false, e));
        Ok((ok, redact(&said)))
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("agent paths are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::output_within;

    #[test]
    fn a_command_past_its_deadline_is_killed_with_what_it_forked() {
        let started = std::time::Instant::now();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30; echo never"]);
        let e = output_within(&mut cmd, std::time::Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish within 300ms"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        let mut quick = std::process::Command::new("sh");
        quick.args(["-c", "echo out; echo err >&2"]);
        let out = output_within(&mut quick, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    }

    use super::*;

    #[test]
    fn a_failure_keeps_frrs_words_and_drops_the_daemons_progress() {
        let frr10 = "[26945|mgmtd] sending configuration\n[26957|bgpd] sending configuration\n\
                     % Configure the peer-group first\nWaiting for children to finish applying config...\n\
                     [26945|mgmtd] done\nline 3: Failure to communicate[13] to bgpd, line:  neighbor 192.0.2.99 peer-group nope\n\n\
                     [26957|bgpd] Configuration file[/tmp/x/frr.conf] processing failure: 13\n[26957|bgpd] done\n";
        assert_eq!(
            without_progress(frr10),
            "% Configure the peer-group first\n\
             line 3: Failure to communicate[13] to bgpd, line:  neighbor 192.0.2.99 peer-group nope\n\
             [26957|bgpd] Configuration file[/tmp/x/frr.conf] processing failure: 13\n"
        );
        // FRR 8.4 says the same without any progress.
        let frr8 = "% Configure the peer-group first\nline 3: Failure to communicate[13] to bgpd\n";
        assert_eq!(without_progress(frr8), frr8);
    }
}

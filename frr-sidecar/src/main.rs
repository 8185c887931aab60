//! frr-agent: runs beside FRR and applies the speaker's configuration to it.
//!
//! `serve` is the sidecar; `probe` is for the kubelet; `apply`, `status` and `diff` are for
//! people at a shell.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use frr_sidecar::apply::Vtysh;
use frr_sidecar::daemons::{self, Reach};
use frr_sidecar::dialect::{Dialect, FrrVersion};
use frr_sidecar::proto::{AgentStatus, ApplyRequest, StatusRequest, apply_reply::Outcome};
use frr_sidecar::service::{Agent, Settings};
use frr_sidecar::tree::ConfigTree;
use frr_sidecar::{diff, server};

const DEFAULT_SOCKET: &str = "/var/run/frr-agent/agent.sock";

#[derive(Parser)]
#[command(
    name = "frr-agent",
    version = frr_sidecar::build::LONG,
    about = "Owns an FRR instance and applies ferrolb's configuration to it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the agent's gRPC API on a unix socket.
    Serve {
        #[arg(long, env = "FRR_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// FRR's vty socket directory; its <daemon>.pid files reveal restarts.
        #[arg(long, default_value = "/var/run/frr")]
        vty_socket: PathBuf,
        /// FRR's configuration directory, for vtysh (it reads vtysh.conf there).
        #[arg(long)]
        config_dir: Option<PathBuf>,
        /// Where the agent writes the files it hands to vtysh (mode 0600).
        #[arg(long, default_value = "/var/lib/frr-agent")]
        state_dir: PathBuf,
        /// How often FRR's state is read and restarts are looked for, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        #[arg(long, default_value = "vtysh")]
        vtysh: PathBuf,
    },
    /// Apply an frr.conf through a running agent.
    Apply {
        file: PathBuf,
        #[arg(long, env = "FRR_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Defaults to the current time in milliseconds, so later applies win.
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Print what FRR reports about sessions and BFD, through a running agent.
    Status {
        #[arg(long, env = "FRR_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when healthy, 1 (saying why) when not: the kubelet's exec probes. Asks the agent
    /// (it answers; with --ready FRR answers it and every daemon is up), or with --frr looks at
    /// FRR's processes directly (watchfrr alive; with --ready every daemon), for the FRR
    /// container, which shares FRR's processes.
    Probe {
        #[arg(long, env = "FRR_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        frr: bool,
        #[arg(long)]
        ready: bool,
        /// FRR's run directory (pid files and vty sockets), for --frr.
        #[arg(long, default_value = "/var/run/frr")]
        vty_socket: PathBuf,
        /// FRR's configuration directory (its `daemons` file), for --frr.
        #[arg(long, default_value = "/etc/frr")]
        config_dir: PathBuf,
        /// How long the agent may take to answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Wait until no speaker follows the agent (it has exited), at most `--timeout-ms`: the FRR
    /// and frr-agent containers' preStop hook. A speaker leaving for good (its DaemonSet is
    /// gone) withdraws its routes through the agent before it exits, so FRR must not stop
    /// first; one being replaced exits at once and so does this.
    WaitSpeaker {
        #[arg(long, env = "FRR_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Print the vtysh script that turns one configuration into the other (offline).
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// The FRR version the script is for (its defaults and spellings), e.g. 10.3.
        #[arg(long, default_value = "8.4")]
        frr_version: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    frr_sidecar::init_logging();
    if matches!(cli.command, Command::Serve { .. }) {
        frr_sidecar::build::log_start("frr-agent");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("starting the runtime: {e}")),
    };
    match cli.command {
        Command::Serve { socket, vty_socket, config_dir, state_dir, poll_ms, vtysh } => {
            let mut args = vec!["--vty_socket".to_string(), vty_socket.display().to_string()];
            if let Some(dir) = &config_dir {
                args.extend(["--config_dir".to_string(), dir.display().to_string()]);
            }
            if let Err(e) = std::fs::create_dir_all(&state_dir) {
                return fail(format!("{}: {e}", state_dir.display()));
            }
            let agent = Agent::new(Settings {
                vtysh: Vtysh { program: vtysh, args },
                run_dir: vty_socket,
                config_dir,
                state_dir,
                poll: Duration::from_millis(poll_ms.max(10)),
            });
            runtime.block_on(async {
                tokio::spawn(agent.clone().monitor());
                tracing::info!(socket = %socket.display(), "frr-agent serving");
                let stop = async {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = async { match term.as_mut() { Ok(t) => { t.recv().await; } Err(_) => std::future::pending().await } } => {}
                    }
                };
                match server::serve(agent, &socket, stop).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(format!("{}: {e}", socket.display())),
                }
            })
        }
        Command::Apply { file, socket, generation } => {
            let config = match std::fs::read_to_string(&file) {
                Ok(c) => c,
                Err(e) => return fail(format!("{}: {e}", file.display())),
            };
            let generation = generation.unwrap_or_else(|| {
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64)
            });
            runtime.block_on(async {
                match server::client(&socket).apply(ApplyRequest { config, generation }).await {
                    Ok(reply) => {
                        let r = reply.into_inner();
                        let outcome = r.outcome();
                        println!(
                            "{outcome:?}: generation {} running, {} lines added, {} removed, {} µs{}",
                            r.running_generation,
                            r.lines_added,
                            r.lines_removed,
                            r.took_micros,
                            if r.error.is_empty() { String::new() } else { format!("\n{}", r.error) }
                        );
                        if matches!(outcome, Outcome::Applied | Outcome::Unchanged) {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::from(1)
                        }
                    }
                    Err(e) => fail(format!("{}: {}", socket.display(), e.message())),
                }
            })
        }
        Command::Status { socket, json } => runtime.block_on(async {
            match server::client(&socket).status(StatusRequest {}).await {
                Ok(s) => {
                    let s = s.into_inner();
                    print!("{}", if json { status_json(&s) } else { status_table(&s) });
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("{}: {}", socket.display(), e.message())),
            }
        }),
        Command::Probe { socket, frr, ready, vty_socket, config_dir, timeout_ms } => {
            let verdict = if frr {
                probe_frr(&vty_socket, &config_dir, ready)
            } else {
                runtime.block_on(probe_agent(&socket, ready, Duration::from_millis(timeout_ms)))
            };
            match verdict {
                Ok(what) => {
                    println!("{what}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    println!("{why}");
                    ExitCode::from(1)
                }
            }
        }
        Command::WaitSpeaker { socket, timeout_ms } => {
            println!("{}", runtime.block_on(wait_speaker(&socket, Duration::from_millis(timeout_ms))));
            ExitCode::SUCCESS
        }
        Command::Diff { old, new, frr_version } => match FrrVersion::parse(&frr_version) {
            None => fail(format!("--frr-version {frr_version:?} is not a version like 10.3")),
            Some(v) => offline_diff(&old, &new, Dialect::new(v)),
        },
    }
}

/// FRR seen from its own container: watchfrr alive (it restarts the others), and with `ready`
/// every daemon that should run.
fn probe_frr(run_dir: &Path, config_dir: &Path, ready: bool) -> Result<String, String> {
    let down = daemons::down(run_dir, Some(config_dir), Reach::Process);
    let relevant: Vec<&String> = down.iter().filter(|d| ready || d.starts_with("watchfrr:")).collect();
    if !ready && !daemons::expected(run_dir, Some(config_dir)).contains("watchfrr") {
        return Err("watchfrr has not started (no watchfrr.pid)".into());
    }
    match relevant.is_empty() {
        true => Ok(if ready { "FRR: every daemon up".into() } else { "FRR: watchfrr up".into() }),
        false => Err(format!(
            "FRR daemons down: {}",
            relevant.iter().map(|d| d.as_str()).collect::<Vec<_>>().join("; ")
        )),
    }
}

/// Polls the agent until nobody watches it, the agent is gone, or `limit` passes; says which.
async fn wait_speaker(socket: &Path, limit: Duration) -> String {
    let started = tokio::time::Instant::now();
    let mut agent = server::client(socket);
    loop {
        let watchers = match agent.status(StatusRequest {}).await {
            Ok(s) => s.into_inner().watchers,
            Err(e) => return format!("the agent does not answer ({}): not waiting", e.message()),
        };
        if watchers == 0 {
            return format!("no speaker follows the agent after {:?}", started.elapsed());
        }
        if started.elapsed() >= limit {
            return format!("a speaker still follows the agent after {limit:?}: not waiting longer");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent answers Status in time; with `ready`, FRR answers it and no daemon is down.
async fn probe_agent(socket: &Path, ready: bool, timeout: Duration) -> Result<String, String> {
    let asked = tokio::time::timeout(timeout, server::client(socket).status(StatusRequest {})).await;
    let s = match asked {
        Err(_) => return Err(format!("{}: no answer within {timeout:?}", socket.display())),
        Ok(Err(e)) => return Err(format!("{}: {}", socket.display(), e.message())),
        Ok(Ok(s)) => s.into_inner(),
    };
    if ready && !s.frr_reachable {
        return Err(format!("frr-agent answers, FRR does not: {}", s.last_error));
    }
    if ready && !s.daemons_down.is_empty() {
        return Err(format!("FRR daemons down: {}", s.daemons_down.join("; ")));
    }
    Ok(format!(
        "frr-agent answers (FRR {} {})",
        s.frr_version,
        if s.frr_reachable { "reachable" } else { "unreachable" }
    ))
}

fn offline_diff(old: &PathBuf, new: &PathBuf, dialect: Dialect) -> ExitCode {
    match (read(old, dialect), read(new, dialect)) {
        (Ok(o), Ok(n)) => {
            let script = diff::diff(&o, &n);
            print!("{}", script.text);
            eprintln!("frr-agent: {} lines added, {} removed", script.added, script.removed);
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => fail(e),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("frr-agent: {message}");
    ExitCode::from(2)
}

fn read(path: &PathBuf, dialect: Dialect) -> Result<ConfigTree, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tree = ConfigTree::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(dialect.normalize(&diff::owned(&tree)))
}

fn status_table(s: &AgentStatus) -> String {
    let mut out = format!(
        "generation {}  frr {} {}  restores {}{}\n",
        s.running_generation,
        s.frr_version,
        if s.frr_reachable { "reachable" } else { "UNREACHABLE" },
        s.restores,
        if s.last_error.is_empty() { String::new() } else { format!("\nlast error: {}", s.last_error) }
    );
    out.push_str(&format!(
        "{:<10} {:<28} {:>10} {:<12} {:>10} {:>6} {:>6} {:<5} {}\n",
        "VRF", "PEER", "AS", "STATE", "FOR", "SENT", "RCVD", "BFD", "LAST RESET / NOTIFICATION"
    ));
    for n in &s.neighbors {
        let why = [n.last_reset.as_str(), n.last_notification.as_str()]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        out.push_str(&format!(
            "{:<10} {:<28} {:>10} {:<12} {:>9}s {:>6} {:>6} {:<5} {}\n",
            n.vrf,
            n.peer,
            n.remote_as,
            n.state,
            n.state_for_millis / 1000,
            n.prefixes_sent,
            n.prefixes_received,
            if n.bfd_status.is_empty() { "-" } else { &n.bfd_status },
            why
        ));
    }
    for p in &s.bfd_peers {
        out.push_str(&format!(
            "bfd {} {} via {} {}: {} for {}s ({}; remote {}), {}x{} ms\n",
            p.vrf,
            p.peer,
            if p.interface.is_empty() { "-" } else { &p.interface },
            if p.multihop { "multihop" } else { "single hop" },
            p.status,
            p.status_for_seconds,
            p.diagnostic,
            p.remote_diagnostic,
            p.detect_multiplier,
            p.receive_interval_millis
        ));
    }
    out
}

fn status_json(s: &AgentStatus) -> String {
    let neighbors: Vec<_> = s
        .neighbors
        .iter()
        .map(|n| {
            serde_json::json!({
                "vrf": n.vrf, "peer": n.peer, "remoteAS": n.remote_as, "localAS": n.local_as,
                "state": n.state, "established": n.established, "stateForMillis": n.state_for_millis,
                "connectionsEstablished": n.connections_established,
                "connectionsDropped": n.connections_dropped, "prefixesSent": n.prefixes_sent,
                "prefixesReceived": n.prefixes_received, "lastReset": n.last_reset,
                "lastNotification": n.last_notification, "bfdStatus": n.bfd_status,
            })
        })
        .collect();
    let bfd: Vec<_> = s
        .bfd_peers
        .iter()
        .map(|p| {
            serde_json::json!({
                "vrf": p.vrf, "peer": p.peer, "local": p.local, "interface": p.interface,
                "multihop": p.multihop, "status": p.status, "statusForSeconds": p.status_for_seconds,
                "diagnostic": p.diagnostic, "remoteDiagnostic": p.remote_diagnostic,
                "detectMultiplier": p.detect_multiplier, "receiveIntervalMillis": p.receive_interval_millis,
                "transmitIntervalMillis": p.transmit_interval_millis,
            })
        })
        .collect();
    let v = serde_json::json!({
        "runningGeneration": s.running_generation, "lastError": s.last_error,
        "frrReachable": s.frr_reachable, "restores": s.restores,
        "neighbors": neighbors, "bfdPeers": bfd,
    });
    format!("{v:#}\n")
}

//! Which FRR daemons should run and which of them do not: the readiness of the FRR sidecar.
//!
//! Should run: zebra and bgpd always, whatever `daemons` (FRR's start list in its configuration
//! directory) says `yes` to, and watchfrr, mgmtd, bfdd or staticd wherever their pid file shows
//! they were started (mgmtd exists from FRR 9 on and is in no start list).
//!
//! Up is judged one of two ways, depending on where the probe runs. Beside FRR, in its PID
//! namespace (the FRR container), a daemon is up when the process its pid file names is alive
//! and is that daemon. From another container (frr-agent's, which shares FRR's run directory
//! but not its processes), a daemon is up when its vty socket accepts a connection.

use std::collections::BTreeSet;
use std::path::Path;

/// Daemons whose pid file alone makes them expected.
const STARTED_BY_PID_FILE: &[&str] = &["watchfrr", "mgmtd", "zebra", "bgpd", "bfdd", "staticd"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Through `/proc`: the probe shares FRR's PID namespace.
    Process,
    /// Through `<daemon>.vty` in the run directory.
    Socket,
}

/// The daemons that should run (see the module's description).
pub fn expected(run_dir: &Path, config_dir: Option<&Path>) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = ["zebra", "bgpd"].iter().map(|d| d.to_string()).collect();
    if let Some(text) = config_dir.and_then(|d| std::fs::read_to_string(d.join("daemons")).ok()) {
        want.extend(started_in(&text));
    }
    for d in STARTED_BY_PID_FILE {
        if run_dir.join(format!("{d}.pid")).exists() {
            want.insert(d.to_string());
        }
    }
    want
}

/// The daemons a `daemons` file starts (`bgpd=yes`); `vtysh_enable` and the `*_options` lines
/// are settings, not daemons.
fn started_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|l| {
        let (name, value) = l.trim().split_once('=')?;
        let on = value.trim().trim_matches('"') == "yes";
        (on && name.ends_with('d') && !name.starts_with('#')).then(|| name.to_string())
    })
}

/// Each expected daemon that is not up, with why: `bgpd: bgpd.vty: Connection refused`.
pub fn down(run_dir: &Path, config_dir: Option<&Path>, reach: Reach) -> Vec<String> {
    expected(run_dir, config_dir)
        .into_iter()
        .filter_map(|d| up(run_dir, &d, reach).err().map(|why| format!("{d}: {why}")))
        .collect()
}

fn up(run_dir: &Path, daemon: &str, reach: Reach) -> Result<(), String> {
    match reach {
        Reach::Socket => {
            let socket = run_dir.join(format!("{daemon}.vty"));
            std::os::unix::net::UnixStream::connect(&socket)
                .map(drop)
                .map_err(|e| format!("{daemon}.vty: {e}"))
        }
        Reach::Process => {
            let file = run_dir.join(format!("{daemon}.pid"));
            let pid = std::fs::read_to_string(&file).map_err(|e| format!("{daemon}.pid: {e}"))?;
            let pid: u32 =
                pid.trim().parse().map_err(|_| format!("{daemon}.pid holds {:?}, not a pid", pid.trim()))?;
            let gone = || format!("process {pid} (from {daemon}.pid) is gone");
            // `pid (comm) state …`: comm is the program's name cut to 15 bytes (FRR's daemon
            // names are shorter); a killed daemon stays a zombie until watchfrr reaps it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| gone())?;
            let (head, tail) = stat.rsplit_once(')').ok_or_else(gone)?;
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            if matches!(tail.trim_start().chars().next(), Some('Z' | 'X') | None) {
                return Err(gone());
            }
            if comm == daemon { Ok(()) } else { Err(format!("process {pid} is {comm}, not {daemon}")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("frr-daemons-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_start_list_and_pid_files_say_what_should_run() {
        let (run, conf) = (dir("run"), dir("conf"));
        std::fs::write(
            conf.join("daemons"),
            "zebra=yes\nbgpd=yes\nbfdd=yes\nospfd=no\n#ripd=yes\nvtysh_enable=yes\nbgpd_options=\"  -A 127.0.0.1\"\n",
        )
        .unwrap();
        std::fs::write(run.join("mgmtd.pid"), "1\n").unwrap();
        let want: Vec<String> = expected(&run, Some(&conf)).into_iter().collect();
        assert_eq!(want, ["bfdd", "bgpd", "mgmtd", "zebra"]);
        // Without a start list: the two FRR always needs and what was started.
        assert_eq!(expected(&run, None).into_iter().collect::<Vec<_>>(), ["bgpd", "mgmtd", "zebra"]);
        std::fs::remove_dir_all(run).unwrap();
        std::fs::remove_dir_all(conf).unwrap();
    }

    #[test]
    fn a_daemon_is_up_only_when_it_answers() {
        let run = dir("up");
        // This test process stands in for "bgpd" by name: its pid file names a live process that
        // is not bgpd, zebra has no pid file, and a socket nobody listens on refuses.
        std::fs::write(run.join("bgpd.pid"), format!("{}\n", std::process::id())).unwrap();
        let down_by_process = down(&run, None, Reach::Process);
        assert_eq!(down_by_process.len(), 2, "{down_by_process:?}");
        assert!(down_by_process[0].starts_with("bgpd: process ") && down_by_process[0].contains("not bgpd"));
        assert!(down_by_process[1].starts_with("zebra: zebra.pid: "), "{down_by_process:?}");
        let listener = std::os::unix::net::UnixListener::bind(run.join("zebra.vty")).unwrap();
        let by_socket = down(&run, None, Reach::Socket);
        assert_eq!(by_socket.len(), 1, "{by_socket:?}");
        assert!(by_socket[0].starts_with("bgpd: bgpd.vty: "), "{by_socket:?}");
        drop(listener);
        std::fs::write(run.join("bgpd.pid"), "x").unwrap();
        assert!(down(&run, None, Reach::Process)[0].contains("not a pid"));
        std::fs::remove_dir_all(run).unwrap();
    }
}

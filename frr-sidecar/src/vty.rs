//! A change that only bgpd reads, sent over bgpd's vty socket the way vtysh sends it, without
//! starting vtysh.
//!
//! Why: a new or withdrawn Service changes `network` lines inside `router bgp` and nothing else.
//! `vtysh -f` spends 40-60 ms on such a change (building its command tree, connecting to every
//! daemon, on FRR 10 forking one child per daemon), more under CPU pressure, to deliver a few
//! lines to one daemon; on the cluster lab that was half of Service create -> route at the ToR.
//! Each daemon serves vtysh on `<vty dir>/<daemon>.vty` with a framing FRR has kept since
//! Quagga (lib/vty.c, `vtysh_read`; watchfrr speaks it too): a command ends with a NUL byte,
//! the answer is the command's output followed by three NUL bytes and the command's return code.
//! vtysh's own check (`vtysh -C`, started ahead) still validates the change first. The lines
//! go to bgpd framed as vtysh frames them, one command at a time (bgpd reads one per wake-up),
//! inside the same configuration markers; unlike `vtysh -f`, the first refused line ends the
//! batch (the caller undoes whatever of it was taken, as after any failed batch).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// FRR's return codes a configuration line may get back that `vtysh -f` counts as taken:
/// CMD_SUCCESS and CMD_WARNING ("already configured" and the like; vtysh_config_from_file lets
/// a daemon's warning pass).
const TAKEN: [u8; 2] = [0, 1];

/// A line this long or longer is cut by the daemon ("Command is too long", VTY_BUFSIZ: 4096 on
/// 8.4 and 10.3, 8192 on 10.7) and then gets no return code at all: such a change goes through
/// vtysh instead.
const LONGEST_LINE: usize = 4000;

/// The first words of the lines inside `router bgp` that ferrolb writes there (after an
/// optional `no`). Anything else, a bgpextras line say, goes through vtysh: a top-level command
/// that a missing `exit` left indented under `router bgp` (an `ip prefix-list`) is one that
/// vtysh hands to every daemon that has it, not bgpd alone.
const ROUTER_WORDS: [&str; 6] =
    ["neighbor", "network", "bgp", "address-family", "exit-address-family", "exit"];

/// Whether `script` speaks to bgpd alone: every top-level line opens or removes a `router bgp`
/// block (whose lines are all bgpd's; vtysh sends them nowhere else) and every line inside is
/// one ferrolb writes there. Filters, BFD and global lines reach other daemons too (zebra,
/// bfdd, mgmtd from FRR 9), so a change with any of them goes through vtysh, which knows where
/// each line belongs.
pub fn bgpd_only(script: &str) -> bool {
    let lines = script.lines().filter(|l| !l.trim().is_empty());
    let mut any = false;
    for line in lines {
        if line.len() >= LONGEST_LINE || line.contains('\0') {
            return false;
        }
        let ok = if line.starts_with(' ') {
            let words = line.trim_start().strip_prefix("no ").unwrap_or(line.trim_start());
            words.split_whitespace().next().is_some_and(|w| ROUTER_WORDS.contains(&w))
        } else {
            line.starts_with("router bgp ") || line.starts_with("no router bgp ") || line == "exit"
        };
        if !ok {
            return false;
        }
        any = true;
    }
    any
}

/// What takes a new vty to the configuration node, as `vtysh -f` begins.
const ENTER: [&str; 2] = ["enable", "configure terminal"];

/// One daemon's vty, as vtysh holds it, and when the whole exchange must be over.
struct Vty {
    stream: UnixStream,
    until: Instant,
}

impl Vty {
    fn connect(socket: &Path, until: Instant) -> std::io::Result<Vty> {
        let stream = UnixStream::connect(socket)?;
        Ok(Vty { stream, until })
    }

    /// Runs one command: its return code and what the daemon printed.
    fn run(&mut self, command: &str) -> std::io::Result<(u8, String)> {
        let mut framed = Vec::with_capacity(command.len() + 1);
        framed.extend_from_slice(command.as_bytes());
        framed.push(0);
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write_all(&framed)?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Output never holds a NUL byte, so the first three mark the end.
            if let Some(end) = answer.windows(3).position(|w| w == [0, 0, 0])
                && let Some(&code) = answer.get(end + 3)
            {
                return Ok((code, String::from_utf8_lossy(&answer[..end]).into_owned()));
            }
            self.stream.set_read_timeout(Some(self.left()?))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the daemon closed the vty"));
                }
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// What remains of the exchange's time, or a timeout.
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "past the deadline"));
        }
        Ok(left)
    }
}

/// Sends `script` to the daemon behind `socket` inside the configuration markers `vtysh -f`
/// sends, which make the daemon treat it as one batch (bgpd holds the neighbours it creates
/// until the end marker, for up to 600 s without one), stopping at the first line the daemon
/// refuses, all within `deadline`. Whether every line was taken, and the daemon's words for the
/// one that was not. An error after the start marker means part of the script may have been
/// taken: the caller undoes as for a refusal.
pub fn configure(socket: &Path, script: &str, deadline: Duration) -> Result<(bool, String), String> {
    let until = Instant::now() + deadline;
    let name =
        socket.file_name().map_or_else(|| socket.display().to_string(), |n| n.to_string_lossy().into());
    let io = |e: std::io::Error| format!("{name}: {e}");
    let mut vty = Vty::connect(socket, until).map_err(io)?;
    for command in ENTER.into_iter().chain(["XFRR_start_configuration"]) {
        expect_taken(&mut vty, command).map_err(io)?.map_or(Ok(()), Err)?;
    }
    let refused = match send_lines(&mut vty, script) {
        Ok(refused) => refused,
        Err(e) => {
            // The end marker on a vty of its own: bgpd's configuration state is the daemon's,
            // not the connection's. If bgpd is gone, so is what it held.
            let _ = Vty::connect(socket, Instant::now() + Duration::from_secs(5)).and_then(|mut again| {
                for command in ENTER {
                    again.run(command)?;
                }
                end_configuration(&mut again)
            });
            return Err(io(e));
        }
    };
    let ended = end_configuration(&mut vty).map_err(io)?;
    match (refused, ended) {
        (Some(words), _) | (None, Some(words)) => Ok((false, words)),
        (None, None) => Ok((true, String::new())),
    }
}

/// Each line of `script`, until the daemon refuses one: its words and the line.
fn send_lines(vty: &mut Vty, script: &str) -> std::io::Result<Option<String>> {
    for line in script.lines().filter(|l| !l.trim().is_empty() && l.trim() != "!") {
        let (code, said) = vty.run(line)?;
        if !TAKEN.contains(&code) {
            return Ok(Some(format!("{}\nline: {}", said.trim(), line.trim())));
        }
    }
    Ok(None)
}

/// The end marker (found from whatever node a refused line left the vty in: the daemon looks
/// for it in the enclosing nodes too), then `end`; the daemon's words if it refused the marker.
fn end_configuration(vty: &mut Vty) -> std::io::Result<Option<String>> {
    let ended = expect_taken(vty, "XFRR_end_configuration")?;
    let _ = vty.run("end");
    Ok(ended)
}

/// Runs `command`; the daemon's words if it refused it.
fn expect_taken(vty: &mut Vty, command: &str) -> std::io::Result<Option<String>> {
    let (code, said) = vty.run(command)?;
    Ok((!TAKEN.contains(&code)).then(|| format!("{command}: code {code}: {}", said.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_coming_or_going_is_bgpd_only() {
        let add = "router bgp 64512\n address-family ipv4 unicast\n  network 198.51.100.1/32 route-map c-1\n exit-address-family\nexit\n";
        assert!(bgpd_only(add));
        assert!(bgpd_only("router bgp 64512 vrf red\n no neighbor 192.0.2.1 remote-as 64500\nexit\n"));
        assert!(bgpd_only("no router bgp 64512\n"));
    }

    #[test]
    fn filters_globals_bfd_and_odd_lines_go_through_vtysh() {
        let rm = "route-map c-2 permit 1\n set tag 2\nexit\nrouter bgp 64512\n network 192.0.2.0/32\nexit\n";
        for script in [
            "router bgp 64512\n neighbor 192.0.2.1 remote-as 64500\n ip prefix-list x seq 5 permit any\nexit\n",
            "router bgp 64512\n address-family ipv4 unicast\n  end\n exit-address-family\nexit\n",
            rm,
            "ip prefix-list p seq 5 permit 192.0.2.0/24\n",
            "bgp route-map delay-timer 1\n",
            "bfd\n profile x\n exit\nexit\n",
            "",
            "router bgp 64512\n network 192.0.2.0/32\0\nexit\n",
        ] {
            assert!(!bgpd_only(script), "{script:?}");
        }
        let long = format!("router bgp 64512\n description {}\nexit\n", "x".repeat(LONGEST_LINE));
        assert!(!bgpd_only(&long));
    }

    /// A daemon's side of the framing: answers each command, refusing (code 13, FRR's
    /// CMD_WARNING_CONFIG_FAILED) those containing `refuse`; the commands it got.
    fn daemon(mut end: UnixStream, refuse: &'static str) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let (mut got, mut byte, mut commands) = (Vec::new(), [0u8; 1], Vec::new());
            while end.read(&mut byte).unwrap_or(0) == 1 {
                if byte[0] != 0 {
                    got.push(byte[0]);
                    continue;
                }
                let command = String::from_utf8(std::mem::take(&mut got)).unwrap();
                let code = if command.contains(refuse) { 13 } else { 0 };
                let said = if code == 0 { "" } else { "% Create the peer-group first\n" };
                end.write_all(said.as_bytes()).unwrap();
                end.write_all(&[0, 0, 0, code]).unwrap();
                commands.push(command);
            }
            commands
        })
    }

    #[test]
    fn answers_are_read_up_to_the_three_nul_bytes_and_the_code() {
        let (a, b) = UnixStream::pair().unwrap();
        let daemon = daemon(b, "refuse");
        let mut vty = Vty { stream: a, until: Instant::now() + Duration::from_secs(5) };
        assert_eq!(vty.run("enable").unwrap(), (0, String::new()));
        assert_eq!(
            vty.run(" neighbor x refuse").unwrap(),
            (13, "% Create the peer-group first\n".to_string())
        );
        drop(vty);
        assert_eq!(daemon.join().unwrap(), vec!["enable", " neighbor x refuse"]);
    }

    /// A fresh directory with a `bgpd.vty` listening in it: (directory, socket, listener).
    fn listening(name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::os::unix::net::UnixListener) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("bgpd.vty");
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        (dir, socket, listener)
    }

    /// A batch between the markers, stopped at the refused line, the end marker sent anyway.
    #[test]
    fn a_batch_stops_at_the_first_refusal_and_always_ends_the_configuration() {
        let (dir, socket, listener) = listening("ferrolb-vty");
        let script = "router bgp 64512\n neighbor 192.0.2.9 peer-group nope\n network 192.0.2.0/32\nexit\n";
        let accepted =
            std::thread::spawn(move || daemon(listener.accept().unwrap().0, "nope").join().unwrap());
        let outcome = configure(&socket, script, Duration::from_secs(5));
        let commands = accepted.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            outcome,
            Ok((
                false,
                "% Create the peer-group first\nline: neighbor 192.0.2.9 peer-group nope".to_string()
            ))
        );
        let expected = [
            "enable",
            "configure terminal",
            "XFRR_start_configuration",
            "router bgp 64512",
            " neighbor 192.0.2.9 peer-group nope",
            "XFRR_end_configuration",
            "end",
        ];
        assert_eq!(commands, expected);
    }

    /// bgpd closing the vty half way through (killed, say): an error, and the end marker sent
    /// on a vty of its own, so the neighbours the batch created are not held for 600 s.
    #[test]
    fn a_vty_lost_half_way_still_gets_the_end_marker_on_a_new_one() {
        let (dir, socket, listener) = listening("ferrolb-vty-lost");
        let served = std::thread::spawn(move || {
            // The first vty closes when the batch's second line arrives; the second is served.
            let (mut first, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            let mut lines = 0;
            while first.read(&mut byte).unwrap_or(0) == 1 {
                if byte[0] != 0 {
                    seen.push(byte[0]);
                    continue;
                }
                lines += 1;
                if lines == 5 {
                    break;
                }
                first.write_all(&[0, 0, 0, 0]).unwrap();
            }
            drop(first);
            daemon(listener.accept().unwrap().0, "never").join().unwrap()
        });
        let script = "router bgp 64512\n neighbor 192.0.2.9 remote-as 64999\nexit\n";
        let outcome = configure(&socket, script, Duration::from_secs(5));
        let second = served.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(outcome.as_ref().is_err_and(|e| e.starts_with("bgpd.vty: ")), "{outcome:?}");
        assert_eq!(second, ["enable", "configure terminal", "XFRR_end_configuration", "end"]);
    }

    #[test]
    fn no_daemon_is_an_error_naming_the_socket() {
        let err =
            configure(Path::new("/nonexistent/bgpd.vty"), "router bgp 1\nexit\n", Duration::from_secs(1));
        assert!(err.as_ref().is_err_and(|e| e.starts_with("bgpd.vty: ")), "{err:?}");
    }
}

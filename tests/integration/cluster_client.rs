//! A client in the cluster lab that watches a change as users feel it: every 50 ms it asks for
//! every layer 2 IP (all the answers, so two nodes answering at once shows) and fetches every
//! Service's page, for as long as the change takes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::cluster_lab::{CLIENT_IP, ClusterLab};

/// Runs in the client's namespace until its stdin closes. Every 50 ms: one ARP request per layer
/// 2 IP, every answer within 40 ms ("arp lag=MS IP=MAC,MAC IP=- …", lag: how late the round
/// started); and per Service a page fetched with a 1 s limit ("http IP ok|lost WHY"). Each line
/// starts with seconds since it started. Each round asks from its own sender address (one of ten
/// unused ones on the switch), so an answer that comes late is not taken for one to the next
/// round; answers the kernel queued while the script waited for the CPU still count.
const WATCH: &str = r#"
import ipaddress, socket, struct, sys, threading, time
iface, me, arp_ips, http_ips = sys.argv[1], sys.argv[2], sys.argv[3].split(','), sys.argv[4].split(',')
start, out, stop = time.monotonic(), threading.Lock(), threading.Event()
def say(*words):
    with out:
        print('%.3f' % (time.monotonic() - start), *words, flush=True)
def arp():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    mac, base = s.getsockname()[4][:6], int(ipaddress.IPv4Address(me)) + 50
    targets = {ipaddress.IPv4Address(ip).packed: ip for ip in arp_ips}
    due, n = time.monotonic(), 0
    while not stop.is_set():
        t, n = time.monotonic(), n + 1
        src = ipaddress.IPv4Address(base + n % 10).packed
        for target in targets:
            s.send(b'\xff' * 6 + mac + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1)
                   + mac + src + bytes(6) + target)
        answers = {ip: set() for ip in arp_ips}
        while True:
            left = t + 0.04 - time.monotonic()
            if left > 0:
                s.settimeout(left)
            else:
                s.setblocking(False)
            try:
                f = s.recv(128)
            except (socket.timeout, BlockingIOError):
                break
            if len(f) >= 42 and f[12:14] == b'\x08\x06' and f[21] == 2 and f[28:32] in targets and f[38:42] == src:
                answers[targets[f[28:32]]].add(':'.join('%02x' % b for b in f[22:28]))
        s.setblocking(True)
        say('arp', 'lag=%d' % ((t - due) * 1000), *('%s=%s' % (ip, ','.join(sorted(a)) or '-') for ip, a in answers.items()))
        due = max(due + 0.05, time.monotonic() - 0.01)
        time.sleep(max(0, due - time.monotonic()))
def fetch(ip):
    while not stop.is_set():
        t, page, why = time.monotonic(), b'', 'no-page'
        try:
            c = socket.create_connection((ip, 80), timeout=1.0)
            c.settimeout(max(0.01, t + 1.0 - time.monotonic()))
            c.sendall(b'GET / HTTP/1.0\r\nHost: web\r\n\r\n')
            while chunk := c.recv(4096):
                page += chunk
            c.close()
        except OSError as e:
            why = type(e).__name__
        if b'ferrolb e2e' in page:
            say('http', ip, 'ok')
        else:
            say('http', ip, 'lost', '%s-after-%dms' % (why, (time.monotonic() - t) * 1000))
        time.sleep(max(0, t + 0.05 - time.monotonic()))
threads = [threading.Thread(target=arp)] + [threading.Thread(target=fetch, args=(ip,)) for ip in http_ips]
for th in threads:
    th.start()
sys.stdin.read()
stop.set()
for th in threads:
    th.join()
"#;

/// (seconds since the client started, what happened then).
pub type Timeline = Vec<(f64, String)>;

/// What the client saw during the upgrade.
#[derive(Default)]
pub struct Seen {
    /// Per Service IP: (requests, lost, when each loss was (seconds) and why).
    pub fetches: BTreeMap<String, (u64, u64, Timeline)>,
    /// The latest an ARP round started, in milliseconds: the client's own stalls.
    pub worst_lag_ms: u64,
    /// Per layer 2 IP: seconds with no answering node, seconds with two or more, and each change
    /// of the answering nodes: when (seconds) and who.
    pub arp: BTreeMap<String, (f64, f64, Timeline)>,
}

fn read_watch(lines: impl Iterator<Item = String>, macs: &[String]) -> Seen {
    let node =
        |mac: &str| macs.iter().position(|m| m == mac).map_or(mac.to_string(), |i| format!("node{}", i + 1));
    let mut seen = Seen::default();
    // Per layer 2 IP, the last sample: when, and who answered. A sample stands until the next.
    let mut last: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.first().and_then(|w| w.parse::<f64>().ok()) else { continue };
        match words.get(1) {
            Some(&"http") if words.len() >= 4 => {
                let f = seen.fetches.entry(words[2].to_string()).or_default();
                f.0 += 1;
                if words[3] == "lost" {
                    f.1 += 1;
                    f.2.push((at, words.get(4).unwrap_or(&"").to_string()));
                }
            }
            Some(&"arp") => {
                let lag = words.get(2).and_then(|w| w.strip_prefix("lag=")?.parse::<u64>().ok()).unwrap_or(0);
                seen.worst_lag_ms = seen.worst_lag_ms.max(lag);
                for (ip, answers) in words[3..].iter().filter_map(|pair| pair.split_once('=')) {
                    let who: Vec<String> = answers.split(',').filter(|a| *a != "-").map(node).collect();
                    let a = seen.arp.entry(ip.to_string()).or_default();
                    match last.get(ip) {
                        Some((was_at, was)) => {
                            match was.len() {
                                0 => a.0 += at - was_at,
                                1 => {}
                                _ => a.1 += at - was_at,
                            }
                            if *was != who {
                                a.2.push((at, if who.is_empty() { "-".into() } else { who.join("+") }));
                            }
                        }
                        None => a.2.push((at, who.join("+"))),
                    }
                    last.insert(ip.to_string(), (at, who));
                }
            }
            _ => {}
        }
    }
    seen
}

/// The watching client, running.
pub struct ClientWatch {
    child: Child,
    lines: Option<JoinHandle<Vec<String>>>,
    macs: Vec<String>,
}

impl ClientWatch {
    /// Starts asking for `arp_ips` and fetching `http_ips` from the lab's client.
    pub fn start(lab: &ClusterLab, arp_ips: &[&str], http_ips: &[&str]) -> ClientWatch {
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.client_ns(), "python3", "-c", WATCH, "eth0", CLIENT_IP])
            .args([arp_ips.join(","), http_ips.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 in the client's namespace");
        let stdout = child.stdout.take().expect("piped");
        let lines =
            std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect());
        let macs = (0..lab.nodes.len()).map(|i| lab.node_mac(i)).collect();
        ClientWatch { child, lines: Some(lines), macs }
    }

    /// Stops the client; what it saw.
    pub fn stop(mut self) -> Seen {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let lines = self.lines.take().and_then(|l| l.join().ok()).unwrap_or_default();
        read_watch(lines.into_iter(), &self.macs)
    }
}

impl Drop for ClientWatch {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Seen {
    /// When `ip` moved: another node answered than the one that answered last (a pause with no
    /// answer between is not a move when the same node answers after it).
    pub fn moves(&self, ip: &str) -> Vec<(f64, String)> {
        let mut last: Option<&str> = None;
        let mut moves = Vec::new();
        for (at, who) in self.arp.get(ip).map(|a| a.2.as_slice()).unwrap_or_default() {
            if who == "-" || who.is_empty() {
                continue;
            }
            if last.is_some_and(|l| l != who) {
                moves.push((*at, who.clone()));
            }
            last = Some(who);
        }
        moves
    }

    /// Whether a request to `ip` lost at `at` was in flight when its IP moved.
    pub fn at_a_move(&self, ip: &str, at: f64) -> bool {
        self.moves(ip).iter().any(|(t, _)| (at - 1.0..at + 0.3).contains(t))
    }
}

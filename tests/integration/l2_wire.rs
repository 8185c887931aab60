//! Frames on the lab's wire, seen from the client's namespace: neighbour solicitations of every
//! kind written and sent by hand (ndisc6 sends only the multicast kind), and what comes back or
//! goes by. A short Python script over an AF_PACKET socket does the sending and listening; it is
//! written from RFC 4861 and RFC 826, not from ferrolb's packet module, so each checks the other.

use std::process::Command;

use crate::l2_lab::L2Lab;

const SCRIPT: &str = r#"
import ipaddress, socket, struct, sys, time

ETH_P_ALL, ETH_P_IPV6, PACKET_OUTGOING = 0x0003, 0x86DD, 4

def mac(text): return bytes.fromhex(text.replace(':', ''))
def show(raw): return ':'.join('%02x' % b for b in raw)
def ip6(text): return ipaddress.IPv6Address(text).packed

def checksum(src, dst, body):
    data = src + dst + struct.pack('!I3xB', len(body), 58) + body
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff

def solicitation(kind, ours, source, target, node_mac):
    t = ip6(target)
    src = bytes(16) if kind == 'dad' else ip6(source)
    if kind in ('multicast', 'dad'):
        dst = ip6('ff02::1:ff00:0')[:13] + t[13:]
        eth_dst = b'\x33\x33' + dst[12:]
    else:
        dst, eth_dst = t, mac(node_mac)
    body = struct.pack('!BBHI', 135, 0, 0, 0) + t
    if kind in ('multicast', 'unicast'):
        body += bytes([1, 1]) + ours
    body = body[:2] + struct.pack('!H', checksum(src, dst, body)) + body[4:]
    header = struct.pack('!IHBB', 6 << 28, len(body), 58, 255) + src + dst
    return eth_dst + ours + b'\x86\xdd' + header + body

def advertisement(f):
    if len(f) < 78 or f[12:14] != b'\x86\xdd' or f[20] != 58 or f[54] != 136:
        return None
    tlla, options = '-', f[78:]
    while len(options) >= 8 and options[1]:
        if options[0] == 2:
            tlla = show(options[2:8])
        options = options[options[1] * 8:]
    return 'na eth_dst=%s eth_src=%s ip_src=%s ip_dst=%s hop=%d target=%s s=%d o=%d tlla=%s' % (
        show(f[0:6]), show(f[6:12]), ipaddress.IPv6Address(f[22:38]), ipaddress.IPv6Address(f[38:54]),
        f[21], ipaddress.IPv6Address(f[62:78]), f[58] >> 6 & 1, f[58] >> 5 & 1, tlla)

def gratuitous_arp(f, ip):
    if len(f) < 42 or f[12:14] != b'\x08\x06' or f[28:32] != ip or f[38:42] != ip:
        return None
    return 'arp eth_src=%s op=%d' % (show(f[6:12]), f[21])

def listen(sock, seconds, describe):
    start = time.monotonic()
    while True:
        left = seconds - (time.monotonic() - start)
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            frame, address = sock.recvfrom(2048)
        except socket.timeout:
            return
        line = address[2] != PACKET_OUTGOING and describe(frame)
        if line:
            print('%s at=%.4f' % (line, time.monotonic() - start), flush=True)

iface, command = sys.argv[1], sys.argv[2]
proto = ETH_P_IPV6 if command == 'probe' else ETH_P_ALL
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
sock.bind((iface, 0))
ours = sock.getsockname()[4][:6]
if command == 'probe':
    kind, source, target, node_mac, seconds = sys.argv[3:8]
    sock.send(solicitation(kind, ours, source, target, node_mac))
    listen(sock, float(seconds), lambda f: (line := advertisement(f)) and f' target={target} ' in line and line)
else:
    seconds, v4, v6 = sys.argv[3:6]
    def unsolicited(f):
        na = advertisement(f)
        if na and f' target={v6} ' in na and ' s=0 ' in na:
            return na
        return gratuitous_arp(f, ipaddress.IPv4Address(v4).packed)
    listen(sock, float(seconds), unsolicited)
"#;

/// One frame the script saw: its kind (`na`, `arp`), `key=value` fields and when (seconds after
/// the script started listening).
#[derive(Debug, Clone)]
pub struct Seen {
    pub kind: String,
    pub fields: Vec<(String, String)>,
    pub at: f64,
}

impl Seen {
    pub fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }
}

fn run(lab: &L2Lab, args: &[&str]) -> Vec<Seen> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client.0, "python3", "-c", SCRIPT, "eth0"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "wire script: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(parse).collect()
}

fn parse(line: &str) -> Option<Seen> {
    let mut words = line.split_whitespace();
    let kind = words.next()?.to_string();
    let fields: Vec<(String, String)> =
        words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let at = fields.iter().find(|(k, _)| k == "at")?.1.parse().ok()?;
    Some(Seen { kind, fields, at })
}

/// A neighbour solicitation of `kind` (`multicast`, `unicast` or `unicast-no-slla` from the
/// client's 2001:db8:10::100; `dad` from `::`) for `target`, sent to `node_mac` when unicast; the
/// advertisements for `target` that reach the client within `seconds`.
pub fn probe(lab: &L2Lab, kind: &str, target: &str, node_mac: &str, seconds: f64) -> Vec<Seen> {
    run(lab, &["probe", kind, "2001:db8:10::100", target, node_mac, &seconds.to_string()])
}

/// Gratuitous ARP for `v4` and unsolicited neighbour advertisements for `v6` reaching the client
/// within `seconds`.
pub fn unsolicited(lab: &L2Lab, v4: &str, v6: &str, seconds: f64) -> Vec<Seen> {
    run(lab, &["capture", &seconds.to_string(), v4, v6])
}

/// The client's MAC.
pub fn client_mac(lab: &L2Lab) -> String {
    let out = Command::new("ip").args(["-n", &lab.client.0, "-br", "link", "show", "eth0"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(2).unwrap_or_default().to_lowercase()
}

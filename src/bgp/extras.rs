//! `bgpextras`: raw FRR configuration an operator appends to the rendered one, read as MetalLB's
//! FRR mode reads it (ConfigMap `bgpextras`, key `extras`, in ferrolb's namespace). As in
//! MetalLB it is an escape hatch: ferrolb does not interpret it, FRR is its only judge
//! (frr-agent has FRR check every change before applying it, and refuses the whole change when
//! FRR does).

use frr_sidecar::diff;
use frr_sidecar::tree::ConfigTree;

pub const CONFIG_MAP: &str = "bgpextras";
pub const KEY: &str = "extras";

/// The text appended for `extras`: its lines as given, ending in one newline; nothing for a
/// blank value.
fn block(extras: &str) -> String {
    let body = extras.trim_end();
    if body.trim().is_empty() { String::new() } else { format!("{body}\n") }
}

/// `base` (a rendered frr.conf) with `extras` after it.
pub fn append(base: &str, extras: &str) -> String {
    let mut out = base.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&block(extras));
    out
}

/// [`append`] undone: `full` without `extras`, or None when `full` does not end with them.
pub fn strip<'a>(full: &'a str, extras: &str) -> Option<&'a str> {
    full.strip_suffix(block(extras).as_str())
}

/// The lines of `extras` frr-agent leaves alone: it manages routers, route-maps, prefix,
/// community, as-path and access lists and BFD, and nothing else in FRR (interfaces, static
/// routes, zebra's settings), so anything else would silently never reach FRR.
pub fn unmanaged(extras: &str) -> Result<Vec<String>, String> {
    let tree = ConfigTree::parse(extras).map_err(|e| e.to_string())?;
    let owned = diff::owned(&tree);
    let mut out = Vec::new();
    for path in &tree.order {
        match (path.first(), owned.has(path)) {
            (None, _) => {
                let kept = owned.lines(path);
                out.extend(tree.lines(path).iter().filter(|l| !kept.contains(l)).cloned());
            }
            (Some(top), false) if path.len() == 1 => out.push(top.clone()),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_after_the_rendered_configuration_and_taken_off_again() {
        let base = "hostname n1\n!\n";
        let extras = "ip prefix-list extra seq 5 permit 203.0.113.0/24\n\n";
        let full = append(base, extras);
        assert_eq!(full, "hostname n1\n!\nip prefix-list extra seq 5 permit 203.0.113.0/24\n");
        assert_eq!(strip(&full, extras), Some(base));
        assert_eq!(append(base, "  \n"), base);
        assert_eq!(strip(base, ""), Some(base));
        assert_eq!(strip(base, "router bgp 1"), None);
        assert_eq!(append("hostname n1", "log syslog"), "hostname n1\nlog syslog\n");
    }

    #[test]
    fn lines_frr_agent_does_not_manage_are_named() {
        let extras = "ip prefix-list a seq 5 permit 203.0.113.0/24\nbgp community-list standard c seq 5 permit 64512:1\n\
                      ip route 203.0.113.0/24 192.0.2.1\ninterface eth0\n description uplink\nexit\n\
                      route-map a permit 10\n match ip address prefix-list a\nexit\n";
        assert_eq!(unmanaged(extras).unwrap(), ["ip route 203.0.113.0/24 192.0.2.1", "interface eth0"]);
        assert!(unmanaged("exit\n").is_err());
    }
}

//! How FRR versions differ in what they print back, so that a rendered configuration and what
//! a given FRR runs compare as the same state.
//!
//! Comparison is structural (context -> set of lines, as [`ConfigTree`] holds them): FRR 10
//! prints route-maps before `router bgp` and sorts them by name, 8.4 prints them in the order
//! given, and neither order carries meaning. What remains are spellings and defaults:
//!
//! - `neighbor X ebgp-multihop 255` is printed as `neighbor X ebgp-multihop` by FRR 10 and as
//!   written by 8.4; both versions read the short form as 255, so it is the one used everywhere.
//! - From FRR 10, `ip nht resolve-via-default` and `ipv6 nht resolve-via-default` are on by
//!   default and never printed; on 8.4 they are off by default and printed when set. Where
//!   they are the default they are dropped from what the agent wants, so it neither writes a
//!   default out nor sees drift where there is none.

use std::collections::{BTreeMap, BTreeSet};

use crate::tree::{ConfigTree, ContextPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrrVersion {
    pub major: u32,
    pub minor: u32,
}

impl FrrVersion {
    /// Reads `show version` (`FRRouting 10.3 (host) on Linux…`) or a bare `10.3.1`.
    pub fn parse(text: &str) -> Option<FrrVersion> {
        let word = text
            .split_whitespace()
            .skip_while(|w| *w != "FRRouting")
            .nth(1)
            .or_else(|| text.split_whitespace().next())?;
        let mut parts = word.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(FrrVersion { major, minor })
    }
}

impl std::fmt::Display for FrrVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One FRR version's way of printing configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub version: FrrVersion,
}

/// The oldest version the agent is built for (Debian bookworm's), used until FRR answers.
pub const OLDEST: FrrVersion = FrrVersion { major: 8, minor: 4 };

impl Default for Dialect {
    fn default() -> Dialect {
        Dialect { version: OLDEST }
    }
}

impl Dialect {
    pub fn new(version: FrrVersion) -> Dialect {
        Dialect { version }
    }

    /// Root lines that are this version's defaults: FRR never prints them.
    fn is_default_root_line(&self, line: &str) -> bool {
        self.version.major >= 10
            && matches!(line, "ip nht resolve-via-default" | "ipv6 nht resolve-via-default")
    }

    /// The one spelling of a line that every supported version reads the same way.
    fn spelling(line: &str) -> String {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["neighbor", peer, "ebgp-multihop", "255"] => format!("neighbor {peer} ebgp-multihop"),
            _ => line.to_string(),
        }
    }

    /// `tree` as this version would print it back: one spelling per setting, no defaults.
    pub fn normalize(&self, tree: &ConfigTree) -> ConfigTree {
        let mut out = tree.clone();
        for (path, lines) in out.contexts.iter_mut() {
            let rewritten: Vec<String> = lines
                .iter()
                .filter(|l| !(path.is_empty() && self.is_default_root_line(l)))
                .map(|l| Dialect::spelling(l))
                .collect();
            *lines = rewritten;
        }
        out
    }
}

/// A configuration reduced to what FRR's state depends on: each context's lines as a set.
pub fn structure(tree: &ConfigTree) -> BTreeMap<ContextPath, BTreeSet<String>> {
    tree.contexts.iter().map(|(p, lines)| (p.clone(), lines.iter().cloned().collect())).collect()
}

/// Where two configurations differ structurally, one line per difference (`+` only in `b`).
pub fn differences(a: &ConfigTree, b: &ConfigTree) -> Vec<String> {
    let (a, b) = (structure(a), structure(b));
    let empty = BTreeSet::new();
    let paths: BTreeSet<&ContextPath> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let (la, lb) = (a.get(path).unwrap_or(&empty), b.get(path).unwrap_or(&empty));
        let at = if path.is_empty() { "top level".to_string() } else { path.join(" > ") };
        if a.contains_key(path) != b.contains_key(path) {
            let sign = if b.contains_key(path) { '+' } else { '-' };
            out.push(format!("{sign} context {at}"));
        }
        out.extend(la.difference(lb).map(|l| format!("- {l}   ({at})")));
        out.extend(lb.difference(la).map(|l| format!("+ {l}   ({at})")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_from_show_version_and_package_versions() {
        let v = FrrVersion::parse("FRRouting 10.3 (node1) on Linux(6.1).\nCopyright 1996-2005\n");
        assert_eq!(v, Some(FrrVersion { major: 10, minor: 3 }));
        assert_eq!(
            FrrVersion::parse("FRRouting 8.4.4 (n) on Linux"),
            Some(FrrVersion { major: 8, minor: 4 })
        );
        assert_eq!(FrrVersion::parse("10.7.1"), Some(FrrVersion { major: 10, minor: 7 }));
        assert_eq!(FrrVersion::parse("% Unknown command"), None);
        assert_eq!(FrrVersion::parse(""), None);
    }

    const RENDERED: &str = "hostname n1\nrouter bgp 64512\n neighbor 203.0.113.1 remote-as 64500\n \
        neighbor 203.0.113.1 ebgp-multihop 255\nexit\nroute-map b permit 1\nexit\nroute-map a permit 1\nexit\n\
        ip nht resolve-via-default\nipv6 nht resolve-via-default\n";

    #[test]
    fn frr_10_prints_a_rendered_file_back_as_the_same_structure() {
        let printed_by_10 = "hostname n1\nroute-map a permit 1\nexit\nroute-map b permit 1\nexit\n\
            router bgp 64512\n neighbor 203.0.113.1 remote-as 64500\n neighbor 203.0.113.1 ebgp-multihop\nexit\n";
        let d = Dialect::new(FrrVersion { major: 10, minor: 3 });
        let (a, b) = (ConfigTree::parse(RENDERED).unwrap(), ConfigTree::parse(printed_by_10).unwrap());
        assert_eq!(differences(&d.normalize(&a), &d.normalize(&b)), Vec::<String>::new());
    }

    #[test]
    fn on_8_4_resolve_via_default_is_state_and_stays() {
        let d = Dialect::default();
        let a = d.normalize(&ConfigTree::parse(RENDERED).unwrap());
        assert!(a.lines(&[]).iter().any(|l| l == "ip nht resolve-via-default"));
        let without = ConfigTree::parse("hostname n1\n").unwrap();
        assert!(differences(&d.normalize(&without), &a).iter().any(|l| l.contains("ipv6 nht")));
    }
}

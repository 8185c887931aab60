//! The difference between two FRR configurations, as one vtysh script that turns the first
//! into the second by touching only what changed.
//!
//! Unlike frr-reload.py, which sends each deletion as its own vtysh call (about 0.1 s each),
//! everything goes in one script, and a line whose setting the new configuration overrides is
//! not deleted first: deleting `neighbor X remote-as A` would drop the neighbor and its session,
//! while writing `neighbor X remote-as B` changes it in place.

use std::collections::BTreeSet;

use crate::tree::{ConfigTree, ContextPath};

/// What the agent manages: what ferrolb renders, and the filters an operator's `bgpextras`
/// may add beside them (community, as-path and access lists, which route-maps match on).
/// Anything else in FRR (zebra's forwarding lines, interfaces, static routes) is left alone.
const OWNED_ROOT_LINES: &[&str] = &[
    "ip prefix-list ",
    "ipv6 prefix-list ",
    "hostname ",
    "log ",
    "ip nht ",
    "ipv6 nht ",
    "bgp route-map delay-timer ",
    "bgp community-list ",
    "bgp large-community-list ",
    "bgp extcommunity-list ",
    "bgp as-path access-list ",
    "access-list ",
    "ipv6 access-list ",
];

fn owned_root_line(line: &str) -> bool {
    OWNED_ROOT_LINES.iter().any(|p| line.starts_with(p))
}

fn owned_context(path: &[String]) -> bool {
    path.first()
        .is_some_and(|top| top.starts_with("router bgp") || top.starts_with("route-map ") || top == "bfd")
}

/// The part of a configuration the agent owns.
pub fn owned(tree: &ConfigTree) -> ConfigTree {
    let mut out = ConfigTree::default();
    for path in &tree.order {
        let lines = tree.lines(path);
        let keep: Vec<String> = if path.is_empty() {
            lines.iter().filter(|l| owned_root_line(l)).cloned().collect()
        } else if owned_context(path) {
            lines.to_vec()
        } else {
            continue;
        };
        out.contexts.insert(path.clone(), keep);
        out.order.push(path.clone());
    }
    if !out.has(&[]) {
        out.contexts.insert(Vec::new(), Vec::new());
        out.order.insert(0, Vec::new());
    }
    out
}

/// The setting a line sets: two lines with the same key override each other, so the old one
/// needs no `no` when the new one is written.
fn setting_key(line: &str) -> String {
    let w: Vec<&str> = line.split_whitespace().collect();
    let upto = |n: usize| w[..n.min(w.len())].join(" ");
    match w.as_slice() {
        ["neighbor", _, "interface", "remote-as", ..] => upto(4),
        ["neighbor", _, "timers", "connect", ..] => upto(4),
        ["neighbor", _, "bfd", "profile", ..] => upto(4),
        ["neighbor", x, "route-map", _, dir] => format!("neighbor {x} route-map * {dir}"),
        [
            "neighbor",
            _,
            "remote-as" | "timers" | "password" | "local-as" | "port" | "update-source" | "ebgp-multihop",
            ..,
        ] => upto(3),
        ["bgp", "router-id", ..] => upto(2),
        // Re-issuing `network P route-map X` swaps the route-map in place: no withdraw.
        ["network", _, ..] => upto(2),
        ["hostname", ..] | ["log", "stdout", ..] => upto(2),
        ["ip" | "ipv6", "prefix-list", _, "seq", _, ..] => upto(5),
        ["set", "community" | "large-community" | "local-preference", ..] => upto(2),
        ["match", "ip" | "ipv6", "address", "prefix-list", ..] => upto(4),
        ["detect-multiplier" | "receive-interval" | "transmit-interval" | "minimum-ttl", ..] => upto(1),
        ["echo", "receive-interval" | "transmit-interval", ..] => upto(2),
        _ => line.to_string(),
    }
}

/// The command that removes a line. `neighbor X remote-as N` and its interface form delete the
/// whole neighbor, which is what removing a peer means.
fn negate(line: &str) -> String {
    format!("no {line}")
}

/// A vtysh script plus what it does, for logs and for deciding on follow-up work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub text: String,
    pub added: usize,
    pub removed: usize,
}

impl Script {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0
    }
}

struct Writer {
    out: String,
    added: usize,
    removed: usize,
}

impl Writer {
    fn enter(&mut self, path: &[String]) {
        for (depth, ctx) in path.iter().enumerate() {
            self.out.push_str(&" ".repeat(depth));
            self.out.push_str(ctx);
            self.out.push('\n');
        }
    }
    fn leave(&mut self, path: &[String]) {
        for (depth, ctx) in path.iter().enumerate().rev() {
            self.out.push_str(&" ".repeat(depth));
            self.out.push_str(if ctx.starts_with("address-family") { "exit-address-family" } else { "exit" });
            self.out.push('\n');
        }
    }
    fn line(&mut self, depth: usize, line: &str, removal: bool) {
        self.out.push_str(&" ".repeat(depth));
        self.out.push_str(line);
        self.out.push('\n');
        if removal {
            self.removed += 1;
        } else {
            self.added += 1;
        }
    }
    /// Writes `lines` inside `path`, entering and leaving it only if there is something to say.
    fn block(&mut self, path: &[String], lines: &[String], removal: bool) {
        if lines.is_empty() {
            return;
        }
        self.enter(path);
        for l in lines {
            self.line(path.len(), l, removal);
        }
        self.leave(path);
    }
}

/// Lines of `path` in `new` missing from `old` (in new's order).
fn added(old: &ConfigTree, new: &ConfigTree, path: &[String]) -> Vec<String> {
    let before = old.lines(path);
    new.lines(path).iter().filter(|l| !before.contains(l)).cloned().collect()
}

/// `no` lines for lines of `path` gone from `new` whose setting `new` does not override, in
/// reverse order so specific lines go before the ones they depend on.
fn removed(old: &ConfigTree, new: &ConfigTree, path: &[String]) -> Vec<String> {
    let after = new.lines(path);
    let keys: Vec<String> = after.iter().map(|l| setting_key(l)).collect();
    old.lines(path)
        .iter()
        .rev()
        .filter(|l| !after.contains(l) && !keys.contains(&setting_key(l)))
        .map(|l| negate(l))
        .collect()
}

fn is_router(path: &[String]) -> bool {
    path.first().is_some_and(|p| p.starts_with("router bgp"))
}

/// The script turning `old` into `new`, both already reduced to what the agent owns.
pub fn diff(old: &ConfigTree, new: &ConfigTree) -> Script {
    let mut w = Writer { out: String::new(), added: 0, removed: 0 };
    let root: ContextPath = Vec::new();
    let filters = |p: &ContextPath| p.first().is_some_and(|t| t.starts_with("route-map ") || t == "bfd");

    let root_added = added(old, new, &root);
    let stale_root = removed(old, new, &root);

    // A: new and changed filters and BFD profiles, before anything refers to them.
    w.block(&root, &root_added, false);
    for path in new.order.iter().filter(|p| filters(p)) {
        let mut lines = removed(old, new, path);
        let count_removed = lines.len();
        lines.extend(added(old, new, path));
        if !lines.is_empty() || !old.has(path) {
            w.enter(path);
            for (i, l) in lines.iter().enumerate() {
                w.line(path.len(), l, i < count_removed);
            }
            w.leave(path);
            if !old.has(path) && lines.is_empty() {
                // An empty new context: a BFD profile with only defaults, or a route-map entry
                // that only denies (ferrolb's `<peer>-in deny 20`, `<peer>-out deny 65535`).
                w.added += 1;
            }
        }
    }

    // B: routers. Address-family removals first (they may name a neighbor about to go), then
    // router-level removals, then additions in the new file's order.
    for path in old.order.iter().filter(|p| is_router(p) && p.len() == 1 && !new.has(p)) {
        w.line(0, &negate(&path[0]), true);
    }
    for path in new.order.iter().filter(|p| is_router(p) && p.len() == 1) {
        let families: BTreeSet<&ContextPath> =
            old.order.iter().chain(new.order.iter()).filter(|p| p.len() == 2 && p[0] == path[0]).collect();
        let af_removals: Vec<(&ContextPath, Vec<String>)> =
            families.iter().map(|af| (*af, removed(old, new, af))).collect();
        let af_additions: Vec<(&ContextPath, Vec<String>)> =
            families.iter().map(|af| (*af, added(old, new, af))).collect();
        let router_removals = removed(old, new, path);
        let router_additions = added(old, new, path);
        let nothing = af_removals.iter().chain(&af_additions).all(|(_, l)| l.is_empty())
            && router_removals.is_empty()
            && router_additions.is_empty()
            && old.has(path);
        if nothing {
            continue;
        }
        w.enter(path);
        for (af, lines) in &af_removals {
            nested(&mut w, af, lines, true);
        }
        for l in &router_removals {
            w.line(1, l, true);
        }
        for l in &router_additions {
            w.line(1, l, false);
        }
        if !old.has(path) {
            w.added += 1;
        }
        for (af, lines) in &af_additions {
            nested(&mut w, af, lines, false);
        }
        w.leave(path);
    }

    // C: filters and profiles nothing refers to any more.
    w.block(&root, &stale_root, true);
    for path in old.order.iter().rev().filter(|p| filters(p) && !new.has(p)) {
        match path.as_slice() {
            [top] => w.line(0, &negate(top), true),
            // Only `bfd` has children among these: its profiles.
            [parent, child] => {
                w.enter(std::slice::from_ref(parent));
                w.line(1, &negate(child), true);
                w.leave(std::slice::from_ref(parent));
            }
            _ => {}
        }
    }
    Script { text: w.out, added: w.added, removed: w.removed }
}

/// Writes lines of an address-family (or other second-level context) inside its router.
fn nested(w: &mut Writer, path: &[String], lines: &[String], removal: bool) {
    if lines.is_empty() {
        return;
    }
    w.out.push(' ');
    w.out.push_str(&path[1]);
    w.out.push('\n');
    for l in lines {
        w.line(2, l, removal);
    }
    w.out.push_str(if path[1].starts_with("address-family") { " exit-address-family\n" } else { " exit\n" });
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;

//! An FRR configuration as FRR structures it: top-level lines and nested contexts
//! (`router bgp …` > `address-family …`, `route-map …`, `bfd` > `profile …`).
//!
//! Parsing is line-based and indentation-agnostic: a context opens on its keyword and closes on
//! `exit`/`exit-address-family`, as in the files FRR writes itself.

use std::collections::BTreeMap;

/// Path of opening lines from the top level, e.g. `["router bgp 64512", "address-family ipv4 unicast"]`.
pub type ContextPath = Vec<String>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigTree {
    /// Lines per context, in file order; the top level is the empty path.
    pub contexts: BTreeMap<ContextPath, Vec<String>>,
    /// Contexts in the order they first appear (parents before children).
    pub order: Vec<ContextPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {0}: {1:?} closes a context that was never opened")]
    UnbalancedExit(usize, String),
}

/// Lines that open a context, by the context they may appear in.
fn opens_context(parent: &[String], line: &str) -> bool {
    let first = |p: &str| line.starts_with(p);
    match parent.len() {
        0 => {
            first("router bgp")
                || first("route-map ")
                || line == "bfd"
                || first("interface ")
                || first("vrf ")
        }
        1 if parent[0].starts_with("router bgp") => first("address-family "),
        1 if parent[0] == "bfd" => first("profile ") || first("peer "),
        _ => false,
    }
}

/// Lines that never describe state: comments, separators, the version banner.
fn is_noise(line: &str) -> bool {
    line.is_empty()
        || line.starts_with('!')
        || line == "end"
        || line.starts_with("frr version")
        || line.starts_with("Building configuration")
        || line.starts_with("Current configuration")
}

impl ConfigTree {
    pub fn parse(text: &str) -> Result<ConfigTree, ParseError> {
        let mut tree = ConfigTree::default();
        tree.touch(Vec::new());
        let mut stack: ContextPath = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if is_noise(line) {
                continue;
            }
            if line == "exit" || line == "exit-address-family" || line == "exit-vrf" {
                if stack.pop().is_none() {
                    return Err(ParseError::UnbalancedExit(n + 1, line.to_string()));
                }
                continue;
            }
            // A new top-level context also ends any unclosed one (FRR accepts files like that).
            if !stack.is_empty() && !opens_context(&stack, line) && opens_context(&[], line) {
                stack.clear();
            }
            if opens_context(&stack, line) {
                stack.push(line.to_string());
                tree.touch(stack.clone());
                continue;
            }
            tree.contexts.get_mut(&stack).expect("touched").push(line.to_string());
        }
        Ok(tree)
    }

    fn touch(&mut self, path: ContextPath) {
        if !self.contexts.contains_key(&path) {
            self.contexts.insert(path.clone(), Vec::new());
            self.order.push(path);
        }
    }

    pub fn lines(&self, path: &[String]) -> &[String] {
        self.contexts.get(path).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, path: &[String]) -> bool {
        self.contexts.contains_key(path)
    }

    /// Number of state lines, counting context openings.
    pub fn len(&self) -> usize {
        self.contexts.values().map(Vec::len).sum::<usize>() + self.contexts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_contexts() {
        let t = ConfigTree::parse(
            "frr version 8.4\nhostname n1\n!\nrouter bgp 64512\n neighbor 192.0.2.1 remote-as 64500\n !\n address-family ipv4 unicast\n  network 198.51.100.1/32\n exit-address-family\nexit\n\
             ip prefix-list a seq 1 permit 198.51.100.1/32\nroute-map a-out permit 1\n match ip address prefix-list a\nexit\nbfd\n profile fast\n  receive-interval 100\n exit\nexit\n",
        )
        .unwrap();
        let rb = vec!["router bgp 64512".to_string()];
        let af = vec!["router bgp 64512".to_string(), "address-family ipv4 unicast".to_string()];
        assert_eq!(t.lines(&[]), ["hostname n1", "ip prefix-list a seq 1 permit 198.51.100.1/32"]);
        assert_eq!(t.lines(&rb), ["neighbor 192.0.2.1 remote-as 64500"]);
        assert_eq!(t.lines(&af), ["network 198.51.100.1/32"]);
        assert_eq!(t.lines(&["bfd".to_string(), "profile fast".to_string()]), ["receive-interval 100"]);
        assert_eq!(t.lines(&["route-map a-out permit 1".to_string()]), ["match ip address prefix-list a"]);
        assert!(ConfigTree::parse("exit\n").is_err());
    }
}

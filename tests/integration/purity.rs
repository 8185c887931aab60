//! The pure rooms never reach for a cluster, a socket or async I/O: that is what lets the
//! controller, the speaker, the webhook and `plan` share them and test them synchronously.

const PURE: &[&str] = &[
    "src/config",
    "src/allocator",
    "src/service",
    "src/plan",
    "src/topology",
    "src/bgp",
    "src/l2/election.rs",
    "src/l2/groups.rs",
    "src/l2/quorum.rs",
    "src/l2/reach.rs",
    "src/l2/restart_hold.rs",
    "src/l2/packet",
    "frr-sidecar/src/tree.rs",
    "frr-sidecar/src/diff.rs",
    "frr-sidecar/src/dialect.rs",
    "frr-sidecar/src/status.rs",
];
const FORBIDDEN: &[&str] = &[
    "kube::Api",
    "kube::Client",
    "kube::runtime",
    "kube_runtime",
    "tokio",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "socket2",
    "nix::",
    "std::fs",
    "std::process",
];

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn pure_modules_do_no_io() {
    let mut files = Vec::new();
    for dir in PURE {
        sources(&crate::repo_root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for bad in FORBIDDEN {
                if line.contains(bad) {
                    hits.push(format!("{}:{}: {bad}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(hits.is_empty(), "I/O in a pure module:\n{}", hits.join("\n"));
}

/// The top-level module a file of src/ belongs to (`src/l2/responder.rs` -> `l2`).
fn module_of(root: &std::path::Path, file: &std::path::Path) -> Option<String> {
    let rel = file.strip_prefix(root.join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Which top-level modules each one names (`crate::x` in its code; comments and tests aside:
/// a test may build its inputs with a module above the one it tests).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = crate::repo_root();
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let is_test = |f: &std::path::Path| f.file_name().is_some_and(|n| n == "tests.rs" || n == "fixtures.rs");
    for f in files.iter().filter(|f| !is_test(f)) {
        let Some(from) = module_of(&root, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let uses = graph.entry(from.clone()).or_default();
        // Inline test modules close a file.
        let code = text.lines().take_while(|l| l.trim() != "#[cfg(test)]");
        for line in code.filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let to: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !to.is_empty() && to != from {
                    uses.insert(to);
                }
            }
        }
    }
    graph
}

/// Flow runs one way: no two top-level modules of src/ need each other, however far round
/// (`cli` reading manifests that the speaker also read through `cli` was one such loop), and
/// the kube glue never reaches up into a role.
#[test]
fn modules_depend_one_way_and_k8s_never_on_a_role() {
    let graph = module_graph();
    assert!(graph.len() > 15, "found only {} modules", graph.len());
    // Depth-first search for a path back to where it started.
    fn back_to(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut std::collections::BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if back_to(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        if back_to(&graph, start, start, &mut path, &mut Default::default()) {
            cycles.push(path.join(" -> "));
        }
    }
    assert!(cycles.is_empty(), "modules that need each other:\n{}", cycles.join("\n"));
    let roles = ["cli", "controller", "speaker", "webhook"];
    let up: Vec<&String> = graph["k8s"].iter().filter(|m| roles.contains(&m.as_str())).collect();
    assert!(up.is_empty(), "k8s/ uses a role: {up:?}");
}

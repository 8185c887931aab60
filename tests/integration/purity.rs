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

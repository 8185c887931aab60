//! Which FRR the tests run: the host's (Debian bookworm's 8.4) or the one installed in a root
//! filesystem that `scripts/frr-roots` built, named by `FERROLB_FRR_ROOT`.
//!
//! A root's programs run through a per-instance wrapper (`frr-exec`) that gives them the root as
//! `/`, the host's /proc, /sys, /dev, /tmp and the work tree at the same paths, and the
//! instance's run directory as `/run/frr`, in a mount namespace of their own that goes away with
//! them, so nothing is ever left mounted on the host. The private `/run/frr` matters from FRR 9
//! on: mgmtd and its clients (zebra, staticd, vtysh) find each other there whatever
//! `--vty_socket` says, so two routers sharing one `/run/frr` would talk to each other's mgmtd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variable naming the root filesystem; unset or empty means the host's FRR.
pub const ROOT_VAR: &str = "FERROLB_FRR_ROOT";

pub struct FrrInstall {
    pub root: Option<PathBuf>,
    /// As the daemons print it, e.g. `8.4.4` or `10.7.1`.
    pub version: String,
    /// What each daemon's `--help` lists, so each is given only options it accepts.
    help: HashMap<&'static str, String>,
}

const CANDIDATES: &[&str] = &["mgmtd", "zebra", "bfdd", "bgpd", "staticd"];

/// The FRR this test process runs, looked up once.
pub fn install() -> Result<&'static FrrInstall, String> {
    static ONCE: OnceLock<Result<FrrInstall, String>> = OnceLock::new();
    ONCE.get_or_init(FrrInstall::find).as_ref().map_err(Clone::clone)
}

impl FrrInstall {
    fn find() -> Result<FrrInstall, String> {
        let root = match std::env::var_os(ROOT_VAR).filter(|r| !r.is_empty()).map(PathBuf::from) {
            // The wrapper and the chroot need it absolute.
            Some(r) if r.join("usr/lib/frr/bgpd").exists() => {
                Some(r.canonicalize().map_err(|e| format!("{ROOT_VAR}={}: {e}", r.display()))?)
            }
            Some(r) => {
                return Err(format!(
                    "{ROOT_VAR}={} holds no FRR (scripts/frr-roots builds one)",
                    r.display()
                ));
            }
            None => None,
        };
        let mut frr = FrrInstall { root, version: String::new(), help: HashMap::new() };
        for d in CANDIDATES {
            if !frr.path(&format!("/usr/lib/frr/{d}")).exists() {
                continue;
            }
            let out = frr.plain(&format!("/usr/lib/frr/{d}"), &["--help"])?;
            frr.help.insert(d, out);
        }
        if !frr.help.contains_key("zebra") {
            return Err(format!(
                "{} missing (apt-get install frr)",
                frr.path("/usr/lib/frr/zebra").display()
            ));
        }
        let out = frr.plain("/usr/lib/frr/zebra", &["--version"])?;
        frr.version = out
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("zebra --version said {out:?}"))?
            .to_string();
        Ok(frr)
    }

    /// Runs a program of this FRR that needs no mounts (help and version output).
    fn plain(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = match &self.root {
            Some(r) => {
                let mut c = Command::new("chroot");
                c.arg(r).arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = cmd.args(args).output().map_err(|e| format!("{program}: {e}"))?;
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// `major.minor`, as the benchmark and test output name versions.
    pub fn label(&self) -> String {
        self.version.split('.').take(2).collect::<Vec<_>>().join(".")
    }

    /// The daemons a lab router runs, in start order: mgmtd first where the version has it
    /// (zebra and staticd register with it as they start).
    pub fn daemons(&self) -> Vec<&'static str> {
        CANDIDATES.iter().copied().filter(|d| *d != "mgmtd" || self.help.contains_key("mgmtd")).collect()
    }

    pub fn accepts(&self, daemon: &str, option: &str) -> bool {
        self.help.get(daemon).is_some_and(|h| h.contains(option))
    }

    /// A path as the host sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(inside.trim_start_matches('/')),
            None => PathBuf::from(inside),
        }
    }

    /// `user:group` ids of the root's frr user, which the daemons switch to (they differ from
    /// the host's).
    pub fn frr_owner(&self) -> String {
        let Some(root) = &self.root else { return "frr:frr".into() };
        let id = |file: &str| {
            std::fs::read_to_string(root.join(file))
                .ok()
                .and_then(|t| t.lines().find(|l| l.starts_with("frr:")).map(|l| l.to_string()))
                .and_then(|l| l.split(':').nth(2).map(str::to_string))
        };
        match (id("etc/passwd"), id("etc/group")) {
            (Some(u), Some(g)) => format!("{u}:{g}"),
            _ => "frr:frr".into(),
        }
    }

    /// Writes the wrapper for an instance whose run directory is `run`; `None` for the host's
    /// FRR, whose programs run as they are.
    pub fn write_wrapper(&self, dir: &Path, run: &Path) -> Result<Option<PathBuf>, String> {
        let Some(root) = &self.root else { return Ok(None) };
        let repo = env!("CARGO_MANIFEST_DIR");
        std::fs::create_dir_all(root.join(repo.trim_start_matches('/'))).map_err(|e| e.to_string())?;
        // A slave mount namespace: network namespaces the test adds later (VRFs) still show up
        // under /run/netns, and nothing mounted here ever reaches the host.
        let script = format!(
            "#!/bin/sh\n\
             # FRR {version} from {root} for this lab instance (tests/integration/frr_root.rs).\n\
             exec unshare --mount --propagation slave /bin/sh -ec '\n\
             r={root}\n\
             mount --bind \"$r\" \"$r\"\n\
             for d in /proc /sys /dev /tmp; do mount --rbind \"$d\" \"$r$d\"; done\n\
             mount --bind {repo} \"$r{repo}\"\n\
             mount -t tmpfs -o mode=0755 tmpfs \"$r/run\"\n\
             mkdir -p \"$r/run/frr\" \"$r/run/netns\"\n\
             mount --bind {run} \"$r/run/frr\"\n\
             if [ -d /run/netns ]; then mount --rbind /run/netns \"$r/run/netns\"; fi\n\
             exec chroot \"$r\" \"$@\"' frr-exec \"$@\"\n",
            version = self.version,
            root = root.display(),
            run = run.display(),
        );
        let path = dir.join("frr-exec");
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let out = Command::new("chmod").arg("0755").arg(&path).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Some(path))
    }
}

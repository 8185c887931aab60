//! `ferrolb plan` on hostile manifests: an alias bomb, nesting 10,000 deep, a 200 MiB file, one
//! 50 MiB string and their kin each end in an error naming the file and the limit, at once and
//! with little memory, never in a crash. Each goes through the real binary, whose peak RSS is
//! its own (VmHWM), whatever other tests do meanwhile.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// A manifest file removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("ferrolb-hostile-{}-{name}", std::process::id())))
    }

    fn with_text(name: &str, text: &str) -> Scratch {
        Scratch::with_parts(name, &[(text, 1)])
    }

    /// Each text written as many times as it says, so a big file never sits in this process's
    /// memory (the webhook test measures it meanwhile).
    fn with_parts(name: &str, parts: &[(&str, usize)]) -> Scratch {
        let s = Scratch::new(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&s.0).unwrap());
        for (text, times) in parts {
            for _ in 0..*times {
                f.write_all(text.as_bytes()).unwrap();
            }
        }
        f.flush().unwrap();
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How one `ferrolb plan -f <file>` ended.
struct Ran {
    /// The exit code; None: killed by a signal (a crash, a stack overflow).
    code: Option<i32>,
    stderr: String,
    took: Duration,
    peak_rss_kib: u64,
}

fn plan(file: &Path) -> Ran {
    let start = Instant::now();
    let mut child = Command::new(crate::ferrolb_bin())
        .args(["plan", "-f"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut peak_rss_kib, status) = (0, "/proc/".to_string() + &child.id().to_string() + "/status");
    let exit = loop {
        // VmHWM only grows, so sampling it misses at most the last millisecond.
        peak_rss_kib = peak_rss_kib.max(hwm_kib(&status).unwrap_or(0));
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Ran { code: exit.code(), stderr, took: start.elapsed(), peak_rss_kib }
}

/// VmHWM (the peak RSS) from a /proc/<pid>/status; None once the process is gone.
fn hwm_kib(status: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

fn alias_bomb() -> String {
    let mut yaml = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, name) in
        ["a", "b", "c", "d", "e", "f", "g", "h"].iter().zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        yaml.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
    }
    yaml
}

/// One 1 MiB value, and aliases repeating it 1,500 times (cheap anchors keep serde-saphyr's
/// aliases-per-anchor heuristic quiet).
fn repeated_text() -> String {
    let mut yaml = format!("big: &big \"{}\"\n", "x".repeat(MIB));
    for i in 0..200 {
        yaml.push_str(&format!("k{i}: &a{i} x\n"));
    }
    yaml.push_str(&format!("l: [{}]\n", vec!["*big"; 1500].join(", ")));
    yaml
}

/// Hostile files, each with the words its error must hold.
fn cases() -> Vec<(&'static str, Scratch, String)> {
    let sparse = Scratch::new("200mib.yaml");
    std::fs::File::create(&sparse.0).unwrap().set_len(200 * MIB as u64).unwrap();
    let limit = "more than the 32 MiB ferrolb reads from one manifest";
    vec![
        (
            "an alias bomb",
            Scratch::with_text("bomb.yaml", &alias_bomb()),
            "refused: aliases expand to more than 100000 nodes".into(),
        ),
        (
            "lists nested 10,000 deep",
            Scratch::with_text("deep.yaml", &format!("{}x\n", "- ".repeat(10_000))),
            "refused: nested more than 64 levels deep".into(),
        ),
        (
            "flow lists nested 10,000 deep",
            Scratch::with_text("deep-flow.yaml", &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
            "not valid YAML".into(),
        ),
        (
            "flow maps nested 10,000 deep",
            Scratch::with_text("deep-map.yaml", &format!("{}x{}", "{a: ".repeat(10_000), "}".repeat(10_000))),
            "not valid YAML".into(),
        ),
        ("a 200 MiB file", sparse, format!("200mib.yaml: refused: 209715200 bytes, {limit}")),
        (
            "one 50 MiB string",
            Scratch::with_parts("string.yaml", &[("s: ", 1), (&"x".repeat(MIB), 50), ("\n", 1)]),
            format!("string.yaml: refused: 52428804 bytes, {limit}"),
        ),
        (
            "aliases repeating 1 MiB of text",
            Scratch::with_text("repeat.yaml", &repeated_text()),
            "refused: more than 32 MiB of text in values".into(),
        ),
        (
            "300,001 empty documents",
            Scratch::with_parts("docs.yaml", &[("---\n", 300_001)]),
            "refused: more than 300000 documents".into(),
        ),
    ]
}

#[test]
fn hostile_manifests_end_in_a_clear_error_fast_and_small() {
    let files = cases();
    let mut all: Vec<(&str, &Path, &str)> =
        files.iter().map(|(w, f, e)| (*w, f.0.as_path(), e.as_str())).collect();
    // Not a Scratch: never removed.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        all.push(("a device with no size (/dev/zero)", zero, "refused: more bytes than its size said"));
    }
    for (what, file, expect) in all {
        let ran = plan(file);
        let first = ran.stderr.lines().next().unwrap_or("").chars().take(200).collect::<String>();
        println!("{what}: exit {:?} in {:?}, peak RSS {} KiB: {first}", ran.code, ran.took, ran.peak_rss_kib);
        assert_eq!(ran.code, Some(2), "{what}: {}", ran.stderr);
        assert!(ran.stderr.contains(expect), "{what}: wanted {expect:?} in {}", ran.stderr);
        assert!(
            ran.stderr.contains(&file.display().to_string()),
            "{what}: the file is not named: {}",
            ran.stderr
        );
        assert!(ran.took < Duration::from_secs(5), "{what}: {:?}", ran.took);
        assert!(ran.peak_rss_kib < 96 << 10, "{what}: peak RSS {} KiB", ran.peak_rss_kib);
    }
}

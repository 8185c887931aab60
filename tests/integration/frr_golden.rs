//! Golden frr.conf files, one per scenario in tests/golden/frr/*.yaml (rendered for node1).
//! `UPDATE_GOLDEN=1` rewrites them. With root and FRR, every golden file is also loaded into a
//! real FRR (the host's, or the one `FERROLB_FRR_ROOT` names) and what FRR prints back must be
//! the same structure: on 8.4 the same text, on FRR 10 the same contexts holding the same lines
//! once read in that version's dialect (route-maps first and sorted, defaults unprinted, the
//! short `ebgp-multihop`). That is what lets frr-agent diff and apply without touching
//! unrelated sessions on every version, with one golden file per scenario.

use std::path::PathBuf;

use ferrolb::plan::{self, Inputs, Options};
use frr_sidecar::dialect::{self, Dialect, FrrVersion};
use frr_sidecar::tree::ConfigTree;

use crate::frr_lab::{self, Frr};

fn scenarios() -> Vec<(String, PathBuf)> {
    let dir = crate::repo_root().join("tests/golden/frr");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "scenarios missing in {}", dir.display());
    out
}

fn render(path: &PathBuf) -> String {
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml(&path.display().to_string(), &std::fs::read_to_string(path).unwrap()).unwrap();
    let p = plan::plan(&inputs, &Options { node: Some("node1".into()), ..Default::default() });
    assert!(p.errors.is_empty(), "{}: {:#?}", path.display(), p.errors);
    p.frr_config.expect("a valid plan with --node renders FRR config")
}

#[test]
fn rendered_configs_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (name, yaml) in scenarios() {
        let got = render(&yaml);
        let golden = yaml.with_extension("conf");
        if update {
            std::fs::write(&golden, &got).unwrap();
        } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(got.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale golden files {stale:?}; run UPDATE_GOLDEN=1 cargo test --test integration frr_golden"
    );
}

#[test]
fn passwords_never_leave_plan_unless_asked() {
    let yaml = crate::repo_root().join("tests/golden/frr/bfd-password.yaml");
    let conf = render(&yaml);
    assert!(conf.contains("password REDACTED") && !conf.contains("s3cret"));
}

#[test]
fn frr_prints_back_exactly_what_we_render() {
    require_frr!();
    let mut failures = Vec::new();
    for (name, yaml) in scenarios() {
        let want = render(&yaml);
        let frr = Frr::start("node1").expect("FRR starts");
        let file = frr.file("frr.conf", &want);
        let file = file.to_str().unwrap();
        let dry = frr.vtysh(&["-C", "-f", file]).unwrap();
        if !dry.status.success() {
            failures.push(format!("{name}: vtysh -C rejected it:\n{}", String::from_utf8_lossy(&dry.stdout)));
            continue;
        }
        let applied = frr.vtysh(&["-f", file]).unwrap();
        if !applied.status.success() {
            failures.push(format!("{name}: vtysh -f failed:\n{}", String::from_utf8_lossy(&applied.stdout)));
            continue;
        }
        let running = frr.running_config();
        let version =
            String::from_utf8_lossy(&frr.vtysh(&["-c", "show version"]).unwrap().stdout).into_owned();
        let dialect = Dialect::new(FrrVersion::parse(&version).expect("show version names the version"));
        let read = |text: &str| dialect.normalize(&ConfigTree::parse(text).expect("FRR's output parses"));
        let differences = dialect::differences(&read(&frr_lab::canonical(&want)), &read(&running));
        if !differences.is_empty() {
            failures.push(format!(
                "{name}: FRR {} prints it differently:\n{}\n--- running\n{running}",
                dialect.version,
                differences.join("\n")
            ));
        }
        // On the version the renderer's layout follows, the text itself is identical.
        if dialect.version == dialect::OLDEST && running != frr_lab::canonical(&want) {
            failures.push(format!("{name}: FRR 8.4 prints it in another order:\n{running}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_frr_check_rejects_an_invalid_file() {
    require_frr!();
    let frr = Frr::start("node1").expect("FRR starts");
    let file = frr.file("bad.conf", "router bgp 64512\n neighbor 192.0.2.1 remote-as banana\nexit\n");
    let dry = frr.vtysh(&["-C", "-f", file.to_str().unwrap()]).unwrap();
    assert!(!dry.status.success(), "vtysh -C accepted an invalid file");
}

#[test]
fn the_lab_runs_the_frr_it_was_pointed_at() {
    require_frr!();
    let frr = Frr::start("node1").expect("FRR starts");
    let out = frr.vtysh(&["-c", "show version"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("FRRouting {}", frr.install().label());
    assert!(text.contains(&want), "{want} expected, vtysh says: {text}");
    println!("FRR {} from {:?}", frr.install().version, frr.install().root);
}

//! `frr.logLevel` (the speaker's `--frr-log-level`): every level ferrolb accepts becomes a `log`
//! line a real FRR takes and prints back as rendered; anything else never reaches FRR.

use ferrolb::plan::{self, Inputs, Options};
use frr_sidecar::dialect::{self, Dialect, FrrVersion};
use frr_sidecar::tree::ConfigTree;

use crate::frr_lab::{self, Frr};

/// Every level ferrolb accepts: MetalLB's names and FRR's own.
fn levels() -> Vec<&'static str> {
    let metallb = ferrolb::bgp::frr::METALLB_LOG_LEVELS.into_iter().map(|(m, _)| m);
    metallb.chain(ferrolb::bgp::frr::FRR_LOG_LEVELS).collect()
}

fn render(level: &str) -> String {
    let path = crate::repo_root().join("tests/golden/frr/bfd-password.yaml");
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml("bfd-password", &std::fs::read_to_string(path).unwrap()).unwrap();
    let options = Options {
        node: Some("node1".into()),
        show_secrets: true,
        frr_log_level: Some(level.into()),
        ..Default::default()
    };
    plan::plan(&inputs, &options).frr_config.expect("a valid plan renders FRR config")
}

#[test]
fn every_accepted_level_is_one_frr_takes_and_prints_back() {
    for level in levels() {
        assert!(ferrolb::bgp::frr::parse_log_level(level).is_ok(), "{level}");
    }
    for bad in ["", "INFO", "verbose", "debug2"] {
        assert!(ferrolb::bgp::frr::parse_log_level(bad).is_err(), "{bad}");
    }
    require_frr!();
    let frr = Frr::start("node1").expect("FRR starts");
    let version = String::from_utf8_lossy(&frr.vtysh(&["-c", "show version"]).unwrap().stdout).into_owned();
    let dialect = Dialect::new(FrrVersion::parse(&version).expect("show version names the version"));
    let read = |text: &str| dialect.normalize(&ConfigTree::parse(text).expect("FRR's output parses"));
    let mut failures = Vec::new();
    for level in levels() {
        let want = render(level);
        let file = frr.file(&format!("{level}.conf"), &want);
        let applied = frr.vtysh(&["-f", file.to_str().unwrap()]).unwrap();
        if !applied.status.success() {
            failures.push(format!("{level}: FRR refused it:\n{}", String::from_utf8_lossy(&applied.stdout)));
            continue;
        }
        let running = frr.running_config();
        let differences = dialect::differences(&read(&frr_lab::canonical(&want)), &read(&running));
        if !differences.is_empty() {
            failures.push(format!("{level}: FRR {} prints {}", dialect.version, differences.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! frr-agent: runs beside FRR and applies the speaker's configuration to it.
//!
//! For now the command line offers the offline pieces: `frr-agent diff OLD NEW` prints the vtysh
//! script that turns one configuration into the other. The gRPC service comes next.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use frr_sidecar::diff;
use frr_sidecar::tree::ConfigTree;

fn read(path: &str) -> Result<ConfigTree, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    ConfigTree::parse(&text).map(|t| diff::owned(&t)).map_err(|e| format!("{path}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["diff", old, new] => match (read(old), read(new)) {
            (Ok(o), Ok(n)) => {
                let script = diff::diff(&o, &n);
                print!("{}", script.text);
                eprintln!("frr-agent: {} lines added, {} removed", script.added, script.removed);
                ExitCode::SUCCESS
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("frr-agent: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: frr-agent diff OLD.conf NEW.conf   (the gRPC service is not implemented yet)");
            ExitCode::from(2)
        }
    }
}

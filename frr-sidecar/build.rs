// protox compiles the .proto in Rust, so building needs no protoc on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/frragent/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    println!("cargo:rustc-env=FERROLB_COMMIT={}", commit());
    Ok(())
}

/// The commit every binary says it was built from: `FERROLB_COMMIT` when the builder sets it
/// (a tree without `.git`, e.g. a container build), else git's short hash, else "unknown".
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=FERROLB_COMMIT");
    if let Ok(c) = std::env::var("FERROLB_COMMIT")
        && !c.trim().is_empty()
    {
        return c.trim().to_string();
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Built again when HEAD moves: HEAD itself (a checkout), the branch it names (a commit),
    // and packed refs (a gc).
    for file in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(path) =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]))
    {
        println!("cargo:rerun-if-changed={path}");
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

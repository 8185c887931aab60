//! Command-line wiring: arguments in, what to print and the exit code out. Reading the
//! manifests is `manifests`' work.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api;
use crate::plan::{self, Format, Options};

/// Valid configuration (pending Services included).
const EXIT_OK: u8 = 0;
/// The configuration is invalid.
const EXIT_INVALID: u8 = 1;
/// Usage or read error (clap uses 2 for usage errors too).
const EXIT_READ: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Manifest files or directories (multi-document YAML). Directories are read for *.yaml,
    /// *.yml and *.json files, sorted by name.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Descend into subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Namespace the configuration objects live in.
    #[arg(long, default_value = api::DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
    pub namespace: String,
    /// Serve only Services with this loadBalancerClass (default: only Services without one).
    #[arg(long = "lb-class")]
    pub lb_class: Option<String>,
    /// Also show what this node announces (and why it does not announce the rest).
    #[arg(long)]
    pub node: Option<String>,
    /// Print the node's FRR configuration instead of the plan (needs --node).
    #[arg(long, requires = "node")]
    pub frr: bool,
    /// Show BGP passwords in --frr output instead of REDACTED.
    #[arg(long, requires = "frr")]
    pub show_secrets: bool,
    /// Plan as a speaker started with --ignore-exclude-lb: nodes labelled
    /// node.kubernetes.io/exclude-from-external-load-balancers announce too.
    #[arg(long)]
    pub ignore_exclude_lb: bool,
}

pub fn plan(args: &PlanArgs) -> ExitCode {
    let inputs = match crate::manifests::read(&args.files, args.recursive, &args.namespace) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ferrolb: {e}");
            return ExitCode::from(EXIT_READ);
        }
    };
    for note in &inputs.notes {
        eprintln!("ferrolb: warning: {note}");
    }
    let options = Options {
        lb_class: args.lb_class.clone(),
        node: args.node.clone(),
        show_secrets: args.show_secrets,
        ignore_exclude_lb: args.ignore_exclude_lb,
        ..Default::default()
    };
    let plan = plan::plan(&inputs, &options);
    for note in &plan.notes {
        eprintln!("ferrolb: note: {note}");
    }
    match (&plan.frr_config, args.frr) {
        (Some(conf), true) => print(conf),
        (None, true) => {
            eprintln!("ferrolb: no FRR configuration: the configuration is invalid");
            print(&plan::render(&plan, args.output));
        }
        (_, false) => print(&plan::render(&plan, args.output)),
    }
    ExitCode::from(if plan.is_valid() { EXIT_OK } else { EXIT_INVALID })
}

pub fn speaker(args: crate::speaker::SpeakerArgs) -> ExitCode {
    run_role("ferrolb speaker", crate::speaker::run(args))
}

pub fn controller(args: crate::controller::ControllerArgs) -> ExitCode {
    run_role("ferrolb controller", crate::controller::run(args))
}

/// Worker threads of a role's runtime, whatever the node's core count: the roles wait on the
/// network almost always, and a DaemonSet on 64-core nodes would otherwise run 64 of them.
const WORKERS: usize = 2;

/// Runs a long-lived role on a tokio runtime, logging to stderr.
fn run_role(name: &str, role: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    frr_sidecar::init_logging();
    frr_sidecar::build::log_start(name);
    // One glibc arena for every thread: each arena keeps what its threads freed, and the roles
    // allocate from few threads that rarely contend (10,000 Services: the speaker's RSS 65 ->
    // 60 MiB against two arenas, the cold start no slower).
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1)
    };
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(WORKERS).enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ferrolb: starting the runtime: {e}");
                return ExitCode::from(EXIT_READ);
            }
        };
    match runtime.block_on(role) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrolb: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `ferrolb version`: what `--version` says, for scripts that expect a subcommand.
pub fn version() -> ExitCode {
    print(&format!("ferrolb {}\n", frr_sidecar::build::LONG));
    ExitCode::SUCCESS
}

pub fn crds() -> ExitCode {
    let mut out = String::new();
    for crd in api::all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).expect("CRDs serialise"));
    }
    print(&out);
    ExitCode::from(EXIT_OK)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

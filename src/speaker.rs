//! The speaker role: announces this node's share of the Services.
//!
//! Its objects come from the cluster (watched; only Services the controller gave IPs are
//! announced) or, with `-f`, from a manifest directory re-read when a file changes (the lab
//! demos run it this way). Either way it plans this node's announcements with the pure BGP and
//! layer 2 plans and drives frr-agent and the ARP/NDP responder.
//!
//! Its decisions are made in [`state`], a synchronous state machine that does no I/O: it takes
//! what [`driver`] observed ([`input::Input`]) and answers with what to do
//! ([`effect::Effect`]); the driver gathers the one and carries out the other.

mod assigned;
pub mod bgp_backend;
mod driver;
mod effect;
mod events;
mod extras_guard;
mod failures;
mod fencing;
mod frr_metrics;
mod input;
mod peers;
mod report;
mod say;
mod setup;
mod state;
mod telling;

use std::path::PathBuf;

pub use driver::run;

#[derive(Debug, Clone, clap::Args)]
pub struct SpeakerArgs {
    /// The node this speaker runs on.
    #[arg(long, env = "FERROLB_NODE")]
    pub node: String,
    /// Manifest files or directories to take the objects from instead of a cluster.
    #[arg(long = "manifests", short = 'f')]
    pub manifests: Vec<PathBuf>,
    /// kubeconfig to use when no manifests are given (default: in-cluster, then KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// Namespace of objects without one.
    #[arg(long, default_value = "metallb-system")]
    pub namespace: String,
    #[arg(long)]
    pub lb_class: Option<String>,
    /// frr-agent's unix socket; without it the speaker does not announce over BGP.
    #[arg(long, env = "FRR_AGENT_SOCKET")]
    pub frr_agent_socket: Option<PathBuf>,
    /// Answer ARP/NDP for this node's layer 2 announcements (needs CAP_NET_RAW).
    #[arg(long)]
    pub layer2: bool,
    /// Nodes whose speakers count as alive in layer 2 elections (default: every Node in the
    /// manifests).
    #[arg(long, value_delimiter = ',')]
    pub live_nodes: Option<Vec<String>>,
    /// The speakers, `NODE=IP:PORT`, to form the layer 2 membership with; they are also the
    /// quorum base (the speakers that should exist). Without it every Node in the manifests (or
    /// --live-nodes) counts as alive.
    #[arg(long, value_delimiter = ',')]
    pub members: Option<Vec<String>>,
    /// Like --members, from a file (`NODE=IP:PORT` separated by commas, spaces or newlines)
    /// re-read when it changes, so the quorum base follows nodes added and removed.
    #[arg(long, conflicts_with = "members")]
    pub members_file: Option<PathBuf>,
    /// In a cluster without --members: the label selector of the speaker pods (in the
    /// namespace), watched: their nodes are the speakers that should exist (the quorum base) and
    /// their addresses seed the membership; empty turns membership off.
    #[arg(long, default_value = "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker")]
    pub speaker_selector: String,
    /// Where this speaker's membership listens (`[IP]:PORT` for either family).
    #[arg(long, default_value = "0.0.0.0:7946", value_parser = crate::bind::parse_socket_addr)]
    pub membership_bind: std::net::SocketAddr,
    /// A file holding the key all speakers share; membership traffic is then encrypted,
    /// authenticated and protected from replays. Files beside it named after it with a suffix
    /// (`secretkey.next`: other keys of the mounted Secret) open datagrams too, so a key is
    /// rotated without a gap: add the new key as such a file everywhere, then make it this one.
    #[arg(long)]
    pub membership_secret_file: Option<PathBuf>,
    /// Stop answering ARP/NDP while this speaker sees no strict majority of the speakers that
    /// should exist (with three or more). `--fence=false` keeps answering, so a cut-off node
    /// may answer beside its successor.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fence: bool,
    /// Membership probe period in milliseconds (failure detection takes about three).
    #[arg(long)]
    pub membership_probe_ms: Option<u64>,
    /// When gratuitous ARP/NA repeat after the first (sent at once), in milliseconds after
    /// gaining an IP.
    #[arg(long, value_delimiter = ',', default_values_t = [1100u64, 2200, 3300, 4400])]
    pub gratuitous_ms: Vec<u64>,
    /// Send gratuitous ARP/unsolicited NA for every IP this node announces again every this
    /// many seconds, for switches that age a MAC out of their tables before routers and hosts
    /// stop using it; 0 sends them only on taking an IP over.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub layer2_refresh_seconds: u64,
    /// A node that was NotReady is a full layer 2 candidate again once Ready this many
    /// seconds (counted from its Ready condition's last transition), so a flapping node moves
    /// an IP back at most once per this period. NotReady or out-of-service nodes are demoted
    /// at once. The default outlasts Kubernetes' default node-monitor grace period (50 s) and
    /// period (5 s): a kubelet that dies right after coming back still looks Ready for that
    /// long, and must not win its IPs back meanwhile.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub layer2_ready_settle_seconds: u64,
    /// A speaker whose pod is being replaced (a rollout, a deleted pod: the DaemonSet starts
    /// another on the node) keeps its layer 2 IPs on its node until the new one joins, this
    /// many seconds at most, instead of moving them away and back (each move resets the
    /// connections in flight). Nobody answers ARP/NDP for them meanwhile: clients that know the
    /// node's MAC go on reaching it, new ones wait. 0: taken over at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub layer2_restart_hold_seconds: u64,
    /// Interface name patterns (regexes) never answered on; replaces the default list.
    #[arg(long, value_delimiter = ',')]
    pub exclude_interfaces: Option<Vec<String>>,
    /// One Apply to FRR may begin this many milliseconds after the last ended at the soonest: a
    /// change after a quiet spell goes at once, the changes of a burst go together.
    #[arg(long, default_value_t = 50)]
    pub coalesce_ms: u64,
    /// Where Prometheus scrapes `/metrics` (plain HTTP unless --metrics-secure, on the host
    /// network); port 0 turns it off. `[::]` listens on both families; brackets work around IPv4 addresses too.
    #[arg(long, default_value = "[::]:7472", value_parser = crate::bind::parse_socket_addr)]
    pub metrics_bind: std::net::SocketAddr,
    #[command(flatten)]
    pub metrics_security: crate::metrics_server::MetricsSecurityArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Announce from this node even when it carries the label
    /// node.kubernetes.io/exclude-from-external-load-balancers (MetalLB's flag). Give every
    /// speaker the same: layer 2 elections must see the same candidates everywhere.
    #[arg(long)]
    pub ignore_exclude_lb: bool,
    /// FRR's `log` level: all, debug, info, warn, error, none (mapped as MetalLB maps them) or
    /// one of FRR's own (emergencies … debugging).
    #[arg(long, default_value = "info", value_parser = crate::bgp::frr::parse_log_level)]
    pub frr_log_level: String,
    /// How often the manifests are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rescan_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::SpeakerArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        speaker: SpeakerArgs,
    }

    fn parse(args: &[&str]) -> Result<SpeakerArgs, clap::Error> {
        Command::try_parse_from(["speaker", "--node", "node1"].iter().chain(args)).map(|c| c.speaker)
    }

    #[test]
    fn the_key_file_seals_and_its_suffixed_siblings_only_open() {
        let dir = std::env::temp_dir().join(format!("ferrolb-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, key) in
            [("secretkey", "now"), ("secretkey.next", "next"), ("other", "x"), ("secretkey.empty", "")]
        {
            std::fs::write(dir.join(name), key).unwrap();
        }
        let keys = super::setup::membership_keys(&dir.join("secretkey"));
        std::fs::write(dir.join("secretkey"), "").unwrap();
        let empty = super::setup::membership_keys(&dir.join("secretkey"));
        let missing = super::setup::membership_keys(&dir.join("nothing"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(keys.unwrap(), [b"now".to_vec(), b"next".to_vec()]);
        assert!(empty.unwrap_err().contains("is empty"));
        assert!(missing.unwrap_err().contains("nothing"));
    }

    #[test]
    fn fencing_is_on_unless_turned_off_as_the_chart_spells_it() {
        assert!(parse(&[]).unwrap().fence);
        assert!(parse(&["--fence=true"]).unwrap().fence);
        assert!(!parse(&["--fence=false"]).unwrap().fence);
        assert!(parse(&["--fence=maybe"]).is_err());
    }

    #[test]
    fn frr_log_levels_are_checked_before_they_reach_frr() {
        assert_eq!(parse(&[]).unwrap().frr_log_level, "info");
        assert_eq!(parse(&["--frr-log-level", "warnings"]).unwrap().frr_log_level, "warnings");
        let e = parse(&["--frr-log-level", "loud"]).err().unwrap().to_string();
        assert!(e.contains("\"loud\" is not a log level") && e.contains("debugging"), "{e}");
    }

    #[test]
    fn a_members_list_and_a_members_file_exclude_each_other() {
        let both = parse(&["--members", "node1=192.0.2.11:7946", "--members-file", "/m"]);
        assert!(both.is_err());
        assert!(parse(&["--members-file", "/m"]).unwrap().members_file.is_some());
    }
}

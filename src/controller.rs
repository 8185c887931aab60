//! The controller role: gives LoadBalancer Services their IPs and writes the result back.
//!
//! Its decisions are a state machine ([`state::Controller`], one pass in [`pass`]) fed with
//! what happens and answering with what to do ([`effect`]); the [`driver`] does the I/O.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

mod background;
mod driver;
mod effect;
mod pass;
mod state;
mod status;
mod writes;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use crate::k8s::lease::LeaseLock;
use crate::k8s::{self, cache::ClusterCache};
use crate::plan::Options;

#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// kubeconfig to use (default: in-cluster, then KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace holding the configuration kinds.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "metallb-system")]
    pub namespace: String,
    /// The loadBalancerClass to serve; without it, Services without a class. Two installs of
    /// different classes must not share a pool that both assign from: each counts only its own
    /// Services, so both would hand out the same address (as with MetalLB).
    #[arg(long)]
    pub lb_class: Option<String>,
    /// Wait this many milliseconds after a change before deciding, to decide a burst together.
    /// 0 (the default): at once. Bursts batch anyway, as what arrives while a pass writes is
    /// decided by the next, and a pass costs what changed; a wait only delays a new Service
    /// (20 ms added 12-13 ms to churn p50 beside a bare client's, at 1,000 and 10,000 Services).
    #[arg(long, default_value_t = 0)]
    pub settle_ms: u64,
    /// Take part in leader election (a Lease named ferrolb-controller), so replicas are safe.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 6)]
    pub lease_seconds: u64,
    /// This replica's name in the lease (default: POD_NAME, then HOSTNAME). A restarted
    /// container keeps its pod's name and so takes its own lease back at once.
    #[arg(long)]
    pub identity: Option<String>,
    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
    /// Where Prometheus scrapes `/metrics` (plain HTTP unless --metrics-secure); port 0 turns it off. `[::]` listens
    /// on both families; brackets work around IPv4 addresses too.
    #[arg(long, default_value = "[::]:7472", value_parser = crate::bind::parse_socket_addr)]
    pub metrics_bind: std::net::SocketAddr,
    #[command(flatten)]
    pub metrics_security: crate::metrics_server::MetricsSecurityArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// The Secret (in the namespace) holding the speakers' membership key: made with a fresh
    /// key whenever it is missing (at start and every minute, so deleting it rotates the key).
    /// Empty: none is made.
    #[arg(long, default_value = "")]
    pub memberlist_secret: String,
}

/// API writes in flight at once.
pub(crate) const WRITERS: usize = 16;

pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let tls = args.tls.policy()?;
    let client = k8s::client(args.kubeconfig.as_deref()).await.map_err(|e| e.to_string())?;
    let names = crate::metrics_server::names_for(args.metrics_bind);
    let mode = crate::metrics_server::mode(&args.metrics_security, &tls, Some(&client), names).await?;
    crate::metrics_server::start(Some(args.metrics_bind).filter(|b| b.port() != 0), mode);
    // A standby keeps its cache warm, so taking over costs only the lease.
    let cache = Arc::new(ClusterCache::start(&client, &args.namespace, crate::k8s::cache::Role::Controller));
    // Ready (leader or standby alike: both serve the webhook) once the cluster is listed and
    // the webhook answers.
    let listed = cache.clone();
    crate::health::register("listed", move || {
        if listed.is_ready() { Ok(()) } else { Err("still listing the cluster".into()) }
    });
    let webhook = (args.webhook.webhook_port != 0).then(|| start_webhook(&client, &args, tls, &cache));
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "ferrolb".into())
    });
    let lock = args.leader_elect.then(|| {
        LeaseLock::new(
            client.clone(),
            &args.namespace,
            "ferrolb-controller",
            &identity,
            Duration::from_secs(args.lease_seconds),
        )
    });
    let settings = state::Settings {
        options: Options { lb_class: args.lb_class.clone(), ..Default::default() },
        settle: Duration::from_millis(args.settle_ms),
    };
    let controller = state::Controller::new(cache.clone(), settings, std::time::Instant::now());
    let setup = driver::Setup {
        client,
        namespace: args.namespace.clone(),
        identity,
        memberlist_secret: args.memberlist_secret.clone(),
        cache,
        lock,
        webhook,
    };
    driver::run(setup, controller).await
}

/// Serves admission and conversion from this replica's cache (standbys too: it only reads).
fn start_webhook(
    client: &Client,
    args: &ControllerArgs,
    tls: crate::tls::TlsPolicy,
    cache: &Arc<ClusterCache>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let (reader, lister) = (cache.clone(), client.clone());
    let current: crate::webhook::Current = Arc::new(move || {
        let (cache, client) = (reader.clone(), lister.clone());
        Box::pin(async move {
            if !cache.is_ready() {
                return Err("still listing Nodes and Namespaces; retry in a moment".into());
            }
            crate::k8s::cache::live_objects(&client, &cache).await.map_err(|e| e.to_string())
        })
    });
    let (namespace, webhook) = (args.namespace.clone(), args.webhook.clone());
    tokio::spawn(crate::webhook::run(client.clone(), namespace, webhook, tls, current))
}

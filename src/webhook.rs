//! The webhook role, served by every controller replica (a standby answers as well as the
//! leader: admission only reads). Validation and conversion are pure (`admission`,
//! `conversion`); this file keeps the certificate current and serves them.

pub mod admission;
pub mod conversion;
pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::k8s::webhook_cert;
use crate::tls::{CertSlot, cert};
pub use server::Current;

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS port of the validating and conversion webhooks; 0 turns them off.
    #[arg(long, default_value_t = 9443)]
    pub webhook_port: u16,
    /// Address the webhook listens on (`::`: both families).
    #[arg(long, default_value = "::")]
    pub webhook_address: IpAddr,
    /// The Service the API server reaches the webhook through (names in the certificate).
    #[arg(long, default_value = "ferrolb-webhook-service")]
    pub webhook_service: String,
    /// The Secret ferrolb keeps the webhook certificate in.
    #[arg(long, default_value = "ferrolb-webhook-cert")]
    pub webhook_secret: String,
    /// The ValidatingWebhookConfiguration that gets the CA bundle.
    #[arg(long, default_value = "ferrolb-webhook-configuration")]
    pub webhook_configuration: String,
    /// More names (DNS or IP) the certificate must be valid for.
    #[arg(long)]
    pub webhook_host: Vec<String>,
    /// Serve tls.crt/tls.key from this directory (cert-manager) instead of issuing our own;
    /// the CA bundle is then cert-manager's to inject.
    #[arg(long)]
    pub webhook_cert_dir: Option<PathBuf>,
}

/// How often the certificate is checked (renewal, a bundle wiped by `helm upgrade`, new files).
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Serves until an error makes serving impossible (the port is taken), with the process's TLS
/// versions and suites.
pub async fn run(
    client: Client,
    namespace: String,
    args: WebhookArgs,
    tls: crate::tls::TlsPolicy,
    current: Current,
) -> Result<(), String> {
    let serving = crate::health::Flag::new("webhook", "no serving certificate yet");
    let slot = Arc::new(CertSlot::default());
    let config = tls.server_config(slot.clone())?;
    tracing::info!(%tls, "webhook TLS");
    let bind = SocketAddr::new(args.webhook_address, args.webhook_port);
    let service =
        webhook_cert::WebhookService { namespace: namespace.clone(), name: args.webhook_service.clone() };
    match args.webhook_cert_dir.clone() {
        Some(dir) => {
            let (client, configuration) = (client.clone(), args.webhook_configuration.clone());
            let ca = load_files(&dir, &slot).await?;
            publish_files_ca(&client, &configuration, ca.as_deref(), &service).await;
            let slot = slot.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    match load_files(&dir, &slot).await {
                        Ok(ca) => publish_files_ca(&client, &configuration, ca.as_deref(), &service).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook certificate files; serving the previous ones")
                        }
                    }
                }
            });
        }
        None => {
            let names = names(&args, &namespace);
            // The first certificate before the port opens, so the first handshake succeeds.
            let mut served = loop {
                match keep_certificate(&client, &service, &args, &names, &slot, None).await {
                    Ok(c) => break c,
                    Err(e) => tracing::warn!(error = %e, "webhook certificate; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            let (client, slot) = (client.clone(), slot.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    match keep_certificate(&client, &service, &args, &names, &slot, Some(&served)).await {
                        Ok(c) => served = c,
                        Err(e) => tracing::warn!(error = %e, "webhook certificate"),
                    }
                }
            });
        }
    }
    server::serve(bind, config, current, || serving.set(Ok(()))).await
}

fn names(args: &WebhookArgs, ns: &str) -> Vec<String> {
    let svc = &args.webhook_service;
    let mut names = vec![
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
        format!("{svc}.{ns}"),
        svc.clone(),
    ];
    names.extend(args.webhook_host.iter().cloned());
    names
}

/// Makes sure the Secret holds a certificate for `names` that is not due for renewal, serves
/// it, and publishes its CA bundle. Returns the certificate now served.
async fn keep_certificate(
    client: &Client,
    service: &webhook_cert::WebhookService,
    args: &WebhookArgs,
    names: &[String],
    slot: &CertSlot,
    served: Option<&cert::ServingCert>,
) -> Result<cert::ServingCert, String> {
    let (now, ns) = (time::OffsetDateTime::now_utc(), service.namespace.as_str());
    let chosen = loop {
        let stored = webhook_cert::read(client, ns, &args.webhook_secret).await.map_err(|e| e.to_string())?;
        let (current, stored_names, secret) = match stored {
            Some(s) => (s.cert, s.names, Some(s.secret)),
            None => (None, vec![], None),
        };
        let fits = |c: &&cert::ServingCert| !cert::needs_issue(Some(c), stored_names == names, now);
        if let Some(c) = current.as_ref().filter(fits) {
            break c.clone();
        }
        let fresh = cert::issue(names, current.as_ref(), now).map_err(|e| e.to_string())?;
        if webhook_cert::write(client, ns, &args.webhook_secret, &fresh, names, secret)
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::info!(secret = %args.webhook_secret, not_after = fresh.not_after, "issued a webhook certificate");
            break fresh;
        }
        // Another replica renewed at the same moment: take theirs.
    };
    if served != Some(&chosen) {
        slot.set_pem(&chosen.cert_pem, &chosen.key_pem)?;
    }
    webhook_cert::publish_ca_bundle(client, &args.webhook_configuration, &chosen.ca_bundle_pem, service)
        .await
        .map_err(|e| e.to_string())?;
    Ok(chosen)
}

/// Serves tls.crt/tls.key from `dir`; returns ca.crt when cert-manager wrote one.
async fn load_files(dir: &std::path::Path, slot: &CertSlot) -> Result<Option<String>, String> {
    slot.load_dir(dir).await?;
    Ok(crate::tls::read_in(dir, "ca.crt").await.ok().filter(|c| !c.trim().is_empty()))
}

/// cert-manager's CA goes where ours would: its cainjector cannot reach the CRD in crds/.
async fn publish_files_ca(
    client: &Client,
    configuration: &str,
    ca: Option<&str>,
    service: &webhook_cert::WebhookService,
) {
    let Some(ca) = ca else { return };
    if let Err(e) = webhook_cert::publish_ca_bundle(client, configuration, ca, service).await {
        tracing::warn!(error = %e, "publishing cert-manager's CA bundle");
    }
}

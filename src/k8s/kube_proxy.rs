//! kube-proxy's configuration as the cluster publishes it (see plan::kube_proxy), read for the
//! controller: at start and every half minute, since nothing announces a change to it and the
//! chart grants a `get` of that one ConfigMap only.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::plan::kube_proxy::{CONFIG_KEY, CONFIG_MAP, Finding, assess};

const EVERY: Duration = Duration::from_secs(30);

/// What is known of kube-proxy, kept current; None while its configuration cannot be read
/// (not published, not readable, not understood), each reason logged once.
pub fn watch(client: Client) -> watch::Receiver<Option<Finding>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let api: Api<ConfigMap> = Api::namespaced(client, CONFIG_MAP.0);
        let mut said = String::new();
        loop {
            let (finding, why) = match api.get_opt(CONFIG_MAP.1).await {
                Ok(Some(cm)) => match cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) {
                    Some(text) => match assess(text) {
                        Ok(f) => (Some(f), String::new()),
                        Err(e) => (None, e),
                    },
                    None => (None, format!("{}/{} has no {CONFIG_KEY}", CONFIG_MAP.0, CONFIG_MAP.1)),
                },
                Ok(None) => (None, format!("no ConfigMap {}/{}", CONFIG_MAP.0, CONFIG_MAP.1)),
                Err(e) => (None, format!("reading ConfigMap {}/{}: {e}", CONFIG_MAP.0, CONFIG_MAP.1)),
            };
            if why != said && !why.is_empty() {
                tracing::info!(reason = %why, "kube-proxy's configuration unknown; its ARP behaviour is not checked");
            }
            said = why;
            tx.send_if_modified(|now| {
                let changed = *now != finding;
                *now = finding;
                changed
            });
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
    rx
}

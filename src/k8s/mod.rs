//! kube glue only: clients, caches of the cluster's objects kept current by watches, and the
//! writes the roles make. No decisions are taken here.

pub mod authz;
pub mod cache;
mod changes;
pub mod config_state;
pub mod events;
pub mod kube_proxy;
pub mod lease;
pub mod memberlist_key;
pub mod node_status;
pub mod owner;
pub mod trim;
pub mod webhook_cert;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("reading kubeconfig {0}: {1}")]
    Kubeconfig(String, String),
    #[error("no cluster configuration (in-cluster or KUBECONFIG): {0}")]
    Infer(String),
    #[error("building the API client: {0}")]
    Client(String),
    #[error("{action} {object}: {message}")]
    Api { action: &'static str, object: String, message: String },
}

/// Turns a kube error into [`K8sError::Api`] saying what was being done to which object.
pub fn api_error(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> K8sError {
    let object = object.into();
    move |e| K8sError::Api { action, object, message: e.to_string() }
}

/// A client for the cluster: from `kubeconfig` when given, else in-cluster or `KUBECONFIG`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, K8sError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Kubeconfig(path.display().to_string(), e.to_string()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| K8sError::Kubeconfig(path.display().to_string(), e.to_string()))?
        }
        None => Config::infer().await.map_err(|e| K8sError::Infer(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| K8sError::Client(e.to_string()))
}

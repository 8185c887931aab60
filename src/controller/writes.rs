//! The controller's writes to the API server, and the lease that lets it make them.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use super::effect::Input;
use crate::api::{IPAddressPool, IPAddressPoolStatus};
use crate::k8s::lease::LeaseLock;
use crate::k8s::{self, K8sError};
use crate::plan::writeback::{Change, POOL_ANNOTATION};

/// A Service's ingress IPs and pool annotation, as `change` has them.
pub async fn service(client: &Client, svc: &Service, change: &Change) -> Result<(), K8sError> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let (ingress, pool) = match change {
        Change::Assign { ips, pool, .. } => {
            (json!(ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()), json!(pool))
        }
        Change::Clear { .. } => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let fail = |action: &'static str| k8s::api_error(action, format!("Service {ns}/{name}"));
    // One call for both: a Service's status update keeps everything but its spec (the API
    // server's Service status strategy), so the pool annotation rides along and a cold start
    // makes one write per Service, as a bare client would. Should an API server drop it, the
    // annotation is written on its own.
    let written = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {POOL_ANNOTATION: pool}},
                "status": {"loadBalancer": {"ingress": ingress}},
            })),
        )
        .await
        .map_err(fail("writing the status of"))?;
    let landed = written.metadata.annotations.as_ref().and_then(|a| a.get(POOL_ANNOTATION)).map(|p| json!(p));
    if landed.unwrap_or(serde_json::Value::Null) != pool {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {POOL_ANNOTATION: pool}}})),
        )
        .await
        .map_err(fail("annotating"))?;
    }
    Ok(())
}

/// The address counts of these pools; a failure is logged, and written again by a later pass
/// (the pool's status still differs then).
pub async fn pool_counts(client: &Client, ns: &str, pools: &[(String, IPAddressPoolStatus)]) {
    let api: Api<IPAddressPool> = Api::namespaced(client.clone(), ns);
    for (pool, want) in pools {
        if let Err(e) =
            api.patch_status(pool, &PatchParams::default(), &Patch::Merge(json!({"status": want}))).await
        {
            tracing::warn!(%pool, error = %e, "writing pool counts");
        }
    }
}

/// Takes part in the election: says [`Input::Elected`] once this replica holds the lease, then
/// renews it, and says [`Input::LeaseLost`] when it could not be renewed in time.
pub fn leadership(lock: LeaseLock) -> (mpsc::Receiver<Input>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(async move {
        loop {
            match lock.try_hold().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(lock.duration / 6).await;
        }
        if tx.send(Input::Elected).await.is_ok() {
            keep_leading(&lock).await;
            let _ = tx.send(Input::LeaseLost).await;
        }
    });
    (rx, task)
}

/// Renews the lease a few times per lease duration; returns when it could not be renewed in
/// time (so another replica may hold it now).
async fn keep_leading(lock: &LeaseLock) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lock.duration / 3).await;
        match lock.try_hold().await {
            Ok(true) => last = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!("the leader lease was taken over");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader lease"),
        }
        // Stop before the lease can have run out on the server.
        if last.elapsed() > lock.duration * 2 / 3 {
            tracing::error!("could not renew the leader lease in time");
            return;
        }
    }
}

/// Makes the membership key's Secret whenever it is missing, while this replica runs.
pub fn keep_memberlist_key(client: &Client, ns: &str, name: &str) {
    if name.is_empty() {
        return;
    }
    let (client, ns, name) = (client.clone(), ns.to_string(), name.to_string());
    tokio::spawn(async move {
        loop {
            let again = match k8s::memberlist_key::ensure(&client, &ns, &name).await {
                Ok(made) => {
                    if made {
                        tracing::info!(secret = %name, "made the speakers' membership key");
                    }
                    Duration::from_secs(60)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "making the speakers' membership key; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::time::sleep(again).await;
        }
    });
}

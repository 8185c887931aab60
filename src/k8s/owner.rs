//! Whether a pod's DaemonSet is gone or going: a speaker stopping then leaves for good (`helm
//! uninstall`, `kubectl delete daemonset`) rather than being replaced by its successor.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

use super::{K8sError, api_error};

/// True when `pod`'s owning DaemonSet no longer exists or is being deleted, or when the pod's
/// own credentials no longer open the API; false when the DaemonSet stays, or the pod has none.
pub async fn daemonset_leaving(client: &Client, namespace: &str, pod: &str) -> Result<bool, K8sError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = match revoked(pods.get_opt(pod).await) {
        Revoked::No(got) => got.map_err(api_error("reading", format!("pod {namespace}/{pod}")))?,
        Revoked::Yes => return Ok(true),
    };
    let Some(pod) = pod else { return Ok(false) };
    let owners = pod.metadata.owner_references.unwrap_or_default();
    let Some(owner) = owners.iter().find(|o| o.kind == "DaemonSet") else { return Ok(false) };
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let set = match revoked(sets.get_opt(&owner.name).await) {
        Revoked::No(got) => {
            got.map_err(api_error("reading", format!("daemonset {namespace}/{}", owner.name)))?
        }
        Revoked::Yes => return Ok(true),
    };
    // A DaemonSet of the same name made since (a reinstall) is not this pod's.
    Ok(match set {
        None => true,
        Some(set) => {
            set.metadata.deletion_timestamp.is_some() || set.metadata.uid.as_deref() != Some(&owner.uid)
        }
    })
}

enum Revoked<T> {
    Yes,
    No(Result<T, kube::Error>),
}

/// `helm uninstall` deletes the speakers' Role, RoleBinding and ServiceAccount right after
/// their DaemonSet, while the pods are still being stopped: a speaker asking then is refused
/// (403) or no longer known (401). Either means the install is going away.
fn revoked<T>(got: Result<T, kube::Error>) -> Revoked<T> {
    match got {
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => Revoked::Yes,
        other => Revoked::No(other),
    }
}

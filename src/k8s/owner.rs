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
    let pod = match read(pods.get_opt(pod).await, || format!("pod {namespace}/{pod}"))? {
        Read::Revoked => return Ok(true),
        Read::Gone => return Ok(false),
        Read::Found(pod) => pod,
    };
    let owners = pod.metadata.owner_references.unwrap_or_default();
    let Some(owner) = owners.iter().find(|o| o.kind == "DaemonSet") else { return Ok(false) };
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let what = || format!("daemonset {namespace}/{}", owner.name);
    Ok(match read(sets.get_opt(&owner.name).await, what)? {
        Read::Revoked | Read::Gone => true,
        // A DaemonSet of the same name made since (a reinstall) is not this pod's.
        Read::Found(set) => {
            set.metadata.deletion_timestamp.is_some() || set.metadata.uid.as_deref() != Some(&owner.uid)
        }
    })
}

/// What a GET of one object gave.
enum Read<T> {
    /// The asking pod's credentials no longer open the API.
    Revoked,
    Gone,
    Found(T),
}

/// `helm uninstall` deletes the speakers' Role, RoleBinding and ServiceAccount right after
/// their DaemonSet, while the pods are still being stopped: a speaker asking then is refused
/// (403) or no longer known (401). Either means the install is going away.
fn read<T>(got: Result<Option<T>, kube::Error>, what: impl FnOnce() -> String) -> Result<Read<T>, K8sError> {
    match got {
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => Ok(Read::Revoked),
        Err(e) => Err(api_error("reading", what())(e)),
        Ok(None) => Ok(Read::Gone),
        Ok(Some(found)) => Ok(Read::Found(found)),
    }
}

//! The speakers that should exist, and where to reach them: the quorum base and the seeds of the
//! layer 2 membership. In a cluster they are the speaker pods (watched, so the set follows the
//! DaemonSet as nodes come and go); offline, the `--members` list or a `--members-file` re-read
//! when it changes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::l2::membership::{FORMAT_LABEL, WIRE_FORMAT, parse_seeds};
use crate::l2::quorum::Expected;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// Nodes whose speakers should exist, with when each started where that matters.
    pub expected: Expected,
    /// (node, membership address) of the other speakers that can be reached yet.
    pub seeds: Vec<(String, SocketAddr)>,
    /// Nodes whose speaker is Ready and says it speaks another membership format (or nothing:
    /// a build from before the label), while this speaker's pod names its own: mid-rollout
    /// between builds that cannot hear each other. Empty where pods carry no label at all
    /// (manifests of one's own), so a speaker there never takes a silent one for another build.
    pub other_format: std::collections::BTreeSet<String>,
    /// Nodes whose speaker pod is being deleted while a DaemonSet owns it: another one will
    /// start on the node ([`crate::l2::restart_hold`]).
    pub replacing: std::collections::BTreeSet<String>,
}

pub enum Source {
    /// `--members`: fixed for the life of the process.
    Listed(Vec<String>),
    /// `--members-file`: `NODE=IP:PORT` entries separated by commas, spaces or newlines.
    File(PathBuf),
    /// The speaker pods matching `selector` in `namespace`.
    Pods { client: kube::Client, namespace: String, selector: String },
}

/// The peers from `NODE=IP:PORT` entries.
pub fn from_members(members: &[String]) -> Result<Peers, String> {
    let seeds = parse_seeds(members)?;
    Ok(Peers { expected: seeds.iter().map(|(n, _)| (n.clone(), None)).collect(), seeds, ..Peers::default() })
}

fn read_file(path: &std::path::Path) -> Result<Peers, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries: Vec<String> = text
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    from_members(&entries).map_err(|e| format!("{}: {e}", path.display()))
}

/// The peers from the speaker pods. A pod is expected while it runs (phase Running, or Unknown
/// while its node is unreachable) and is not being deleted (a deleted pod's speaker leaves the
/// membership on SIGTERM); a pending one has not started a speaker yet. Its containers' start
/// time lets a speaker that is still starting join before it counts. Host network, so its pod
/// IP is its node's.
pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>, me: &str, port: u16) -> Peers {
    let mut peers = Peers::default();
    let mut speaks_other = Vec::new();
    let mut labelled_here = false;
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let status = pod.status.as_ref();
        if pod.metadata.deletion_timestamp.is_some() {
            if owned_by_daemonset(pod) {
                peers.replacing.insert(node);
            }
            continue;
        }
        let ip: Option<IpAddr> = status.and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip.filter(|_| node != me) {
            peers.seeds.push((node.clone(), SocketAddr::new(ip, port)));
        }
        let phase = status.and_then(|s| s.phase.as_deref());
        let format = pod.metadata.labels.as_ref().and_then(|l| l.get(FORMAT_LABEL));
        if node == me {
            labelled_here = format.is_some_and(|f| f == WIRE_FORMAT);
        } else if format.is_none_or(|f| f != WIRE_FORMAT) && status.is_some_and(ready) {
            speaks_other.push(node.clone());
        }
        if phase.is_some_and(|p| p == "Running" || p == "Unknown") {
            peers.expected.insert(node, status.and_then(started));
        }
    }
    if labelled_here {
        peers.other_format = speaks_other.into_iter().collect();
    }
    peers.seeds.sort();
    peers.seeds.dedup();
    peers
}

fn owned_by_daemonset(pod: &Pod) -> bool {
    let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
    owners.iter().any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
}

/// Whether the kubelet says the pod is Ready: a speaker of another build that stopped (its node
/// dead) is not one to defer to.
fn ready(status: &k8s_openapi::api::core::v1::PodStatus) -> bool {
    let conditions = status.conditions.as_deref().unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// When the pod's containers last (re)started: the latest running container's start time.
fn started(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<SystemTime> {
    let containers = status.container_statuses.as_ref()?;
    containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| SystemTime::from(t.0))
        .max()
}

/// Starts following `source`; returns once the first set is known (for pods: listed once).
pub async fn start(source: Source, me: &str, port: u16) -> Result<watch::Receiver<Peers>, String> {
    match source {
        Source::Listed(members) => {
            let (tx, rx) = watch::channel(from_members(&members)?);
            // Never changes, but a dropped sender would read as the list having stopped.
            tokio::spawn(async move { tx.closed().await });
            Ok(rx)
        }
        Source::File(path) => {
            let (tx, rx) = watch::channel(read_file(&path)?);
            tokio::spawn(async move {
                let mut last_error = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match read_file(&path) {
                        Ok(peers) => {
                            last_error = None;
                            tx.send_if_modified(|now| {
                                let changed = *now != peers;
                                *now = peers;
                                changed
                            });
                        }
                        // Logged once per distinct problem; the last good list stays.
                        Err(e) if last_error.as_ref() != Some(&e) => {
                            tracing::error!(error = %e, "reading the members file; keeping the last list");
                            last_error = Some(e);
                        }
                        Err(_) => {}
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            });
            Ok(rx)
        }
        Source::Pods { client, namespace, selector } => {
            let api: kube::Api<Pod> = kube::Api::namespaced(client, &namespace);
            let (store, writer) = reflector::store();
            let config = watcher::Config::default().labels(&selector);
            let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
            let (tx, rx) = watch::channel(Peers::default());
            let publish = tx.clone();
            let mine = me.to_string();
            let reader = store.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, %selector, "watching the speaker pods failed; retrying");
                        continue;
                    }
                    let peers = from_pods(reader.state().iter().map(|p| &**p), &mine, port);
                    publish.send_if_modified(|now| {
                        let changed = *now != peers;
                        *now = peers;
                        changed
                    });
                }
            });
            tracing::info!(%namespace, "waiting for the first listing of the speaker pods");
            store.wait_until_ready().await.map_err(|e| format!("listing the speaker pods: {e}"))?;
            // The listing is in the store: publish it now rather than racing the task to it.
            tx.send_replace(from_pods(store.state().iter().map(|p| &**p), me, port));
            Ok(rx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn running_pods_are_expected_and_seeded_except_this_node() {
        let pods = [
            pod(
                "metadata: {name: s1}\nspec: {nodeName: node1, containers: []}\nstatus: {phase: Running, podIP: 192.0.2.11}",
            ),
            pod(
                "metadata: {name: s2}\nspec: {nodeName: node2, containers: []}\nstatus: {phase: Running, podIP: '2001:db8::12', \
                 containerStatuses: [{name: speaker, image: i, imageID: i, ready: true, restartCount: 0, \
                 state: {running: {startedAt: '2026-01-01T00:00:00Z'}}}]}",
            ),
            // Its node unreachable: the pod may be running on the far side of a partition.
            pod(
                "metadata: {name: s3}\nspec: {nodeName: node3, containers: []}\nstatus: {phase: Unknown, podIP: 192.0.2.13}",
            ),
            // Scheduled, pulling its image: no speaker yet to count, but it can be seeded.
            pod(
                "metadata: {name: s4}\nspec: {nodeName: node4, containers: []}\nstatus: {phase: Pending, podIP: 192.0.2.14}",
            ),
            // Not scheduled: no node.
            pod("metadata: {name: s5}\nspec: {containers: []}\nstatus: {phase: Pending}"),
            // Going away or gone: the DaemonSet no longer wants them.
            pod(
                "metadata: {name: s6, deletionTimestamp: '2026-01-01T00:00:00Z'}\nspec: {nodeName: node6, containers: []}\nstatus: {phase: Running, podIP: 192.0.2.16}",
            ),
            pod("metadata: {name: s7}\nspec: {nodeName: node7, containers: []}\nstatus: {phase: Failed}"),
            // Deleted while the DaemonSet owns it: a successor comes to node8.
            pod(
                "metadata: {name: s8, deletionTimestamp: '2026-01-01T00:00:00Z', ownerReferences: [{apiVersion: apps/v1, \
                 kind: DaemonSet, name: speaker, uid: u, controller: true}]}\nspec: {nodeName: node8, containers: []}\n\
                 status: {phase: Running, podIP: 192.0.2.18}",
            ),
        ];
        let peers = from_pods(&pods, "node1", 7946);
        let started: SystemTime =
            "2026-01-01T00:00:00Z".parse::<k8s_openapi::jiff::Timestamp>().unwrap().into();
        let expected: Expected = [("node1", None), ("node2", Some(started)), ("node3", None)]
            .map(|(n, t)| (n.to_string(), t))
            .into();
        assert_eq!(peers.expected, expected);
        let seeds: Vec<(String, SocketAddr)> =
            [("node2", "[2001:db8::12]:7946"), ("node3", "192.0.2.13:7946"), ("node4", "192.0.2.14:7946")]
                .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
                .into();
        assert_eq!(peers.seeds, seeds);
        assert_eq!(peers.replacing.into_iter().collect::<Vec<_>>(), ["node8"]);
    }

    fn speaker_pod(node: &str, format: Option<&str>, ready: bool) -> Pod {
        let labels = format.map_or(String::new(), |f| format!(", labels: {{{FORMAT_LABEL}: '{f}'}}"));
        pod(&format!(
            "metadata: {{name: s-{node}{labels}}}\nspec: {{nodeName: {node}, containers: []}}\n\
             status: {{phase: Running, conditions: [{{type: Ready, status: '{}'}}]}}",
            if ready { "True" } else { "False" }
        ))
    }

    #[test]
    fn ready_speakers_of_another_format_are_named_only_where_this_pod_names_its_own() {
        let pods = [
            speaker_pod("node1", Some(WIRE_FORMAT), true),
            speaker_pod("node2", Some(WIRE_FORMAT), true),
            speaker_pod("node3", None, true),
            speaker_pod("node4", Some("0"), true),
            // Not Ready (its node dead, or starting): nobody to defer to.
            speaker_pod("node5", None, false),
        ];
        let other: Vec<String> = from_pods(&pods, "node1", 7946).other_format.into_iter().collect();
        assert_eq!(other, ["node3", "node4"]);
        // Pods of one's own manifests, with no label anywhere: nothing is taken for a build.
        let unlabelled = [speaker_pod("node1", None, true), speaker_pod("node2", None, true)];
        assert!(from_pods(&unlabelled, "node1", 7946).other_format.is_empty());
    }

    #[test]
    fn a_members_file_takes_commas_spaces_and_lines() {
        let path = std::env::temp_dir().join(format!("ferrolb-members-{}", std::process::id()));
        std::fs::write(&path, "node1=192.0.2.11:7946,node2=192.0.2.12:7946\n\n  node3=[2001:db8::13]:7946\n")
            .unwrap();
        let peers = read_file(&path).unwrap();
        assert_eq!(peers.expected.len(), 3);
        assert_eq!(peers.seeds[2], ("node3".to_string(), "[2001:db8::13]:7946".parse().unwrap()));
        std::fs::write(&path, "node1=192.0.2.11:7946 node2").unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.contains("\"node2\"") && e.contains(path.to_str().unwrap()), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn members_name_the_expected_nodes() {
        let peers = from_members(&["node2=192.0.2.12:7946".into(), "node1=192.0.2.11:7946".into()]).unwrap();
        assert_eq!(peers.expected.keys().map(String::as_str).collect::<Vec<_>>(), ["node1", "node2"]);
        assert!(from_members(&["node1".into()]).is_err());
    }
}

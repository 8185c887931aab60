//! Which nodes cannot serve layer 2 traffic although their speaker still runs (pure).
//!
//! A speaker that is alive keeps its place in the membership, but its node may be NotReady
//! (the kubelet stopped, the node lifecycle controller gave up on it) or tainted
//! `node.kubernetes.io/out-of-service` (declared dead by its operator): traffic sent to it may
//! go nowhere (MetalLB #3116). Such a node is demoted in the layer 2 election: it wins an IP
//! only where no other candidate is left, so a control plane that marks every node NotReady
//! at once takes nothing down.
//!
//! Going NotReady demotes at once (the lifecycle controller already waited its grace period).
//! Coming back, a node is a full candidate again only after it has been Ready for the settle
//! time, counted from its Ready condition's `lastTransitionTime` (the same on every speaker, so
//! all of them agree): a node flapping Ready/NotReady moves an IP away once and back at most
//! once per settle time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The settle time when none is given (`--layer2-ready-settle-seconds`).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);

/// Nodes demoted now, each with why; and when that may next change by itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unfit {
    pub nodes: BTreeMap<String, String>,
    /// The earliest moment a node's settle time ends: decide again then.
    pub recheck_at: Option<Timestamp>,
}

pub fn unfit(nodes: &[Node], now: Timestamp, settle: Duration) -> Unfit {
    let mut out = Unfit::default();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else { continue };
        match why_unfit(node, now, settle) {
            Verdict::Fit => {}
            Verdict::Unfit(why) => {
                out.nodes.insert(name.to_string(), why);
            }
            Verdict::Settling { why, until } => {
                out.nodes.insert(name.to_string(), why);
                out.recheck_at = Some(out.recheck_at.map_or(until, |t| t.min(until)));
            }
        }
    }
    out
}

enum Verdict {
    Fit,
    Unfit(String),
    Settling { why: String, until: Timestamp },
}

fn why_unfit(node: &Node, now: Timestamp, settle: Duration) -> Verdict {
    let tainted = node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten();
    if tainted.into_iter().any(|t| t.key == OUT_OF_SERVICE_TAINT) {
        return Verdict::Unfit(format!("the node is tainted {OUT_OF_SERVICE_TAINT}"));
    }
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    // No Ready condition (a Node written by hand, `plan` offline): nothing to go by.
    let Some(ready) = conditions.into_iter().find(|c| c.type_ == "Ready") else { return Verdict::Fit };
    let since = ready.last_transition_time.as_ref().map(|t| t.0);
    if ready.status != "True" {
        let reason = ready.reason.as_deref().unwrap_or("no reason given");
        return Verdict::Unfit(format!("the node is NotReady (Ready={}: {reason})", ready.status));
    }
    let Some(since) = since else { return Verdict::Fit };
    let settle = jiff_span(settle);
    let Ok(until) = since.checked_add(settle) else { return Verdict::Fit };
    if now >= until {
        return Verdict::Fit;
    }
    Verdict::Settling {
        why: format!("the node is Ready again since {since}, a full candidate from {until}"),
        until,
    }
}

/// Whether a node is meant to stay: not being deleted, not cordoned, not tainted for removal by
/// the cluster autoscaler or Karpenter.
pub fn staying(node: &Node) -> bool {
    const REMOVAL: [&str; 2] = ["ToBeDeletedByClusterAutoscaler", "karpenter.sh/disrupted"];
    let spec = node.spec.as_ref();
    let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    node.metadata.deletion_timestamp.is_none()
        && !spec.and_then(|s| s.unschedulable).unwrap_or(false)
        && !taints.iter().any(|t| REMOVAL.contains(&t.key.as_str()))
}

fn jiff_span(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: Option<(&str, &str)>, taint: Option<&str>) -> Node {
        let mut v = serde_json::json!({"metadata": {"name": name}});
        if let Some((status, since)) = ready {
            v["status"] = serde_json::json!({"conditions": [
                {"type": "Ready", "status": status, "reason": "KubeletNotReady", "lastTransitionTime": since}
            ]});
        }
        if let Some(key) = taint {
            v["spec"] = serde_json::json!({"taints": [{"key": key, "effect": "NoExecute"}]});
        }
        serde_json::from_value(v).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn notready_and_out_of_service_are_unfit_at_once() {
        let nodes = [
            node("down", Some(("False", "2026-12-06T10:00:00Z")), None),
            node("unknown", Some(("Unknown", "2026-12-06T10:00:00Z")), None),
            node("dead", Some(("True", "2026-12-01T00:00:00Z")), Some(OUT_OF_SERVICE_TAINT)),
            node("fine", Some(("True", "2026-12-01T00:00:00Z")), Some("node.kubernetes.io/unschedulable")),
            node("handwritten", None, None),
        ];
        let u = unfit(&nodes, at("2026-12-06T10:00:01Z"), DEFAULT_SETTLE);
        assert_eq!(u.nodes.keys().collect::<Vec<_>>(), ["dead", "down", "unknown"]);
        assert!(u.nodes["down"].contains("NotReady (Ready=False: KubeletNotReady)"), "{u:?}");
        assert!(u.nodes["dead"].contains(OUT_OF_SERVICE_TAINT));
        assert_eq!(u.recheck_at, None);
    }

    #[test]
    fn a_node_ready_again_waits_out_the_settle_time_and_says_when_to_look_again() {
        let nodes = [
            node("back", Some(("True", "2026-12-06T10:00:00Z")), None),
            node("later", Some(("True", "2026-12-06T10:00:20Z")), None),
        ];
        let settle = Duration::from_secs(30);
        let u = unfit(&nodes, at("2026-12-06T10:00:25Z"), settle);
        assert_eq!(u.nodes.len(), 2);
        assert!(u.nodes["back"].contains("a full candidate from 2026-12-06T10:00:30Z"), "{u:?}");
        assert_eq!(u.recheck_at, Some(at("2026-12-06T10:00:30Z")));
        let u = unfit(&nodes, at("2026-12-06T10:00:30Z"), settle);
        assert_eq!(u.nodes.keys().collect::<Vec<_>>(), ["later"]);
        assert_eq!(u.recheck_at, Some(at("2026-12-06T10:00:50Z")));
        assert_eq!(unfit(&nodes, at("2026-12-06T10:00:50Z"), settle), Unfit::default());
        // No settle: Ready is enough.
        assert_eq!(unfit(&nodes, at("2026-12-06T10:00:21Z"), Duration::ZERO), Unfit::default());
    }

    #[test]
    fn nodes_marked_for_removal_or_cordoned_are_not_staying() {
        assert!(staying(&node("n1", None, None)));
        assert!(staying(&node("n1", None, Some(OUT_OF_SERVICE_TAINT))), "out of service is not removal");
        assert!(!staying(&node("n1", None, Some("ToBeDeletedByClusterAutoscaler"))));
        assert!(!staying(&node("n1", None, Some("karpenter.sh/disrupted"))));
        let mut cordoned = node("n1", None, None);
        cordoned.spec.get_or_insert_default().unschedulable = Some(true);
        assert!(!staying(&cordoned));
        let mut deleted = node("n1", None, None);
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at("2026-01-01T00:00:00Z")));
        assert!(!staying(&deleted));
    }
}

//! BGPPeer between v1beta1 and v1beta2, for the CRD's conversion webhook (pure).
//!
//! v1beta2 is the stored version. Upgrading is lossless. Downgrading is not (v1beta1 has no
//! dynamicASN, interface, vrf, BFD-free timers …), and a client that reads v1beta1 and writes it
//! back must not wipe what it could not see: the v1beta2 spec is kept in an annotation on the
//! way down and restored on the way up, unless the client changed what v1beta1 shows — then
//! its edit wins and the kept fields fill in the rest.

use serde_json::Value;

use crate::api::bgppeer::{v1beta1, v1beta2};

pub const V1BETA1: &str = "metallb.io/v1beta1";
pub const V1BETA2: &str = "metallb.io/v1beta2";
/// Where a downgraded object keeps the v1beta2 spec v1beta1 cannot spell.
pub const KEPT_SPEC: &str = "ferrolb.io/v1beta2-spec";

/// `object` (a BGPPeer in either version) expressed in `desired` api version.
pub fn convert(object: &Value, desired: &str) -> Result<Value, String> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let fail = |e: String| format!("BGPPeer {name:?}: {e}");
    let from = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if from == desired {
        return Ok(object.clone());
    }
    let spec = object.get("spec").cloned().unwrap_or(Value::Object(Default::default()));
    let mut out = object.clone();
    let kept = object.pointer(&format!("/metadata/annotations/{}", KEPT_SPEC.replace('/', "~1"))).cloned();
    let new_spec = match (from, desired) {
        (V1BETA1, V1BETA2) => {
            let old: v1beta1::BGPPeerSpec = typed(spec).map_err(fail)?;
            let kept: Option<v1beta2::BGPPeerSpec> = kept
                .as_ref()
                .and_then(Value::as_str)
                .map(|s| serde_json::from_str(s).map_err(|e| format!("{KEPT_SPEC}: {e}")))
                .transpose()
                .map_err(fail)?;
            set_kept(&mut out, None);
            serde_json::to_value(upgrade(&old, kept)).map_err(|e| fail(e.to_string()))?
        }
        (V1BETA2, V1BETA1) => {
            let new: v1beta2::BGPPeerSpec = typed(spec).map_err(fail)?;
            let down = v1beta1::BGPPeerSpec::downgrade(&new);
            let lossy = down.upgrade() != new;
            let text = serde_json::to_string(&new).map_err(|e| fail(e.to_string()))?;
            set_kept(&mut out, lossy.then_some(text));
            serde_json::to_value(down).map_err(|e| fail(e.to_string()))?
        }
        _ => return Err(fail(format!("cannot convert {from:?} to {desired:?}"))),
    };
    out["spec"] = new_spec;
    out["apiVersion"] = Value::String(desired.to_string());
    Ok(out)
}

fn upgrade(old: &v1beta1::BGPPeerSpec, kept: Option<v1beta2::BGPPeerSpec>) -> v1beta2::BGPPeerSpec {
    let up = old.upgrade();
    let Some(kept) = kept else { return up };
    if v1beta1::BGPPeerSpec::downgrade(&kept) == *old {
        return kept;
    }
    // Edited through v1beta1: its fields win; what it cannot express comes from what was kept,
    // except where the edit now says otherwise (a real peerASN replaces dynamicASN, a real
    // address replaces the interface).
    let peer_asn = up.peer_asn.filter(|asn| *asn != 0);
    let peer_address = up.peer_address.clone().filter(|a| !a.is_empty());
    let peer_asn_now = peer_asn.or(if kept.dynamic_asn.is_some() { None } else { up.peer_asn });
    let peer_address_now =
        peer_address.clone().or(if kept.interface.is_some() { None } else { up.peer_address.clone() });
    v1beta2::BGPPeerSpec {
        dynamic_asn: if peer_asn.is_some() { None } else { kept.dynamic_asn },
        interface: if peer_address.is_some() { None } else { kept.interface },
        peer_asn: peer_asn_now,
        peer_address: peer_address_now,
        local_asn: kept.local_asn,
        connect_time: kept.connect_time,
        password_secret: kept.password_secret,
        enable_graceful_restart: kept.enable_graceful_restart,
        vrf: kept.vrf,
        disable_mp: kept.disable_mp,
        dual_stack_address_family: kept.dual_stack_address_family,
        ..up
    }
}

fn typed<T: serde::de::DeserializeOwned>(spec: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(spec).map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
}

fn set_kept(object: &mut Value, text: Option<String>) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    match text {
        Some(t) => {
            let ann = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = ann.as_object_mut() {
                a.insert(KEPT_SPEC.into(), Value::String(t));
            }
        }
        None => {
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(KEPT_SPEC);
                if a.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A stored v1beta2 object, its spec in the canonical form the API server would keep.
    fn v2(spec: Value) -> Value {
        let spec =
            serde_json::to_value(serde_json::from_value::<v1beta2::BGPPeerSpec>(spec).unwrap()).unwrap();
        json!({"apiVersion": V1BETA2, "kind": "BGPPeer", "metadata": {"name": "tor", "namespace": "metallb-system"}, "spec": spec})
    }

    #[test]
    fn v1beta1_upgrades_and_plain_peers_round_trip_without_a_kept_spec() {
        let old = json!({"apiVersion": V1BETA1, "kind": "BGPPeer", "metadata": {"name": "tor"},
            "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254", "peerPort": 0,
                     "nodeSelectors": [{"matchLabels": {"rack": "a"}}]}});
        let up = convert(&old, V1BETA2).unwrap();
        assert_eq!(up["apiVersion"], V1BETA2);
        assert_eq!(up["spec"]["peerASN"], 64501);
        assert!(up["spec"].get("peerPort").is_none(), "port 0 means the default");
        assert_eq!(up["spec"]["nodeSelectors"][0]["matchLabels"]["rack"], "a");
        let down = convert(&up, V1BETA1).unwrap();
        assert!(down["metadata"].get("annotations").is_none(), "{down}");
        assert_eq!(convert(&down, V1BETA2).unwrap(), up);
    }

    #[test]
    fn what_v1beta1_cannot_spell_survives_a_round_trip() {
        let full = v2(json!({"myASN": 64500, "dynamicASN": "external", "interface": "eth1", "vrf": "red",
            "connectTime": "5s", "enableGracefulRestart": true, "bfdProfile": "fast"}));
        let down = convert(&full, V1BETA1).unwrap();
        assert_eq!(down["spec"]["peerASN"], 0);
        assert_eq!(down["spec"]["peerAddress"], "");
        assert!(down["metadata"]["annotations"][KEPT_SPEC].is_string());
        let back = convert(&down, V1BETA2).unwrap();
        assert_eq!(back, full, "nothing lost, annotation gone");
    }

    #[test]
    fn an_edit_made_through_v1beta1_wins_over_the_kept_spec() {
        let full = v2(json!({"myASN": 64500, "dynamicASN": "external", "interface": "eth1", "vrf": "red"}));
        let mut down = convert(&full, V1BETA1).unwrap();
        down["spec"]["peerASN"] = json!(64999);
        down["spec"]["holdTime"] = json!("9s");
        let back = convert(&down, V1BETA2).unwrap();
        assert_eq!(back["spec"]["peerASN"], 64999);
        assert!(back["spec"].get("dynamicASN").is_none(), "a real ASN replaces dynamicASN");
        assert_eq!(back["spec"]["interface"], "eth1", "still unnumbered: no address was given");
        assert_eq!(back["spec"]["vrf"], "red");
        assert_eq!(back["spec"]["holdTime"], "9s");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_peer_and_field() {
        let bad = json!({"apiVersion": V1BETA1, "kind": "BGPPeer", "metadata": {"name": "tor"},
            "spec": {"myASN": "many", "peerASN": 1, "peerAddress": "192.0.2.1"}});
        let e = convert(&bad, V1BETA2).unwrap_err();
        assert!(e.contains("BGPPeer \"tor\"") && e.contains("spec.myASN"), "{e}");
        assert!(convert(&bad, "metallb.io/v9").is_err());
    }
}

//! The property that no text a user writes escapes its place in frr.conf, checked over the whole
//! path (objects → validation → plan → renderer) for any string in any field that can reach
//! FRR. The unit tests drive it with proptest, `fuzz/fuzz_targets/frr_text.rs` with libFuzzer.
//!
//! For a hostile value put into one field, the outcome must be one of:
//! - a validation error that names that field (the configuration is refused, nothing renders);
//! - a frr.conf whose structure (contexts, and per line its keyword and word count) is the one
//!   the same configuration renders with a benign value there, the value inside its own word.
//!
//! Anything else is an escape: a new line, a new word, a context opened or closed, a line the
//! renderer's own guard had to refuse (validation should never leave that to it), or a panic.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Node, Secret};

use super::{Inputs, Options, plan};

/// A benign value every slot accepts, found nowhere else in the fixture's output.
const MARKER: &str = "zzmark";

/// Every field of the fixture that reaches frr.conf, and some that must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Password,
    SecretPassword,
    Vrf,
    Interface,
    BfdProfile,
    NodeName,
    PeerName,
    Community,
    CommunityAlias,
    HoldTime,
    RouterId,
}

impl Slot {
    pub const ALL: [Slot; 11] = [
        Slot::Password,
        Slot::SecretPassword,
        Slot::Vrf,
        Slot::Interface,
        Slot::BfdProfile,
        Slot::NodeName,
        Slot::PeerName,
        Slot::Community,
        Slot::CommunityAlias,
        Slot::HoldTime,
        Slot::RouterId,
    ];

    /// What the slot holds in the benign rendering: the marker where any word goes, the
    /// fixture's own value where the field is parsed.
    fn benign(self) -> &'static str {
        match self {
            Slot::Community => "65000:1",
            Slot::HoldTime => "9s",
            Slot::RouterId => "192.0.2.11",
            _ => MARKER,
        }
    }

    /// The field a validation error about this slot names.
    fn field(self) -> &'static str {
        match self {
            Slot::Password => "spec.password",
            Slot::SecretPassword => "spec.passwordSecret",
            Slot::Vrf => "spec.vrf",
            Slot::Interface => "spec.interface",
            Slot::BfdProfile => "metadata.name",
            Slot::NodeName => "(none: every node name renders)",
            Slot::PeerName => "(none: peer names never render)",
            Slot::Community => "spec.communities",
            Slot::CommunityAlias => "spec.communities",
            Slot::HoldTime => "spec.holdTime",
            Slot::RouterId => "spec.routerID",
        }
    }
}

const FIXTURE: &str = "\
apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pub}\nspec: {addresses: [198.51.100.0/28, 2001:db8:5::/124]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {communities: [65000:1, gold]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: aliases}\nspec: {communities: [{name: gold, value: '64512:7'}]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100}\n---\n\
apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\n\
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, password: k, vrf: red, bfdProfile: fast, holdTime: 9s, routerID: 192.0.2.11}\n---\n\
apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: link}\nspec: {myASN: 64512, dynamicASN: external, interface: eth1, passwordSecret: {name: pw}, routerID: 192.0.2.11}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer, ipFamilyPolicy: PreferDualStack}\n";

/// The fixture with `value` in `slot`, planned for its node.
fn render(slot: Slot, value: &str) -> (super::Plan, Inputs) {
    let mut i = Inputs::new("metallb-system");
    // The fixture is fixed text: it always reads.
    let _ = i.add_yaml("fixture", FIXTURE);
    let o = &mut i.objects;
    let mut secret_password = MARKER.to_string();
    let mut node = MARKER.to_string();
    match slot {
        Slot::Password => o.peers[0].spec.password = Some(value.into()),
        Slot::SecretPassword => secret_password = value.into(),
        Slot::Vrf => o.peers[0].spec.vrf = Some(value.into()),
        Slot::Interface => o.peers[1].spec.interface = Some(value.into()),
        Slot::BfdProfile => {
            o.bfd_profiles[0].metadata.name = Some(value.into());
            o.peers[0].spec.bfd_profile = Some(value.into());
        }
        Slot::NodeName => node = value.into(),
        Slot::PeerName => o.peers[0].metadata.name = Some(value.into()),
        Slot::Community => o.bgp_advertisements[0].spec.communities[0] = value.into(),
        Slot::CommunityAlias => {
            o.communities[0].spec.communities[0].name = value.into();
            o.bgp_advertisements[0].spec.communities[1] = value.into();
        }
        Slot::HoldTime => o.peers[0].spec.hold_time = Some(value.into()),
        Slot::RouterId => o.peers[0].spec.router_id = Some(value.into()),
    }
    let mut secret = Secret::default();
    secret.metadata.name = Some("pw".into());
    secret.type_ = Some("kubernetes.io/basic-auth".into());
    secret.data = Some([("password".to_string(), ByteString(secret_password.into_bytes()))].into());
    o.secrets.push(secret);
    let mut n = Node::default();
    n.metadata.name = Some(node.clone());
    o.nodes.push(n);
    let options = Options { node: Some(node), show_secrets: true, ..Default::default() };
    (plan(&i, &options), i)
}

/// Per line FRR reads (comments and blanks aside): its context depth, first word and word count.
fn structure(text: &str) -> Vec<(usize, String, usize)> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let words: Vec<&str> = line.split([' ', '\t', '\r']).filter(|w| !w.is_empty()).collect();
        let Some(first) = words.first() else { continue };
        if first.starts_with(['!', '#']) {
            continue;
        }
        if matches!(*first, "exit" | "exit-address-family") {
            depth = depth.saturating_sub(1);
        }
        out.push((depth, first.to_string(), words.len()));
        if matches!(*first, "router" | "address-family" | "route-map" | "bfd" | "profile") {
            depth += 1;
        }
    }
    out
}

/// Ok when `value` in `slot` is refused by name or stays in its word; otherwise what escaped.
pub fn check(slot: Slot, value: &str) -> Result<(), String> {
    // The benign rendering of each slot, made once per process (the fuzz target calls this
    // millions of times).
    static BENIGN: std::sync::LazyLock<Vec<Result<String, String>>> = std::sync::LazyLock::new(|| {
        Slot::ALL
            .iter()
            .map(|slot| {
                let (p, _) = render(*slot, slot.benign());
                p.frr_config.ok_or_else(|| {
                    format!("the benign fixture does not render: {:?} {:?}", p.errors, p.notes)
                })
            })
            .collect()
    });
    let at = Slot::ALL.iter().position(|s| *s == slot).unwrap_or(0);
    let benign_text = BENIGN[at].as_deref().map_err(|e| e.clone())?;
    let (hostile, _) = render(slot, value);
    if let Some(note) = hostile.notes.iter().find(|n| n.contains("could not render")) {
        return Err(format!("{slot:?}: validation let through what the renderer refused: {note}"));
    }
    if !hostile.errors.is_empty() {
        let named = hostile.errors.iter().any(|e| e.field.starts_with(slot.field()));
        // A field that names no object of this slot (a peer's name) may break another rule
        // (duplicate names): an error elsewhere is fine as long as nothing renders.
        if named || hostile.frr_config.is_none() {
            return Ok(());
        }
        return Err(format!("{slot:?}: errors {:?} do not name {}", hostile.errors, slot.field()));
    }
    let Some(text) = hostile.frr_config.as_deref() else {
        return Err(format!("{slot:?}: valid, yet nothing rendered: {:?}", hostile.notes));
    };
    // An empty string is an unset field (MetalLB's meaning): lines go, none is added.
    if !value.is_empty() && structure(text) != structure(benign_text) {
        return Err(format!("{slot:?}: the structure changed:\n{text}"));
    }
    crate::bgp::guard::check(text).map_err(|e| format!("{slot:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_reported_cases_are_refused_by_name() {
        let smuggle = "x\n neighbor 198.51.100.66 remote-as 65666";
        for slot in Slot::ALL {
            assert_eq!(check(slot, smuggle), Ok(()), "{slot:?}");
        }
        let (p, _) = render(Slot::Password, smuggle);
        let e = p.errors.iter().find(|e| e.field == "spec.password").expect("named");
        assert!(!e.message.contains("198.51.100.66"), "the password is never repeated: {e}");
        let (p, _) = render(Slot::SecretPassword, smuggle);
        assert!(p.errors.iter().any(|e| e.field == "spec.passwordSecret" && e.message.contains("\"pw\"")));
        assert!(p.frr_config.is_none(), "an invalid configuration renders nothing");
    }

    #[test]
    fn what_frr_takes_renders_in_place() {
        let (p, _) = render(Slot::Password, "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\"");
        let text = p.frr_config.expect("a printable password is fine");
        assert!(text.contains(" password !#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\"\n"), "{text}");
        let (p, _) = render(Slot::NodeName, "10-0-0-1\nexit");
        assert!(p.frr_config.expect("renders").contains("\nhostname node-10-0-0-1exit\n"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn no_text_in_any_field_escapes_its_slot(
            slot in prop::sample::select(Slot::ALL.to_vec()),
            value in prop_oneof![
                any::<String>(),
                "[ -~]{0,90}",
                prop::collection::vec(prop_oneof![
                    Just("\n".to_string()), Just("\r".to_string()), Just("!".to_string()), Just(" ".to_string()),
                    Just("exit".to_string()), Just("end".to_string()), Just("\"".to_string()), Just("\0".to_string()),
                    Just("router bgp 1".to_string()), Just("é".to_string()), "[a-z0-9:./-]{1,8}",
                ], 0..12).prop_map(|parts| parts.concat()),
            ],
        ) {
            prop_assert_eq!(check(slot, &value), Ok(()));
        }
    }
}

//! kube-proxy in IPVS mode without `strictARP`: the most common layer 2 misconfiguration.
//!
//! In IPVS mode kube-proxy puts every LoadBalancer IP on a dummy interface (`kube-ipvs0`) of
//! every node; unless `strictARP` makes it set `arp_ignore`/`arp_announce`, every node's kernel
//! then answers ARP for every such IP, beside the one node ferrolb elected, and clients reach
//! whichever answered last. MetalLB documents it; ferrolb reads kube-proxy's configuration
//! where the cluster publishes it (the `kube-proxy` ConfigMap kubeadm writes) and says so.

use serde::Deserialize;

/// Where kubeadm publishes kube-proxy's configuration, and its key there.
pub const CONFIG_MAP: (&str, &str) = ("kube-system", "kube-proxy");
pub const CONFIG_KEY: &str = "config.conf";

/// What is known of kube-proxy's ARP behaviour, for the layer 2 user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// True when kube-proxy leaves ARP to ferrolb.
    pub safe: bool,
    pub reason: &'static str,
    pub message: String,
}

pub const NOT_IPVS: &str = "NotIPVS";
pub const STRICT_ARP: &str = "StrictARP";
pub const IPVS_WITHOUT_STRICT_ARP: &str = "IPVSWithoutStrictARP";

#[derive(Deserialize, Default)]
#[serde(default)]
struct KubeProxyConfiguration {
    mode: String,
    ipvs: Ipvs,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ipvs {
    #[serde(rename = "strictARP")]
    strict_arp: bool,
}

/// Reads kube-proxy's `config.conf` (a KubeProxyConfiguration). An error names what could not
/// be read; the caller then says nothing rather than guess.
pub fn assess(config: &str) -> Result<Finding, String> {
    let c: KubeProxyConfiguration = serde_saphyr::from_str(config).map_err(|e| {
        format!("{}/{} {CONFIG_KEY} is not a KubeProxyConfiguration: {e}", CONFIG_MAP.0, CONFIG_MAP.1)
    })?;
    // An empty mode is iptables on Linux (nftables only when asked for).
    Ok(match (c.mode.eq_ignore_ascii_case("ipvs"), c.ipvs.strict_arp) {
        (false, _) => Finding {
            safe: true,
            reason: NOT_IPVS,
            message: format!("kube-proxy runs in {} mode, which answers no ARP", mode_name(&c.mode)),
        },
        (true, true) => Finding {
            safe: true,
            reason: STRICT_ARP,
            message: "kube-proxy runs in IPVS mode with strictARP: only the elected node answers ARP".into(),
        },
        (true, false) => Finding {
            safe: false,
            reason: IPVS_WITHOUT_STRICT_ARP,
            message: format!(
                "kube-proxy runs in IPVS mode with strictARP false, so every node answers ARP for every \
                 LoadBalancer IP and layer 2 traffic reaches whichever node answered last. Fix: set \
                 `ipvs: {{strictARP: true}}` in {CONFIG_KEY} of ConfigMap {}/{} (kubectl -n {} edit \
                 configmap {}), then restart kube-proxy (kubectl -n {} rollout restart daemonset kube-proxy)",
                CONFIG_MAP.0, CONFIG_MAP.1, CONFIG_MAP.0, CONFIG_MAP.1, CONFIG_MAP.0
            ),
        },
    })
}

fn mode_name(mode: &str) -> &str {
    if mode.is_empty() { "iptables (the default)" } else { mode }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvs_without_strict_arp_is_unsafe_and_says_the_fix() {
        let f = assess("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n").unwrap();
        assert!(!f.safe);
        assert_eq!(f.reason, IPVS_WITHOUT_STRICT_ARP);
        assert!(
            f.message.contains("strictARP: true") && f.message.contains("rollout restart"),
            "{}",
            f.message
        );
        // strictARP left out is false too (kube-proxy's default).
        assert!(!assess("mode: \"ipvs\"\n").unwrap().safe);
        assert!(!assess("mode: IPVS\nipvs: {scheduler: rr}\n").unwrap().safe);
    }

    #[test]
    fn strict_arp_or_another_mode_is_safe() {
        assert_eq!(assess("mode: ipvs\nipvs: {strictARP: true}\n").unwrap().reason, STRICT_ARP);
        for text in ["mode: iptables\n", "mode: nftables\nipvs: {strictARP: false}\n", "mode: \"\"\n", "{}\n"]
        {
            let f = assess(text).unwrap();
            assert!(f.safe && f.reason == NOT_IPVS, "{text}: {f:?}");
        }
        assert!(assess("{}\n").unwrap().message.contains("iptables (the default)"));
    }

    #[test]
    fn what_is_not_a_configuration_is_an_error_not_a_guess() {
        for text in ["mode: [ipvs]\n", "- a\n- b\n", "ipvs: {strictARP: maybe}\n"] {
            let e = assess(text).unwrap_err();
            assert!(e.contains("kube-system/kube-proxy config.conf"), "{e}");
        }
    }
}

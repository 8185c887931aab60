//! Prometheus metrics: MetalLB's names where MetalLB has the metric (so its dashboards and
//! alert rules keep working), `ferrolb_` histograms for what MetalLB does not measure.
//!
//! One process-wide set: the roles and the responder count where things happen, without
//! threading a handle through every layer. Served in Prometheus' text format 0.0.4, as MetalLB
//! serves it, so counters keep MetalLB's exact names (see `exposition`).

mod exposition;
pub mod frr;

pub use exposition::CONTENT_TYPE;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnouncedLabels {
    pub ip: String,
    pub node: String,
    pub protocol: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IpLabels {
    pub ip: String,
}

pub struct Metrics {
    registry: Registry,
    pub addresses_total: Family<PoolLabels, Gauge>,
    pub addresses_in_use_total: Family<PoolLabels, Gauge>,
    pub ipv4_addresses_total: Family<PoolLabels, Gauge>,
    pub ipv4_addresses_in_use_total: Family<PoolLabels, Gauge>,
    pub ipv6_addresses_total: Family<PoolLabels, Gauge>,
    pub ipv6_addresses_in_use_total: Family<PoolLabels, Gauge>,
    pub config_loaded: Gauge,
    pub config_stale: Gauge,
    pub k8s_updates: Counter,
    pub k8s_update_errors: Counter,
    pub announced: Family<AnnouncedLabels, Gauge>,
    pub layer2_requests: Family<IpLabels, Counter>,
    pub layer2_responses: Family<IpLabels, Counter>,
    pub layer2_gratuitous: Family<IpLabels, Counter>,
    pub allocation_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub layer2_takeover_seconds: Histogram,
    pub plan_seconds: Histogram,
    pub full_passes: Counter,
    pub events_dropped: Counter,
    pub layer2_fenced: Gauge,
    pub layer2_expected_speakers: Gauge,
    pub layer2_live_speakers: Gauge,
    pub memberlist_packets_sent: Counter,
    pub memberlist_packets_received: Counter,
    pub memberlist_bytes_sent: Counter,
    pub memberlist_bytes_received: Counter,
    pub memberlist_packets_dropped: Family<ReasonLabels, Counter>,
}

/// 1 ms .. ~33 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let m = Metrics {
        registry: Registry::default(),
        addresses_total: Family::default(),
        addresses_in_use_total: Family::default(),
        ipv4_addresses_total: Family::default(),
        ipv4_addresses_in_use_total: Family::default(),
        ipv6_addresses_total: Family::default(),
        ipv6_addresses_in_use_total: Family::default(),
        config_loaded: Gauge::default(),
        config_stale: Gauge::default(),
        k8s_updates: Counter::default(),
        k8s_update_errors: Counter::default(),
        announced: Family::default(),
        layer2_requests: Family::default(),
        layer2_responses: Family::default(),
        layer2_gratuitous: Family::default(),
        allocation_seconds: latency(),
        apply_seconds: latency(),
        layer2_takeover_seconds: latency(),
        plan_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
        full_passes: Counter::default(),
        events_dropped: Counter::default(),
        layer2_fenced: Gauge::default(),
        layer2_expected_speakers: Gauge::default(),
        layer2_live_speakers: Gauge::default(),
        memberlist_packets_sent: Counter::default(),
        memberlist_packets_received: Counter::default(),
        memberlist_bytes_sent: Counter::default(),
        memberlist_bytes_received: Counter::default(),
        memberlist_packets_dropped: Family::default(),
    };
    {
        let r = registry.sub_registry_with_prefix("metallb");
        let a = r.sub_registry_with_prefix("allocator");
        a.register("addresses_total", "Usable addresses per pool", m.addresses_total.clone());
        a.register(
            "addresses_in_use_total",
            "Addresses allocated per pool",
            m.addresses_in_use_total.clone(),
        );
        a.register("ipv4_addresses_total", "Usable IPv4 addresses per pool", m.ipv4_addresses_total.clone());
        a.register(
            "ipv4_addresses_in_use_total",
            "IPv4 addresses allocated per pool",
            m.ipv4_addresses_in_use_total.clone(),
        );
        a.register("ipv6_addresses_total", "Usable IPv6 addresses per pool", m.ipv6_addresses_total.clone());
        a.register(
            "ipv6_addresses_in_use_total",
            "IPv6 addresses allocated per pool",
            m.ipv6_addresses_in_use_total.clone(),
        );
        let k = r.sub_registry_with_prefix("k8s_client");
        k.register(
            "config_loaded_bool",
            "1 once a valid configuration has been loaded",
            m.config_loaded.clone(),
        );
        k.register(
            "config_stale_bool",
            "1 while the newest configuration is invalid and the previous one runs",
            m.config_stale.clone(),
        );
        k.register("updates", "Writes to the API server", m.k8s_updates.clone());
        k.register("update_errors", "Failed writes to the API server", m.k8s_update_errors.clone());
        let s = r.sub_registry_with_prefix("speaker");
        s.register("announced", "1 for each IP this node announces, by protocol", m.announced.clone());
        let l = r.sub_registry_with_prefix("layer2");
        l.register("requests_received", "ARP/NDP requests for an announced IP", m.layer2_requests.clone());
        l.register("responses_sent", "ARP/NDP replies sent", m.layer2_responses.clone());
        l.register("gratuitous_sent", "Gratuitous ARP/unsolicited NA sent", m.layer2_gratuitous.clone());
    }
    {
        let f = registry.sub_registry_with_prefix("ferrolb");
        // Which build runs where, for dashboards and for a rollout half way through.
        let build = Family::<BuildLabels, Gauge>::default();
        let this = BuildLabels {
            version: frr_sidecar::build::VERSION.into(),
            commit: frr_sidecar::build::COMMIT.into(),
        };
        build.get_or_create(&this).set(1);
        f.register("build_info", "1, labelled with the version and commit of this binary", build);
        f.register(
            "allocation_seconds",
            "From a Service change seen to its IP written",
            m.allocation_seconds.clone(),
        );
        f.register(
            "frr_apply_seconds",
            "One Apply to frr-agent, validation and vtysh included",
            m.apply_seconds.clone(),
        );
        f.register(
            "layer2_takeover_seconds",
            "From membership declaring a speaker gone to this node answering for the IPs it gained",
            m.layer2_takeover_seconds.clone(),
        );
        f.register(
            "plan_seconds",
            "One decision pass (plan and the writes or announcements it implies)",
            m.plan_seconds.clone(),
        );
        f.register(
            "plan_full_passes",
            "Decision passes over the whole cluster (anything but Services changed); the others decide only what changed",
            m.full_passes.clone(),
        );
        f.register(
            "events_dropped",
            "Events not written because the controller's Event queue was full",
            m.events_dropped.clone(),
        );
        f.register(
            "layer2_fenced",
            "1 while this speaker sees no majority of the speakers that should exist and does not answer ARP/NDP",
            m.layer2_fenced.clone(),
        );
        f.register(
            "layer2_expected_speakers",
            "Speakers that should exist (speaker pods or --members): the quorum base",
            m.layer2_expected_speakers.clone(),
        );
        f.register(
            "layer2_live_speakers",
            "Speakers that should exist and that membership sees alive, this one included",
            m.layer2_live_speakers.clone(),
        );
        let ml = f.sub_registry_with_prefix("memberlist");
        let traffic = [
            ("packets_sent", "Layer 2 membership datagrams sent", &m.memberlist_packets_sent),
            (
                "packets_received",
                "Layer 2 membership datagrams received (before authentication)",
                &m.memberlist_packets_received,
            ),
            ("bytes_sent", "Layer 2 membership UDP payload bytes sent (sealed)", &m.memberlist_bytes_sent),
            ("bytes_received", "Layer 2 membership UDP payload bytes received", &m.memberlist_bytes_received),
        ];
        for (name, help, counter) in traffic {
            ml.register(name, help, counter.clone());
        }
        ml.register(
            "packets_dropped",
            "Layer 2 membership datagrams dropped unread: unauthenticated (no key of this speaker seals it), replayed, or stale (sent outside the time window)",
            m.memberlist_packets_dropped.clone(),
        );
    }
    Metrics { registry, ..m }
});

impl Metrics {
    /// Counts a membership datagram dropped for `reason`.
    pub fn memberlist_dropped(&self, reason: &str) {
        self.memberlist_packets_dropped.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }
}

/// MetalLB's counters whose names carry no `_total`, kept so in the exposition.
const BARE_COUNTERS: &[&str] =
    &["metallb_layer2_requests_received", "metallb_layer2_responses_sent", "metallb_layer2_gratuitous_sent"];

/// The text of every metric, in format 0.0.4 ([`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut openmetrics = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut openmetrics, &METRICS.registry);
    let mut out = exposition::from_openmetrics(&openmetrics, BARE_COUNTERS);
    frr::render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metallb_names_are_kept() {
        METRICS.addresses_in_use_total.get_or_create(&PoolLabels { pool: "front".into() }).set(3);
        METRICS.config_stale.set(0);
        METRICS.allocation_seconds.observe(0.004);
        let text = render();
        assert!(text.contains("metallb_allocator_addresses_in_use_total{pool=\"front\"} 3"), "{text}");
        assert!(text.contains("metallb_k8s_client_config_stale_bool 0"), "{text}");
        assert!(text.contains("ferrolb_allocation_seconds_bucket"), "{text}");
        let build = format!(
            "ferrolb_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            frr_sidecar::build::COMMIT
        );
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("metallb_k8s_client_updates_total"), "{text}");
    }
}

use super::*;

fn t(text: &str) -> ConfigTree {
    owned(&ConfigTree::parse(text).unwrap())
}

fn script(old: &str, new: &str) -> Script {
    diff(&t(old), &t(new))
}

const BASE: &str = "hostname n1
log stdout informational
router bgp 64512
 no bgp default ipv4-unicast
 neighbor 192.0.2.1 remote-as 64500
 neighbor 192.0.2.1 bfd
 neighbor 192.0.2.1 bfd profile fast
 neighbor 192.0.2.1 timers 3 9
 address-family ipv4 unicast
  network 198.51.100.1/32
  neighbor 192.0.2.1 activate
  neighbor 192.0.2.1 route-map 192.0.2.1-out out
 exit-address-family
exit
ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 permit 198.51.100.1/32
route-map 192.0.2.1-out permit 1
 match ip address prefix-list 192.0.2.1-allowed-ipv4
exit
bfd
 profile fast
  receive-interval 100
 exit
exit
";

#[test]
fn identical_configs_need_nothing() {
    let s = script(BASE, BASE);
    assert!(s.is_empty() && s.text.is_empty(), "{}", s.text);
}

#[test]
fn adding_a_prefix_adds_exactly_its_lines() {
    let new = BASE.replace(
        "  network 198.51.100.1/32\n",
        "  network 198.51.100.1/32\n  network 198.51.100.2/32\n",
    )
    .replace(
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 permit 198.51.100.1/32\n",
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 permit 198.51.100.1/32\nip prefix-list 192.0.2.1-allowed-ipv4 seq 2 permit 198.51.100.2/32\n",
    );
    let s = script(BASE, &new);
    assert_eq!(
        s.text,
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 2 permit 198.51.100.2/32\nrouter bgp 64512\n address-family ipv4 unicast\n  network 198.51.100.2/32\n exit-address-family\nexit\n"
    );
    assert_eq!((s.added, s.removed), (2, 0));
}

#[test]
fn withdrawing_removes_the_network_before_its_filter() {
    let new = BASE.replace("  network 198.51.100.1/32\n", "").replace(
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 permit 198.51.100.1/32\n",
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 deny any\n",
    );
    let s = script(BASE, &new);
    // The prefix-list entry is overridden in place (same name and seq), never left missing.
    assert_eq!(
        s.text,
        "ip prefix-list 192.0.2.1-allowed-ipv4 seq 1 deny any\nrouter bgp 64512\n address-family ipv4 unicast\n  no network 198.51.100.1/32\n exit-address-family\nexit\n"
    );
}

#[test]
fn changed_settings_are_overridden_not_deleted() {
    let new = BASE.replace("timers 3 9", "timers 10 30").replace("remote-as 64500", "remote-as 64501");
    let s = script(BASE, &new);
    assert!(!s.text.contains("no neighbor"), "{}", s.text);
    assert!(
        s.text.contains(" neighbor 192.0.2.1 remote-as 64501\n")
            && s.text.contains(" neighbor 192.0.2.1 timers 10 30\n")
    );
}

#[test]
fn removing_a_peer_removes_its_af_lines_then_the_neighbor_then_its_filters() {
    let new = "hostname n1\nlog stdout informational\nrouter bgp 64512\n no bgp default ipv4-unicast\nexit\nbfd\n profile fast\n  receive-interval 100\n exit\nexit\n";
    let s = script(BASE, new);
    let pos =
        |needle: &str| s.text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing in\n{}", s.text));
    assert!(pos("no network 198.51.100.1/32") < pos("no neighbor 192.0.2.1 remote-as 64500"));
    assert!(pos("no neighbor 192.0.2.1 bfd profile fast") < pos("no neighbor 192.0.2.1 remote-as 64500"));
    assert!(pos("no neighbor 192.0.2.1 remote-as 64500") < pos("no ip prefix-list 192.0.2.1-allowed-ipv4"));
    assert!(pos("no ip prefix-list") < pos("no route-map 192.0.2.1-out permit 1"));
}

#[test]
fn lines_the_agent_does_not_own_are_never_touched() {
    let old = format!("no ip forwarding\ninterface eth0\n ip address 192.0.2.11/24\nexit\n{BASE}");
    let s = script(&old, BASE);
    assert!(s.is_empty(), "{}", s.text);
}

#[test]
fn new_routers_profiles_and_vrfs_are_created_whole() {
    let new = format!(
        "{BASE}router bgp 64513 vrf red\n neighbor 192.0.2.1 remote-as 64500\nexit\nbfd\n profile slow\n exit\nexit\n"
    );
    let s = script(BASE, &new);
    assert!(
        s.text.contains("router bgp 64513 vrf red\n neighbor 192.0.2.1 remote-as 64500\nexit\n"),
        "{}",
        s.text
    );
    assert!(s.text.contains("bfd\n profile slow\n exit\nexit\n"), "{}", s.text);
    let back = script(&new, BASE);
    assert!(
        back.text.contains("no router bgp 64513 vrf red\n")
            && back.text.contains("bfd\n no profile slow\nexit\n"),
        "{}",
        back.text
    );
}

#[test]
fn a_route_map_entry_that_only_denies_is_written() {
    // Nothing inside, yet it is state: without it the neighbor names an undefined route-map.
    let new = format!("{BASE}route-map 192.0.2.1-in deny 20\nexit\n");
    let s = script(BASE, &new);
    assert_eq!(s.text, "route-map 192.0.2.1-in deny 20\nexit\n");
    assert_eq!((s.added, s.removed), (1, 0));
    assert!(script(&new, &new).is_empty());
    let gone = script(&new, BASE);
    assert_eq!(gone.text, "no route-map 192.0.2.1-in deny 20\n");
}

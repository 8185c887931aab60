use super::*;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec, ServiceStatus,
};

fn svc(spec: ServiceSpec, annotations: &[(&str, &str)]) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some("web".into());
    s.metadata.namespace = Some("shop".into());
    s.metadata.annotations = Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    s.spec = Some(ServiceSpec { type_: Some("LoadBalancer".into()), ..spec });
    s
}

fn serve(i: Intake) -> Request {
    match i {
        Intake::Serve(r) => *r,
        other => panic!("expected Serve, got {other:?}"),
    }
}

#[test]
fn reads_annotations_in_both_spellings_new_wins() {
    let r = serve(intake(
        &svc(
            ServiceSpec::default(),
            &[
                ("metallb.universe.tf/address-pool", "old"),
                ("metallb.io/address-pool", "new"),
                ("metallb.universe.tf/allow-shared-ip", "k"),
            ],
        ),
        None,
    ));
    assert_eq!(r.pool.as_deref(), Some("new"));
    assert_eq!(r.sharing_key.as_deref(), Some("k"));
    assert_eq!(r.legacy_annotations, ["metallb.universe.tf/allow-shared-ip"]);
    assert_eq!(r.key, "shop/web");
}

#[test]
fn families_follow_cluster_ips_then_ip_families() {
    let dual = ServiceSpec {
        cluster_ips: Some(vec!["2001:db8::10".into(), "10.96.0.10".into()]),
        ip_family_policy: Some("PreferDualStack".into()),
        ..Default::default()
    };
    let r = serve(intake(&svc(dual, &[]), None));
    assert_eq!(r.families, [Family::V6, Family::V4]);
    assert!(r.prefer_dual_stack);
    let offline = ServiceSpec { ip_family_policy: Some("RequireDualStack".into()), ..Default::default() };
    assert_eq!(serve(intake(&svc(offline, &[]), None)).families, [Family::V4, Family::V6]);
    assert_eq!(serve(intake(&svc(ServiceSpec::default(), &[]), None)).families, [Family::V4]);
    let v6 = ServiceSpec { ip_families: Some(vec!["IPv6".into()]), ..Default::default() };
    assert_eq!(serve(intake(&svc(v6, &[]), None)).families, [Family::V6]);
}

#[test]
fn rejects_impossible_requests_with_reasons() {
    type Case<'a> = (ServiceSpec, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            ServiceSpec { load_balancer_ip: Some("192.0.2.1".into()), ..Default::default() },
            vec![("metallb.io/loadBalancerIPs", "192.0.2.2")],
            "both the",
        ),
        (
            ServiceSpec::default(),
            vec![("metallb.io/loadBalancerIPs", "192.0.2.1,192.0.2.2")],
            "different families",
        ),
        (ServiceSpec::default(), vec![("metallb.io/loadBalancerIPs", "banana")], "not an IP address"),
        (ServiceSpec::default(), vec![("metallb.io/loadBalancerIPs", "2001:db8::1")], "do not match"),
        (ServiceSpec { cluster_ip: Some("None".into()), ..Default::default() }, vec![], "headless"),
        (
            ServiceSpec {
                ip_family_policy: Some("RequireDualStack".into()),
                cluster_ips: Some(vec!["10.0.0.1".into()]),
                ..Default::default()
            },
            vec![],
            "RequireDualStack",
        ),
    ];
    for (spec, ann, want) in cases {
        match intake(&svc(spec, &ann), None) {
            Intake::Invalid(reason) => assert!(reason.contains(want), "{reason} !~ {want}"),
            other => panic!("expected Invalid({want}), got {other:?}"),
        }
    }
}

#[test]
fn filters_by_load_balancer_class_and_type() {
    let classed = ServiceSpec { load_balancer_class: Some("example.com/other".into()), ..Default::default() };
    assert_eq!(intake(&svc(classed.clone(), &[]), None), Intake::OtherClass("example.com/other".into()));
    assert!(matches!(intake(&svc(classed, &[]), Some("example.com/other")), Intake::Serve(_)));
    assert!(matches!(intake(&svc(ServiceSpec::default(), &[]), Some("ours")), Intake::OtherClass(_)));
    let mut cluster_ip = svc(ServiceSpec::default(), &[]);
    cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    assert_eq!(intake(&cluster_ip, None), Intake::NotLoadBalancer);
}

#[test]
fn reads_ports_backend_key_and_current_ips() {
    let mut s = svc(
        ServiceSpec {
            external_traffic_policy: Some("Local".into()),
            selector: Some([("app".to_string(), "dns".to_string()), ("tier".into(), "a".into())].into()),
            ports: Some(vec![
                ServicePort { port: 53, protocol: Some("UDP".into()), ..Default::default() },
                ServicePort { port: 53, ..Default::default() },
            ]),
            ..Default::default()
        },
        &[],
    );
    s.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress { ip: Some("192.0.2.5".into()), ..Default::default() }]),
        }),
        ..Default::default()
    });
    let r = serve(intake(&s, None));
    assert_eq!(r.backend_key, "app=dns,tier=a");
    assert_eq!(r.ports, [(Protocol::Tcp, 53), (Protocol::Udp, 53)].into());
    assert_eq!(r.current_ips, ["192.0.2.5".parse::<IpAddr>().unwrap()]);
}

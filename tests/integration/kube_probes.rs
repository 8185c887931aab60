//! The probes the chart points the kubelet at, and SIGTERM, against a real kube-apiserver: a
//! controller is ready (leader and standby alike) only once it has listed the cluster and its
//! webhook listens, and a stopped leader hands over at once; a speaker with FRR is ready only
//! once frr-agent answers with FRR up and the configuration applied, and a stopped speaker
//! leaves FRR (and so the ToR's routes and the session) as they were.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, eventually, free_port};
use crate::kube_speaker::{bgp_cluster, create_served, route_at_tor};

/// `GET http://{at}{path}`: the status code (0 when nothing answered) and the body. Like the
/// kubelet's probe (which gives up only after three failures), a probe nothing answered in 2 s
/// is tried again, up to three times: on CI's two loaded cores a process can be starved for a
/// moment, and only an answer says anything about readiness.
fn get(at: &str, path: &str) -> (u16, String) {
    let mut answer = (0, String::new());
    for attempt in 0..3 {
        answer = get_once(at, path);
        if answer.0 != 0 {
            break;
        }
        println!("GET {at}{path}: no answer (attempt {})", attempt + 1);
    }
    answer
}

fn get_once(at: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2", "-w", "\n%{http_code}", &format!("http://{at}{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Every endpoint in `at` answers `path` with 200, or the first that does not.
fn all_ok(at: &[String], path: &str) -> Result<(), String> {
    match at.iter().map(|m| get(m, path)).find(|(code, _)| *code != 200) {
        None => Ok(()),
        Some(other) => Err(format!("{other:?}")),
    }
}

/// Sends SIGTERM and waits up to `within` for a clean exit; the time it took.
fn terminate(process: &mut Running, within: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &process.0.id().to_string()]).status();
    let mut status = None;
    wait_for(within, || {
        status = process.0.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) if s.success() => Ok(t.elapsed()),
        other => Err(format!("after SIGTERM: {other:?}")),
    }
}

/// A controller replica and its webhook's port.
fn controller(kube: &KubeLab, n: usize, metrics: &str) -> (Running, String) {
    let (webhook, name) = (free_port().to_string(), format!("controller-{n}"));
    let args = [
        "controller",
        "--webhook-address",
        "127.0.0.1",
        "--webhook-port",
        &webhook,
        "--metrics-bind",
        metrics,
        "--identity",
        &name,
    ];
    (kube.run_ferrolb(&args, &format!("{name}.log")), webhook)
}

#[test]
fn a_controller_is_ready_once_listed_and_serving_and_hands_over_on_sigterm() {
    require_kube!();
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        // The namespace, but no CRDs yet: the configuration kinds cannot be listed.
        let client = kube.client().await;
        let ns: Namespace =
            serde_saphyr::from_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n")
                .unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        let metrics: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let (first, first_webhook) = controller(&kube, 0, &metrics[0]);
        let (second, second_webhook) = controller(&kube, 1, &metrics[1]);
        let mut replicas = [Some(first), Some(second)];
        let logs = || format!("{}\n---\n{}", kube.log("controller-0.log"), kube.log("controller-1.log"));

        let r = eventually("both live", || async { all_ok(&metrics, "/livez") }).await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        // Held not ready for two seconds, saying it has not listed.
        for _ in 0..10 {
            for m in &metrics {
                let (code, body) = get(m, "/readyz");
                assert_eq!(code, 503, "ready without the configuration kinds listed: {body}\n{}", logs());
                assert!(body.contains("listed: still listing the cluster"), "{body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        crate::kube_lab::install_crds(&client).await;
        let t = Instant::now();
        let r = eventually("both ready", || async { all_ok(&metrics, "/readyz") }).await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        println!("both controller replicas (leader and standby) ready {:?} after the CRDs came", t.elapsed());
        // Ready means the webhook answers: HTTPS on its port, on both replicas.
        for port in [&first_webhook, &second_webhook] {
            let out = Command::new("curl")
                .args(["-sk", "--max-time", "2", &format!("https://127.0.0.1:{port}/healthz")])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "webhook on {port}\n{}", logs());
        }
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), "metallb-system");
        let holder = || async {
            leases.get("ferrolb-controller").await.ok().and_then(|l| l.spec).and_then(|s| s.holder_identity)
        };
        let r = eventually("a leader", || async {
            holder().await.map(drop).ok_or_else(|| "no holder".to_string())
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let leader = holder().await.unwrap();
        let (lead, standby) = if leader == "controller-0" { (0, 1) } else { (1, 0) };

        // SIGTERM: the leader releases the lease and exits; the standby leads well before the
        // 6 s lease would have run out.
        let took = terminate(replicas[lead].as_mut().unwrap(), Duration::from_secs(5));
        assert!(took.is_ok(), "{took:?}\n{}", logs());
        let t = Instant::now();
        let want = format!("controller-{standby}");
        let r = eventually("the standby leads", || async {
            match holder().await {
                Some(h) if h == want => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "takeover took {:?}: the lease was not released",
            t.elapsed()
        );
        println!("SIGTERM: leader exited in {:?}, standby leading {:?} later", took.unwrap(), t.elapsed());
        drop(replicas[lead].take());
        let (code, body) = get(&metrics[standby], "/readyz");
        let exited = replicas[standby].as_mut().and_then(|r| r.0.try_wait().ok().flatten());
        assert_eq!(code, 200, "the new leader's readiness: {body} (exited: {exited:?})\n{}", logs());
    });
}

#[test]
fn a_speaker_is_ready_once_frr_serves_and_leaves_it_alone_on_sigterm() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;
        let _controller = kube.run_ferrolb(
            &[
                "controller",
                "--webhook-port",
                "0",
                "--leader-elect",
                "false",
                "--metrics-bind",
                "127.0.0.1:0",
            ],
            "controller.log",
        );
        // The speaker first, its agent not there yet.
        let socket = lab.node.dir().join("agent.sock");
        let metrics = format!("127.0.0.1:{}", free_port());
        let args = ["speaker", "--node", "node1", "--metrics-bind", &metrics, "--frr-agent-socket"];
        let mut speaker = kube.run_ferrolb(&[&args[..], &[socket.to_str().unwrap()]].concat(), "speaker.log");
        let log = || kube.log("speaker.log");
        let r = eventually("not ready for want of frr-agent", || async {
            let (code, body) = get(&metrics, "/readyz");
            if code == 503 && body.contains("frr: frr-agent does not answer") && !body.contains("listed:") {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", log());
        assert_eq!(get(&metrics, "/livez").0, 200, "live while frr-agent is away");

        let agent = AgentProcess::start(&lab.node, "agent");
        assert_eq!(agent.socket, socket);
        let t = Instant::now();
        let r = eventually("ready", || async {
            match get(&metrics, "/readyz") {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", log());
        println!("speaker ready {:?} after frr-agent started", t.elapsed());

        // A Service at the ToR, then SIGTERM: nothing withdrawn, the session not reset.
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        create_served(&services, &slices, "web", "203.0.113.10").await;
        let ip_of = || async {
            let svc = services.get("web").await.ok()?;
            ferrolb::plan::writeback::current_ips(&svc).into_iter().next()
        };
        let r = eventually("web at the ToR", || async {
            let ip = ip_of().await.ok_or("no IP yet")?;
            if route_at_tor(&lab, &ip) { Ok(()) } else { Err(format!("{ip} not at the ToR")) }
        })
        .await;
        let ip = ip_of().await.unwrap_or_default();
        assert!(r.is_ok(), "{r:?}\n{}", log());
        let established = || {
            lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["connectionsEstablished"].clone()
        };
        let before = (established(), lab.node.running_config());
        let took = terminate(&mut speaker, Duration::from_secs(5));
        assert!(took.is_ok(), "{took:?}\n{}", log());
        std::thread::sleep(Duration::from_secs(2));
        assert!(route_at_tor(&lab, &ip), "{ip} withdrawn when the speaker stopped");
        assert_eq!(established(), before.0, "the session was reset");
        assert_eq!(lab.node.running_config(), before.1, "the speaker changed FRR on its way out");
        println!("SIGTERM: speaker exited in {:?}; FRR, the route and the session untouched", took.unwrap());
        drop(agent);
    });
}

//! `--tls-min-version` and `--tls-cipher-suites` (MetalLB's flags) on every HTTPS port ferrolb
//! opens, tried with a real client, `openssl s_client`, against the real processes and a real
//! kube-apiserver: the controller's webhook and secure metrics, the speaker's secure metrics.
//! A refusal counts only when the client's output carries an alert from the server, so a client
//! that never sent its hello (OpenSSL's own floor) or a port not yet open cannot pass for one.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, free_port};

/// The suites the controller is given: one of each TLS version, both usable with the ECDSA
/// certificates ferrolb issues itself.
const ALLOWED: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256";
/// OpenSSL 3 refuses to offer TLS 1.0 and 1.1 at its default security level; level 0 makes it
/// send those hellos, so it is the server that answers them.
const OLD_CLIENT: &str = "DEFAULT@SECLEVEL=0";
/// OpenSSL's words for an alert the server sent (rustls answers a TLS 1.0 or 1.1 hello with
/// handshake_failure: none of the suites such a hello offers exists at 1.2).
const ANY_ALERT: &str = "SSL alert number";
const PROTOCOL_ALERT: &str = "alert protocol version";
const HANDSHAKE_ALERT: &str = "alert handshake failure";

/// A handshake with 127.0.0.1:`port` by `openssl s_client` with `client` options: Ok(what was
/// agreed) or Err(the client's whole output).
fn handshake(port: u16, client: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-brief", "-connect", &format!("127.0.0.1:{port}")])
        .args(client)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.success() && text.contains("CONNECTION ESTABLISHED") {
        true => {
            let agreed = text.lines().filter(|l| l.starts_with("Protocol") || l.starts_with("Ciphersuite"));
            Ok(agreed.collect::<Vec<_>>().join(", "))
        }
        false => Err(text),
    }
}

fn connects(what: &str, port: u16, client: &[&str]) {
    match handshake(port, client) {
        Ok(agreed) => println!("{what}: {client:?} connected ({agreed})"),
        Err(out) => panic!("{what}: {client:?} was turned away:\n{out}"),
    }
}

fn turned_away(what: &str, port: u16, client: &[&str], alert: &str) {
    match handshake(port, client) {
        Ok(agreed) => panic!("{what}: {client:?} connected ({agreed}); the TLS flags did nothing"),
        Err(out) if out.contains(alert) => println!("{what}: {client:?} turned away ({})", alert_in(&out)),
        Err(out) => panic!("{what}: {client:?} failed without the server's {alert:?}:\n{out}"),
    }
}

/// The alert as OpenSSL reports it (`tlsv1 alert protocol version`, …).
fn alert_in(out: &str) -> &str {
    let at = out.find(" alert ").map_or(0, |i| out[..i].rfind(':').map_or(0, |c| c + 1));
    out[at..].split(':').next().unwrap_or_default()
}

/// Waits until `port` completes a handshake the flags allow, so later refusals are the server's.
fn wait_serving(lab: &KubeLab, port: u16, client: &[&str], log: &str) {
    let up = wait_for(Duration::from_secs(30), || handshake(port, client).is_ok());
    assert!(up.is_some(), "nothing served TLS on {port}:\n{}", lab.log(log));
}

/// Every check of the cipher suite list on one port (the webhook's or the metrics').
fn check_suites(what: &str, port: u16) {
    connects(what, port, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    connects(what, port, &["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"]);
    turned_away(what, port, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], HANDSHAKE_ALERT);
    turned_away(what, port, &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"], HANDSHAKE_ALERT);
    turned_away(what, port, &["-tls1_1", "-cipher", OLD_CLIENT], ANY_ALERT);
    turned_away(what, port, &["-tls1", "-cipher", OLD_CLIENT], ANY_ALERT);
}

#[test]
fn the_webhook_and_metrics_turn_away_clients_outside_the_tls_flags() {
    require_kube!();
    let lab = KubeLab::start();
    crate::runtime().block_on(lab.prepared(&["metallb-system"]));
    let (webhook, metrics, speaker) = (free_port(), free_port(), free_port());
    let (webhook_port, metrics_bind) = (webhook.to_string(), format!("127.0.0.1:{metrics}"));
    let _controller = lab.run_ferrolb(
        &["controller", "--leader-elect", "false", "--webhook-address", "127.0.0.1"]
            .into_iter()
            .chain(["--webhook-host", "127.0.0.1", "--webhook-port", &webhook_port])
            .chain(["--metrics-bind", &metrics_bind, "--metrics-secure=true", "--tls-cipher-suites", ALLOWED])
            .collect::<Vec<_>>(),
        "controller.log",
    );
    let speaker_bind = format!("127.0.0.1:{speaker}");
    let _speaker = lab.run_ferrolb(
        &["speaker", "--node", "node1", "--metrics-bind", &speaker_bind, "--metrics-secure=true"]
            .into_iter()
            .chain(["--tls-min-version", "VersionTLS13"])
            .collect::<Vec<_>>(),
        "speaker.log",
    );

    let allowed = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];
    wait_serving(&lab, webhook, &allowed, "controller.log");
    wait_serving(&lab, metrics, &allowed, "controller.log");
    check_suites("controller webhook", webhook);
    check_suites("controller metrics", metrics);

    wait_serving(&lab, speaker, &["-tls1_3"], "speaker.log");
    connects("speaker metrics (VersionTLS13)", speaker, &["-tls1_3"]);
    turned_away("speaker metrics (VersionTLS13)", speaker, &["-tls1_2"], PROTOCOL_ALERT);
    turned_away("speaker metrics (VersionTLS13)", speaker, &["-tls1_1", "-cipher", OLD_CLIENT], ANY_ALERT);
}

/// The process's stderr and whether it failed, run without a cluster: flags are checked first.
fn refused_at_start(args: &[&str]) -> String {
    let out = Command::new(crate::ferrolb_bin()).args(args).current_dir(crate::repo_root()).output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tls_flags_ferrolb_cannot_honour_stop_it_at_start() {
    for old in ["VersionTLS10", "VersionTLS11"] {
        let err = refused_at_start(&["controller", "--tls-min-version", old]);
        assert!(err.contains(old) && err.contains("never speaks TLS below 1.2"), "{err}");
    }
    let speaker = ["speaker", "--node", "n1", "-f", "examples", "--metrics-bind", "127.0.0.1:0"];
    let cbc = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA";
    let err = refused_at_start(&[&speaker[..], &["--tls-cipher-suites", cbc]].concat());
    assert!(err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is unknown or not offered"), "{err}");
    assert!(err.contains("accepted: TLS_AES_128_GCM_SHA256,"), "{err}");
    let err = refused_at_start(&["controller", "--tls-cipher-suites", ""]);
    assert!(err.contains("no cipher suite named"), "{err}");
    let tls12_only_suite =
        ["--tls-min-version", "VersionTLS13", "--tls-cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"];
    let err = refused_at_start(&[&speaker[..], &tls12_only_suite].concat());
    assert!(err.contains("never negotiates"), "{err}");
}

#[test]
fn the_chart_passes_tls_values_to_both_roles_only_when_set() {
    require_helm!();
    let args = |values: &str| -> Vec<Vec<String>> {
        let objects = crate::chart::render_clean(values);
        [("Deployment", "ferrolb-controller", "controller"), ("DaemonSet", "ferrolb-speaker", "speaker")]
            .iter()
            .map(|(kind, name, container)| {
                let pod = crate::chart::find(&objects, kind, name);
                let c = crate::chart::container(pod, container).unwrap();
                c["args"].as_array().unwrap().iter().filter_map(|a| a.as_str().map(String::from)).collect()
            })
            .collect()
    };
    for role in args("{}") {
        assert!(!role.iter().any(|a| a.starts_with("--tls-")), "{role:?}");
    }
    let set = r#"{"tls": {"minVersion": "VersionTLS13", "cipherSuites": ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]}}"#;
    for role in args(set) {
        assert!(role.contains(&"--tls-min-version=VersionTLS13".to_string()), "{role:?}");
        assert!(
            role.contains(&"--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384".into()),
            "{role:?}"
        );
    }
}

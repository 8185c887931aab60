//! The webhook's HTTPS port against hostile bodies, in process and without an API server:
//! garbage, truncated and wrong-kind JSON get a 400, a body over the limit a 413 without being
//! read whole (the process's RSS says so), and a real review still gets its 200 afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb::config::ClusterObjects;
use ferrolb::tls::CertSlot;
use ferrolb::tls::cert;
use ferrolb::webhook::server::{self, Current};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const VALIDATE: &str = "/validate-metallb-io-v1beta1-ipaddresspool";
const CONVERT: &str = "/convert";
const MIB: usize = 1 << 20;

/// The webhook served on loopback, and a client that trusts its CA.
struct Webhook {
    addr: SocketAddr,
    connector: TlsConnector,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves the webhook as the controller does (HTTP/1.1 over rustls), with an empty cluster.
fn start(rt: &tokio::runtime::Runtime) -> Webhook {
    let now = time::OffsetDateTime::now_utc();
    let issued = cert::issue(&["127.0.0.1".to_string()], None, now).unwrap();
    let slot = Arc::new(CertSlot::default());
    slot.set_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(slot);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let current: Current = Arc::new(|| Box::pin(async { Ok(ClusterObjects::new("metallb-system")) }));
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::kube_lab::free_port()));
    let (up, listening) = std::sync::mpsc::channel();
    rt.spawn(server::serve(addr, Arc::new(tls), current, move || {
        let _ = up.send(());
    }));
    listening.recv_timeout(Duration::from_secs(10)).expect("the webhook listens");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(issued.ca_bundle_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Webhook { addr, connector: TlsConnector::from(Arc::new(client)) }
}

/// How a request's body goes out.
#[derive(Clone)]
enum Body {
    /// Whole, with its Content-Length.
    Whole(Vec<u8>),
    /// `declared` bytes announced, `sent` of them written, then the client stops writing.
    Cut { declared: usize, sent: usize },
    /// `len` bytes streamed in 64 KiB pieces, announced by Content-Length or sent chunked;
    /// never held whole by the client either.
    Stream { len: usize, chunked: bool },
    /// Only announced, with `Expect: 100-continue`: nothing goes out unless the server asks for
    /// the body, and a server that does has started reading it.
    Announced { len: usize },
}

/// The answer to one request on a fresh connection: status and body text. The body is written
/// beside the reading, so an answer that comes before the body is all sent is seen.
async fn exchange(w: &Webhook, path: &str, body: Body) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = w.connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut rx, mut tx) = tokio::io::split(tls);
    let length = match &body {
        Body::Whole(b) => format!("Content-Length: {}", b.len()),
        Body::Cut { declared, .. } => format!("Content-Length: {declared}"),
        Body::Stream { chunked: true, .. } => "Transfer-Encoding: chunked".to_string(),
        Body::Stream { len, .. } => format!("Content-Length: {len}"),
        Body::Announced { len } => format!("Content-Length: {len}\r\nExpect: 100-continue"),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        // Errors are expected: a refusing server stops reading and closes.
        let _ = send(&mut tx, head.as_bytes(), body).await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 << 10];
    // A reset after the answer (the server closing on an unread body) ends the reading too.
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.starts_with(b"HTTP/1.1 100 ") && answer.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

async fn send(tx: &mut (impl AsyncWriteExt + Unpin), head: &[u8], body: Body) -> std::io::Result<()> {
    tx.write_all(head).await?;
    match body {
        Body::Whole(b) => tx.write_all(&b).await?,
        Body::Cut { sent, .. } => {
            tx.write_all(&vec![b'{'; sent]).await?;
            tx.flush().await?;
            tx.shutdown().await?;
        }
        Body::Stream { len, chunked } => {
            let piece = vec![b' '; 64 << 10];
            let mut left = len;
            while left > 0 {
                let n = left.min(piece.len());
                if chunked {
                    tx.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                tx.write_all(&piece[..n]).await?;
                if chunked {
                    tx.write_all(b"\r\n").await?;
                }
                left -= n;
            }
            if chunked {
                tx.write_all(b"0\r\n\r\n").await?;
            }
        }
        Body::Announced { .. } => {}
    }
    tx.flush().await
}

fn admission_review(kind: &str, spec: Value) -> Value {
    let plural = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4b1e6f3a-0000-4000-8000-000000000001",
            "kind": {"group": "metallb.io", "version": "v1beta1", "kind": kind},
            "resource": {"group": "metallb.io", "version": "v1beta1", "resource": plural},
            "name": "p",
            "namespace": "metallb-system",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {
                "apiVersion": "metallb.io/v1beta1",
                "kind": kind,
                "metadata": {"name": "p", "namespace": "metallb-system"},
                "spec": spec
            },
            "oldObject": null,
            "dryRun": false
        }
    })
}

fn conversion_review() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": "4b1e6f3a-0000-4000-8000-000000000002",
            "desiredAPIVersion": "metallb.io/v1beta2",
            "objects": [{
                "apiVersion": "metallb.io/v1beta1",
                "kind": "BGPPeer",
                "metadata": {"name": "tor", "namespace": "metallb-system"},
                "spec": {"myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.1"}
            }]
        }
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// `review` with its (first) object's spec nested `depth` lists deep.
fn nested(mut review: Value, depth: usize) -> Vec<u8> {
    let object = match review["request"].get_mut("objects") {
        Some(objects) => &mut objects[0],
        None => &mut review["request"]["object"],
    };
    object["spec"] = json!("DEEP");
    let text = serde_json::to_string(&review).unwrap();
    text.replace("\"DEEP\"", &format!("{}{}", "[".repeat(depth), "]".repeat(depth))).into_bytes()
}

/// Bodies that are not the review a path takes, each with the status it must get.
fn malformed() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let admission = bytes(&admission_review("IPAddressPool", json!({"addresses": ["192.0.2.0/24"]})));
    let conversion = bytes(&conversion_review());
    let mut no_request = admission_review("IPAddressPool", json!({}));
    no_request.as_object_mut().unwrap().remove("request");
    let mut v1beta1 = admission_review("IPAddressPool", json!({}));
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut out = Vec::new();
    for path in [VALIDATE, CONVERT] {
        let own = if path == VALIDATE { &admission } else { &conversion };
        let other = if path == VALIDATE { &conversion } else { &admission };
        out.extend([
            (path, "garbage", b"\x00\xff\xfe GET / HTTP/1.1 {{{ \x7f".to_vec()),
            (path, "empty", Vec::new()),
            (path, "truncated JSON", own[..own.len() / 2].to_vec()),
            (
                path,
                "JSON of another kind",
                bytes(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})),
            ),
            (path, "the other webhook's review", other.clone()),
            (path, "a JSON list", b"[1, 2, 3]".to_vec()),
            (path, "a JSON string", b"\"AdmissionReview\"".to_vec()),
            (path, "a list 100,000 deep", [b"[".repeat(100_000), b"]".repeat(100_000)].concat()),
        ]);
    }
    let deep_admission = admission_review("IPAddressPool", json!({}));
    out.push((VALIDATE, "an object nested 100,000 deep", nested(deep_admission, 100_000)));
    out.push((CONVERT, "an object nested 100,000 deep", nested(conversion_review(), 100_000)));
    out.push((VALIDATE, "a review without a request", bytes(&no_request)));
    out.push((VALIDATE, "a review of a version never asked for", bytes(&v1beta1)));
    out
}

/// VmRSS of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `f` while sampling VmRSS every millisecond; the highest growth over the start, in KiB.
fn peak_rss_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let (start, peak, done) = (rss_kib(), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = f();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (out, peak.load(Ordering::Relaxed).max(start) - start)
}

#[test]
fn hostile_bodies_get_a_4xx_and_the_webhook_keeps_serving() {
    let rt = crate::threaded_runtime();
    let w = start(&rt);
    for (path, what, body) in malformed() {
        let t = Instant::now();
        let (status, text) = rt.block_on(exchange(&w, path, Body::Whole(body)));
        println!(
            "{path} {what}: {status} in {:?}: {}",
            t.elapsed(),
            text.chars().take(120).collect::<String>()
        );
        assert_eq!(status, 400, "{path} {what}: {text}");
    }
    let (status, text) = rt.block_on(exchange(&w, VALIDATE, Body::Cut { declared: 10_000, sent: 100 }));
    println!("{VALIDATE} a body cut short: {status}: {text}");
    assert_eq!(status, 400, "a body cut short: {text}");
    the_webhook_still_answers(&rt, &w);
}

#[test]
fn bodies_over_the_limit_get_a_413_without_being_read_whole() {
    let rt = crate::threaded_runtime();
    let w = start(&rt);
    // Warm up (TLS, the runtime's threads, the first allocations) before measuring.
    the_webhook_still_answers(&rt, &w);
    let cases = [
        ("100 MiB announced, expecting 100-continue", Body::Announced { len: 100 * MIB }),
        ("5 MiB, with its length", Body::Stream { len: 5 * MIB, chunked: false }),
        ("5 MiB, chunked", Body::Stream { len: 5 * MIB, chunked: true }),
        ("100 MiB, with its length", Body::Stream { len: 100 * MIB, chunked: false }),
        ("100 MiB, chunked", Body::Stream { len: 100 * MIB, chunked: true }),
    ];
    for (what, body) in cases {
        for path in [VALIDATE, CONVERT] {
            let t = Instant::now();
            let ((status, text), grew) = peak_rss_growth(|| rt.block_on(exchange(&w, path, body.clone())));
            let took = t.elapsed();
            println!("{path} {what}: {status} in {took:?}, RSS +{} KiB at most: {text}", grew);
            assert_eq!(status, 413, "{path} {what}: {text}");
            // The limit's 4 MiB at most; read whole, the 100 MiB would show. Generous, as tests
            // running beside this one allocate in the same process.
            assert!(grew < 24 << 10, "{path} {what}: RSS grew by {grew} KiB");
            assert!(took < Duration::from_secs(10), "{path} {what}: {took:?}");
        }
    }
    the_webhook_still_answers(&rt, &w);
}

/// A real review of each kind still gets a 200 with a verdict.
fn the_webhook_still_answers(rt: &tokio::runtime::Runtime, w: &Webhook) {
    let review = admission_review("IPAddressPool", json!({"addresses": ["192.0.2.0/24"]}));
    let (status, text) = rt.block_on(exchange(w, VALIDATE, Body::Whole(bytes(&review))));
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["uid"], review["request"]["uid"], "{text}");
    assert_eq!(answer["response"]["allowed"], true, "{text}");
    let (status, text) = rt.block_on(exchange(w, CONVERT, Body::Whole(bytes(&conversion_review()))));
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["result"]["status"], "Success", "{text}");
    assert_eq!(answer["response"]["convertedObjects"][0]["apiVersion"], "metallb.io/v1beta2", "{text}");
}

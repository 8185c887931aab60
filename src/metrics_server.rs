//! Serves the metrics port: plain HTTP, or (`--metrics-secure`) HTTPS with every `/metrics`
//! scrape authorized by the API server, as MetalLB 0.16 serves it. Other paths (probes) stay
//! open either way: the kubelet probes without a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::k8s::authz::Authorizer;
use crate::metrics_auth::{self, Decision};
use crate::tls::TlsPolicy;
use crate::tls::{CertSlot, cert};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsSecurityArgs {
    /// Serve /metrics over HTTPS and let only scrapers whose token the API server accepts
    /// (TokenReview) and allows to `get` the non-resource URL /metrics (SubjectAccessReview)
    /// read it: no token 401, not allowed 403. Other paths (probes) stay open.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_secure: bool,
    /// With --metrics-secure: serve tls.crt/tls.key from this directory (a mounted Secret,
    /// re-read every 30 s) instead of a certificate issued by this process at start.
    #[arg(long, requires = "metrics_secure")]
    pub metrics_cert_dir: Option<PathBuf>,
}

/// How the port is served.
pub enum Mode {
    Plain,
    Secure { tls: Arc<rustls::ServerConfig>, authorizer: Arc<Authorizer> },
}

/// How often certificate files are re-read, and a self-issued certificate checked for renewal.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// The serving mode `args` ask for, with the process's TLS versions and suites. Secure needs a
/// client for the reviews; `names` go into a self-issued certificate (scrapers verify it only
/// if given its CA, which a self-issued one has nowhere to publish, so the chart's
/// ServiceMonitors skip verification unless a Secret is named).
pub async fn mode(
    args: &MetricsSecurityArgs,
    tls: &TlsPolicy,
    client: Option<&kube::Client>,
    names: Vec<String>,
) -> Result<Mode, String> {
    if !args.metrics_secure {
        return Ok(Mode::Plain);
    }
    let client = client.ok_or(
        "--metrics-secure asks the API server who scrapes (TokenReview, SubjectAccessReview): it cannot be used with manifests (-f)",
    )?;
    let slot = Arc::new(CertSlot::default());
    match args.metrics_cert_dir.clone() {
        Some(dir) => {
            slot.load_dir(&dir).await?;
            let slot = slot.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    if let Err(e) = slot.load_dir(&dir).await {
                        tracing::warn!(error = %e, "metrics certificate files; serving the previous ones");
                    }
                }
            });
        }
        None => {
            let mut issued = self_issue(&names, &slot)?;
            let slot = slot.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    if cert::needs_issue(Some(&issued), true, time::OffsetDateTime::now_utc()) {
                        match self_issue(&names, &slot) {
                            Ok(c) => issued = c,
                            Err(e) => tracing::warn!(error = %e, "renewing the metrics certificate"),
                        }
                    }
                }
            });
        }
    }
    tracing::info!(%tls, "metrics TLS");
    Ok(Mode::Secure { tls: tls.server_config(slot)?, authorizer: Arc::new(Authorizer::new(client.clone())) })
}

fn self_issue(names: &[String], slot: &CertSlot) -> Result<cert::ServingCert, String> {
    let c = cert::issue(names, None, time::OffsetDateTime::now_utc()).map_err(|e| e.to_string())?;
    slot.set_pem(&c.cert_pem, &c.key_pem)?;
    tracing::info!(?names, not_after = c.not_after, "issued a metrics certificate");
    Ok(c)
}

/// The names a self-issued certificate carries: the bound address (when it is one), the host
/// name and localhost.
pub fn names_for(bind: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if !bind.ip().is_unspecified() {
        names.insert(0, bind.ip().to_string());
    }
    if let Ok(h) = std::env::var("HOSTNAME").or_else(|_| std::fs::read_to_string("/etc/hostname"))
        && !h.trim().is_empty()
    {
        names.push(h.trim().to_string());
    }
    names
}

/// Serves until the process ends.
pub async fn serve(bind: SocketAddr, mode: Mode) -> Result<(), String> {
    let listener = crate::bind::tcp_listener(bind).map_err(|e| format!("metrics: binding {bind}: {e}"))?;
    let (acceptor, authorizer) = match mode {
        Mode::Plain => (None, None),
        Mode::Secure { tls, authorizer } => (Some(TlsAcceptor::from(tls)), Some(authorizer)),
    };
    tracing::info!(%bind, secure = acceptor.is_some(), "metrics serving");
    loop {
        let Ok((tcp, peer)) = listener.accept().await else { continue };
        let (acceptor, authorizer) = (acceptor.clone(), authorizer.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, authorizer).await,
                Some(a) => match a.accept(tcp).await {
                    Ok(tls) => connection(tls, authorizer).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "metrics: TLS handshake"),
                },
            }
        });
    }
}

async fn connection<I>(io: I, authorizer: Option<Arc<Authorizer>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(req, authorizer.clone()));
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    authorizer: Option<Arc<Authorizer>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    if let Some(a) = authorizer.filter(|_| metrics_auth::guarded(&path)) {
        let header = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let verb = req.method().as_str().to_ascii_lowercase();
        let decision = match metrics_auth::bearer(header) {
            Err(d) => d,
            Ok(token) => match a.decide(token, &verb, &path).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot authorize the scraper");
                    return Ok(reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot authorize: {e}"),
                        "text/plain",
                    ));
                }
            },
        };
        match decision {
            Decision::Allow => {}
            Decision::Unauthenticated(why) => {
                let mut r = reply(StatusCode::UNAUTHORIZED, format!("Unauthorized: {why}\n"), "text/plain");
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ferrolb\""));
                return Ok(r);
            }
            Decision::Forbidden(why) => {
                return Ok(reply(StatusCode::FORBIDDEN, format!("Forbidden: {why}\n"), "text/plain"));
            }
        }
    }
    Ok(match path.as_str() {
        "/metrics" => reply(StatusCode::OK, crate::metrics::render(), crate::metrics::CONTENT_TYPE),
        // /healthz: the older common spelling of /livez.
        "/livez" | "/healthz" => reply(StatusCode::OK, "ok".into(), "text/plain"),
        "/readyz" => match crate::health::readiness() {
            Ok(()) => reply(StatusCode::OK, "ok".into(), "text/plain"),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{why}\n"), "text/plain"),
        },
        _ => reply(StatusCode::NOT_FOUND, String::new(), "text/plain"),
    })
}

fn reply(status: StatusCode, body: String, kind: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// Starts [`serve`] in the background unless `bind` is None; a port that cannot be bound is
/// logged, not fatal: metrics must never stop an announcement.
pub fn start(bind: Option<SocketAddr>, mode: Mode) {
    if let Some(bind) = bind {
        tokio::spawn(async move {
            if let Err(e) = serve(bind, mode).await {
                tracing::error!(error = %e, "metrics endpoint");
            }
        });
    }
}

//! HTTPS for the API server's admission and conversion calls (rustls with ring; hyper).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as ApiOperation,
};
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::admission::{self, ConfigObject, Operation, Verdict};
use super::conversion;
use crate::config::ClusterObjects;

/// Reviews are small; anything this big is not one.
const MAX_BODY: usize = 4 << 20;

/// The certificate being served; replaced in place when it is renewed.
#[derive(Debug, Default)]
pub struct CertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl CertSlot {
    pub fn set_pem(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("webhook certificate: {e}"))?;
        if certs.is_empty() {
            return Err("webhook certificate: no certificate in tls.crt".into());
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("webhook key: {e}"))?;
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("webhook key: {e}"))?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(CertifiedKey::new(certs, signer)));
        Ok(())
    }

    /// Serves `tls.crt` and `tls.key` from `dir` (a mounted Secret, cert-manager's files).
    pub async fn load_dir(&self, dir: &std::path::Path) -> Result<(), String> {
        self.set_pem(&read_in(dir, "tls.crt").await?, &read_in(dir, "tls.key").await?)
    }
}

/// The file `name` in `dir`, or an error naming it.
pub async fn read_in(dir: &std::path::Path, name: &str) -> Result<String, String> {
    let p = dir.join(name);
    tokio::fs::read_to_string(&p).await.map_err(|e| format!("reading {}: {e}", p.display()))
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The cluster's current configuration objects, or why they cannot be had right now.
pub type Current =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<ClusterObjects, String>> + Send + Sync>;

/// `listening` is called once the port is open (with a certificate to serve).
pub async fn serve(
    bind: SocketAddr,
    cert: Arc<CertSlot>,
    current: Current,
    listening: impl FnOnce(),
) -> Result<(), String> {
    let mut tls = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(cert);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = crate::bind::tcp_listener(bind).map_err(|e| format!("webhook: binding {bind}: {e}"))?;
    tracing::info!(%bind, "webhook serving");
    listening();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhook: accept");
                continue;
            }
        };
        let (acceptor, current) = (acceptor.clone(), current.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => return tracing::debug!(%peer, error = %e, "webhook: TLS handshake"),
            };
            let service = hyper::service::service_fn(move |req| handle(req, current.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook: connection");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    current: Current,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && (path == "/healthz" || path == "/readyz") {
        return Ok(reply(StatusCode::OK, Bytes::from_static(b"ok")));
    }
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::from(format!("reading the review: {e}")))),
    };
    let answer = if path.starts_with("/validate") {
        match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) {
            Ok(review) => Ok(json(&validate(review, &current).await)),
            Err(e) => Err(e.to_string()),
        }
    } else if path == "/convert" {
        serde_json::from_slice::<ConversionReview>(&body)
            .map_err(|e| e.to_string())
            .map(|r| json(&convert(r)))
    } else {
        return Ok(reply(StatusCode::NOT_FOUND, Bytes::new()));
    };
    Ok(match answer {
        Ok(bytes) => {
            let mut r = reply(StatusCode::OK, bytes);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => reply(StatusCode::BAD_REQUEST, Bytes::from(format!("not a review: {e}"))),
    })
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

fn json<T: serde::Serialize>(v: &T) -> Bytes {
    // Serialising our own response types cannot fail (no maps with non-string keys).
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

async fn validate(
    review: AdmissionReview<DynamicObject>,
    current: &Current,
) -> AdmissionReview<DynamicObject> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return AdmissionResponse::invalid(e).into_review(),
    };
    let resp = AdmissionResponse::from(&req);
    let (operation, object) = match req.operation {
        ApiOperation::Create => (Operation::Create, req.object.as_ref()),
        ApiOperation::Update => (Operation::Update, req.object.as_ref()),
        ApiOperation::Delete => (Operation::Delete, req.old_object.as_ref()),
        ApiOperation::Connect => return resp.into_review(),
    };
    let kind = req.kind.kind.as_str();
    let Some(object) = object else {
        // A DELETE of a whole collection carries no object; deciding per object is impossible.
        return resp.into_review();
    };
    let decoded =
        serde_json::to_value(object).map_err(|e| e.to_string()).and_then(|v| ConfigObject::decode(kind, v));
    let object = match decoded {
        Ok(o) => o,
        Err(e) => return resp.deny(e).into_review(),
    };
    let objects = match current().await {
        Ok(o) => o,
        Err(e) => {
            return resp.deny(format!("ferrolb cannot read the current configuration: {e}")).into_review();
        }
    };
    let verdict = admission::admit(&objects, operation, &object);
    tracing::info!(kind, name = %req.name, ?operation, ?verdict, "admission");
    match verdict {
        Verdict::Allow { warnings } => {
            let mut resp = resp;
            if !warnings.is_empty() {
                resp.warnings = Some(warnings);
            }
            resp.into_review()
        }
        Verdict::Deny { reason } => resp.deny(reason).into_review(),
    }
}

fn convert(review: ConversionReview) -> ConversionReview {
    let req = match ConversionRequest::from_review(review) {
        Ok(r) => r,
        Err(_) => {
            return ConversionResponse::invalid(kube::core::Status::failure(
                "no request in the ConversionReview",
                "BadRequest",
            ))
            .into_review();
        }
    };
    let desired = req.desired_api_version.clone();
    let converted: Result<Vec<_>, String> =
        req.objects.iter().map(|o| conversion::convert(o, &desired)).collect();
    let resp = ConversionResponse::for_request(req);
    match converted {
        Ok(objects) => resp.success(objects),
        Err(e) => resp.failure(kube::core::Status::failure(&e, "Invalid")),
    }
    .into_review()
}

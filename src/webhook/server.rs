//! HTTPS for the API server's admission and conversion calls (rustls with ring; hyper).

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as ApiOperation,
};
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use kube::core::{DynamicObject, TypeMeta};
use tokio_rustls::TlsAcceptor;

use super::admission::{self, ConfigObject, Operation, Verdict};
use super::conversion;
use crate::config::ClusterObjects;

/// The largest review read. The API server caps what it accepts at 3 MiB a request and etcd an
/// object at 1.5 MiB, and an AdmissionReview carries one object (two on UPDATE: the new one and
/// the stored one), so every review of an object the cluster can hold fits with room to spare.
/// A body is never buffered past this, so no connection holds more than a few times this (the
/// body, and the review decoded from it).
const MAX_BODY: usize = 4 << 20;

/// What the API server sends each webhook (the configurations ask for v1 only); any other JSON
/// is a caller's mistake, answered 400, not a review to give a verdict on.
const ADMISSION_REVIEW: (&str, &str) = ("admission.k8s.io/v1", "AdmissionReview");
const CONVERSION_REVIEW: (&str, &str) = ("apiextensions.k8s.io/v1", "ConversionReview");

/// The cluster's current configuration objects, or why they cannot be had right now.
pub type Current =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<ClusterObjects, String>> + Send + Sync>;

/// Serves with `tls` (the process's versions and suites, certificates from a [`CertSlot`]);
/// `listening` is called once the port is open.
pub async fn serve(
    bind: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    current: Current,
    listening: impl FnOnce(),
) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(tls);
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
    let admission = path.starts_with("/validate");
    if !admission && path != "/convert" {
        return Ok(reply(StatusCode::NOT_FOUND, Bytes::new()));
    }
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(refused) => return Ok(refused),
    };
    let answer = if admission {
        match admission_review(&body) {
            Ok(review) => Ok(json(&validate(review, &current).await)),
            Err(e) => Err(e),
        }
    } else {
        conversion_review(&body).map(|r| json(&convert(r)))
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

/// The body, never buffered past [`MAX_BODY`]: one whose length says it is bigger is refused
/// before a byte of it is read, one sent without a length as soon as it runs past (413 either
/// way); one that breaks off is a 400.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Full<Bytes>>> {
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            Bytes::from(format!("a review is {} MiB at most", MAX_BODY >> 20)),
        )
    };
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(reply(StatusCode::BAD_REQUEST, Bytes::from(format!("reading the review: {e}")))),
    }
}

fn admission_review(body: &[u8]) -> Result<AdmissionReview<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    expect(&review.types, review.request.is_some(), ADMISSION_REVIEW)?;
    Ok(review)
}

fn conversion_review(body: &[u8]) -> Result<ConversionReview, String> {
    let review: ConversionReview = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    expect(&review.types, review.request.is_some(), CONVERSION_REVIEW)?;
    Ok(review)
}

fn expect(types: &TypeMeta, has_request: bool, (api_version, kind): (&str, &str)) -> Result<(), String> {
    if types.api_version != api_version || types.kind != kind {
        return Err(format!("expected {api_version} {kind}, got {:?} {:?}", types.api_version, types.kind));
    }
    if !has_request {
        return Err(format!("{kind} without a request"));
    }
    Ok(())
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

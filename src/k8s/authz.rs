//! Asks the API server who a bearer token belongs to (TokenReview) and whether that user may
//! make a request to a non-resource URL (SubjectAccessReview); the rules and the cache are
//! `metrics_auth`'s.

use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::{K8sError, api_error};
use crate::metrics_auth::{Decision, DecisionCache};

pub struct Authorizer {
    client: Client,
    cache: Mutex<DecisionCache>,
}

impl Authorizer {
    pub fn new(client: Client) -> Authorizer {
        Authorizer { client, cache: Mutex::default() }
    }

    /// The decision for `token` asking `verb` on `path`: from the cache, or from two API
    /// calls. An API server that cannot be asked is an error, never remembered.
    pub async fn decide(&self, token: &str, verb: &str, path: &str) -> Result<Decision, K8sError> {
        if let Some(d) = self.lock().get(token, verb, path, Instant::now()) {
            return Ok(d);
        }
        let d = self.ask(token, verb, path).await?;
        self.lock().put(token, verb, path, d.clone(), Instant::now());
        Ok(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DecisionCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, token: &str, verb: &str, path: &str) -> Result<Decision, K8sError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: None },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(api_error("creating", "TokenReview"))?;
        let status = reviewed.status.unwrap_or_default();
        let user = match status.user.filter(|_| status.authenticated == Some(true)) {
            Some(u) => u,
            None => {
                let why =
                    status.error.filter(|e| !e.is_empty()).unwrap_or_else(|| "token not accepted".into());
                return Ok(Decision::Unauthenticated(why));
            }
        };
        let name = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some(verb.to_string()),
                }),
                resource_attributes: None,
            },
            ..Default::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(api_error("creating", "SubjectAccessReview"))?;
        let s = answered.status.unwrap_or_default();
        Ok(if s.allowed && s.denied != Some(true) {
            Decision::Allow
        } else {
            Decision::Forbidden(format!("{name} may not {verb} {path}"))
        })
    }
}

//! Leader election on a coordination.k8s.io Lease, so two controller replicas are safe: only
//! the holder allocates; a holder that stops renewing is replaced once its lease runs out.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::K8sError;

/// What to do about the lease, given what it says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    /// No lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder let it run out (or released it): take it.
    TakeOver,
    /// Someone else holds it and is renewing.
    Wait,
}

/// Decides from the lease's spec; `now` and the renew time in microseconds since the epoch.
pub fn step(spec: Option<&LeaseSpec>, me: &str, now_micros: i64) -> LeaseStep {
    let Some(spec) = spec else { return LeaseStep::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return LeaseStep::Renew;
    }
    let renewed = spec.renew_time.as_ref().map_or(0, |t| t.0.as_microsecond());
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1_000_000;
    if holder.is_empty() || renewed + duration < now_micros { LeaseStep::TakeOver } else { LeaseStep::Wait }
}

#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: whether we hold the lease afterwards. Conflicting writes mean someone else
    /// moved first, which is an answer, not an error.
    pub async fn try_hold(&self) -> Result<bool, K8sError> {
        let fail = |e: kube::Error| super::api_error("updating", format!("Lease {}", self.name))(e);
        let current = self.api.get_opt(&self.name).await.map_err(fail)?;
        let now = Timestamp::now().as_microsecond();
        match step(current.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, now) {
            LeaseStep::Wait => Ok(false),
            LeaseStep::Create => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(self.spec(0)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(fail(e)),
                }
            }
            step @ (LeaseStep::Renew | LeaseStep::TakeOver) => {
                let mut lease = current.expect("a lease to renew or take over");
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0) + i32::from(step == LeaseStep::TakeOver);
                let mut spec = self.spec(transitions);
                if step == LeaseStep::Renew {
                    spec.acquire_time = old.acquire_time;
                }
                lease.spec = Some(spec);
                // resourceVersion stays set: a concurrent writer makes this a 409.
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(fail(e)),
                }
            }
        }
    }

    /// Gives the lease up so a standby takes over at once instead of after it runs out.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_s: i64, duration_s: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_s).unwrap())),
            lease_duration_seconds: Some(duration_s),
            ..Default::default()
        }
    }

    #[test]
    fn the_lease_goes_to_whoever_finds_it_free_or_run_out() {
        let s = 1_000_000;
        assert_eq!(step(None, "a", 0), LeaseStep::Create);
        assert_eq!(step(Some(&spec("a", 100, 6)), "a", 200 * s), LeaseStep::Renew);
        assert_eq!(step(Some(&spec("b", 100, 6)), "a", 105 * s), LeaseStep::Wait);
        assert_eq!(step(Some(&spec("b", 100, 6)), "a", 106 * s), LeaseStep::Wait);
        assert_eq!(step(Some(&spec("b", 100, 6)), "a", 106 * s + 1), LeaseStep::TakeOver);
        assert_eq!(step(Some(&spec("", 100, 6)), "a", 101 * s), LeaseStep::TakeOver, "released");
    }
}

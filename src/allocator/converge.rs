//! One Service's allocation decision, and a whole-cluster replay built from it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use super::{AllocError, Allocation, Allocator};
use crate::config::Family;
use crate::service::{Request, ServiceKey, join};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to record on the Service, with MetalLB's reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: String) -> Event {
        Event { type_: EventType::Normal, reason, message }
    }
    fn warning(reason: &'static str, message: String) -> Event {
        Event { type_: EventType::Warning, reason, message }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allocation: Option<Allocation>,
    /// Why the Service has no IP, when it has none.
    pub pending: Option<String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Re-claim IPs the Service already holds; never take new ones. Used first on a restart so
    /// that no Service can take an address another one still legitimately holds.
    KeepOnly,
    /// Keep what is valid, allocate what is missing.
    Full,
}

/// Decides one Service against the allocator's current state, as MetalLB's convergeBalancer:
/// keep valid IPs, clear invalid ones (saying why), then allocate if needed.
pub fn converge(alloc: &mut Allocator, req: &Request, mode: Mode) -> Outcome {
    let mut events = Vec::new();
    if !alloc.has_pools() {
        alloc.release(&req.key);
        return Outcome { allocation: None, pending: Some(AllocError::NoPools.to_string()), events };
    }
    let held: Vec<IpAddr> = match alloc.allocation(&req.key) {
        Some(a) => a.ips.clone(),
        None => req.current_ips.clone(),
    };
    if !held.is_empty() {
        match still_valid(alloc, req, &held)
            .and_then(|()| alloc.assign(req, &held).map_err(|e| e.to_string()))
        {
            Ok(mut a) => {
                if mode == Mode::Full && req.prefer_dual_stack && a.ips.len() == 1 {
                    add_missing_family(alloc, req, &mut a, &mut events);
                }
                return Outcome { allocation: Some(a), pending: None, events };
            }
            Err(why) => {
                alloc.release(&req.key);
                events.push(Event::normal(
                    "ClearAssignment",
                    format!("current IP {} cleared: {why}", join(&held)),
                ));
            }
        }
    }
    if mode == Mode::KeepOnly {
        return Outcome {
            allocation: None,
            pending: Some("waiting for Services that hold IPs".into()),
            events,
        };
    }
    let result = if req.requested_ips.is_empty() {
        alloc.allocate(req)
    } else {
        alloc.assign(req, &req.requested_ips)
    };
    match result {
        Ok(a) => {
            events.push(Event::normal("IPAllocated", format!("Assigned IP [{}]", join(&a.ips))));
            Outcome { allocation: Some(a), pending: None, events }
        }
        Err(e) => {
            let reason = if req.requested_ips.is_empty() {
                format!("Failed to allocate IP for {:?}: {e}", req.key)
            } else {
                format!(
                    "Failed to allocate requested IP [{}] for {:?}: {e}",
                    join(&req.requested_ips),
                    req.key
                )
            };
            events.push(Event::warning("AllocationFailed", reason));
            Outcome { allocation: None, pending: Some(e.to_string()), events }
        }
    }
}

/// Reasons a held IP set no longer fits the Service, before asking the pools.
fn still_valid(alloc: &Allocator, req: &Request, held: &[IpAddr]) -> Result<(), String> {
    let held_fams: BTreeSet<Family> = held.iter().map(Family::of).collect();
    let want: BTreeSet<Family> = req.families.iter().copied().collect();
    let tolerated = req.prefer_dual_stack && held.len() == 1 && want.is_superset(&held_fams);
    if held_fams != want && !tolerated {
        return Err("the Service's IP families changed".into());
    }
    if !req.requested_ips.is_empty() {
        let a: BTreeSet<&IpAddr> = req.requested_ips.iter().collect();
        let b: BTreeSet<&IpAddr> = held.iter().collect();
        if a != b {
            return Err(format!("the Service now requests [{}]", join(&req.requested_ips)));
        }
    }
    if let Some(requested) = &req.pool {
        let current = alloc.pool_of(held[0]);
        if current != Some(requested.as_str()) {
            return Err(format!("the Service now asks for pool {requested:?}"));
        }
    }
    Ok(())
}

/// PreferDualStack with one IP: take the other family from the same pool if it has one free.
fn add_missing_family(alloc: &mut Allocator, req: &Request, a: &mut Allocation, events: &mut Vec<Event>) {
    let have = Family::of(&a.ips[0]);
    let missing = have.other();
    match alloc.candidate(&a.pool, missing, req) {
        Some(ip) => {
            let mut ips = a.ips.clone();
            ips.push(ip);
            ips.sort_by_key(|ip| req.families.iter().position(|f| *f == Family::of(ip)));
            if let Ok(new) = alloc.assign(req, &ips) {
                events.push(Event::normal("IPAllocated", format!("Assigned additional IP {ip}")));
                *a = new;
            }
        }
        None => events.push(Event::normal(
            "AdditionalAssignFailed",
            format!("no {missing} address free in pool {:?}; keeping {} only", a.pool, a.ips[0]),
        )),
    }
}

/// Replays every Service against fresh pools, as on a controller start.
///
/// Services that already hold IPs re-claim them first (oldest first, then by name), so a
/// pending Service can never take an address someone still holds; then every Service is
/// converged by name. The result depends only on the set of Services, not on their order.
pub fn rebuild(alloc: &mut Allocator, requests: &[Request]) -> BTreeMap<ServiceKey, Outcome> {
    reconverge(alloc, requests.iter())
}

/// [`rebuild`]'s two phases for some Services against an allocator that holds the others:
/// what a long-lived controller runs for the Services that changed since its last pass.
pub fn reconverge<'r>(
    alloc: &mut Allocator,
    requests: impl IntoIterator<Item = &'r Request>,
) -> BTreeMap<ServiceKey, Outcome> {
    let mut all: Vec<&Request> = requests.into_iter().collect();
    let mut holders: Vec<&Request> = all.iter().copied().filter(|r| !r.current_ips.is_empty()).collect();
    holders.sort_by(|a, b| {
        (a.created.is_none(), &a.created, &a.key).cmp(&(b.created.is_none(), &b.created, &b.key))
    });
    let mut events: BTreeMap<ServiceKey, Vec<Event>> = BTreeMap::new();
    for req in holders {
        let out = converge(alloc, req, Mode::KeepOnly);
        events.entry(req.key.clone()).or_default().extend(out.events);
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    let mut outcomes = BTreeMap::new();
    for req in all {
        // Keep-only already cleared an invalid IP; don't report that twice.
        let replay = Request { current_ips: Vec::new(), ..req.clone() };
        let req =
            if alloc.allocation(&req.key).is_none() && events.contains_key(&req.key) { &replay } else { req };
        let mut out = converge(alloc, req, Mode::Full);
        let mut evs = events.remove(&req.key).unwrap_or_default();
        evs.append(&mut out.events);
        out.events = evs;
        outcomes.insert(req.key.clone(), out);
    }
    outcomes
}

//! IP allocation, pure and in memory, rebuilt from Services on every start.
//!
//! The state is what Services hold; free space is kept per pool and family as interval sets
//! ([`free::FreeSet`]), so allocation cost depends on how fragmented a pool is, not on its size.
//! [`converge`] decides one Service the way MetalLB does; [`rebuild`] replays a whole cluster so
//! that a restart never moves a valid IP, whatever order Services arrive in.

mod converge;
#[cfg(test)]
pub(crate) mod fixtures;
mod free;
#[cfg(test)]
mod props;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

pub use converge::{Event, EventType, Mode, Outcome, converge, rebuild, reconverge};

use crate::config::address::{from_u128, to_u128};
use crate::config::{Family, Pool};
use crate::service::{Port, Request, ServiceKey};
use free::FreeSet;

/// What one Service holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub pool: String,
    pub ips: Vec<IpAddr>,
    pub ports: BTreeSet<Port>,
    pub sharing: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no IPAddressPool is configured")]
    NoPools,
    #[error("{0} is not in any IPAddressPool")]
    NotInPool(IpAddr),
    #[error("{0} and {1} are in different pools ({2} and {3}); both IPs must come from one pool")]
    DifferentPools(IpAddr, IpAddr, String, String),
    #[error("{ip} is in pool {pool:?}, not in the requested pool {requested:?}")]
    RequestedPoolMismatch { ip: IpAddr, pool: String, requested: String },
    #[error("IPAddressPool {0:?} does not exist")]
    UnknownPool(String),
    #[error(
        "IPAddressPool {0:?} is not allowed for this Service (serviceAllocation namespaces or selectors)"
    )]
    PoolNotAllowed(String),
    #[error("{0} ends in .0 or .255 and pool {1:?} avoids such addresses (avoidBuggyIPs)")]
    Buggy(IpAddr, String),
    #[error("{ip} is already used by {holder} ({why})")]
    InUse { ip: IpAddr, holder: ServiceKey, why: &'static str },
    #[error("no available IPs in {0}")]
    Exhausted(String),
    #[error("no IPAddressPool may serve this Service: {0}")]
    NoEligiblePool(String),
}

#[derive(Debug, Clone)]
struct PoolState {
    pool: Pool,
    free: [FreeSet; 2],
    /// IPs held under a sharing identity, per family, for reuse by compatible Services.
    shared: HashMap<(Family, String, String), BTreeSet<u128>>,
    in_use: [u128; 2],
}

fn fi(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// IPv4 addresses ending in .0 or .255, which some client stacks mishandle.
fn is_buggy(family: Family, v: u128) -> bool {
    family == Family::V4 && matches!(v & 0xff, 0 | 0xff)
}

/// Who holds one IP. Ports live in each holder's [`Allocation`] only; most IPs have one user.
#[derive(Debug, Clone)]
struct IpUse {
    pool: String,
    sharing: Option<(String, String)>,
    users: Vec<ServiceKey>,
}

/// Address counts of one pool, for its status and metrics. Serialised as decimal strings: a v6
/// pool holds more addresses than a JSON number carries exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    #[serde(rename = "assignedIPv4", serialize_with = "as_decimal")]
    pub assigned_v4: u128,
    #[serde(rename = "assignedIPv6", serialize_with = "as_decimal")]
    pub assigned_v6: u128,
    #[serde(rename = "availableIPv4", serialize_with = "as_decimal")]
    pub available_v4: u128,
    #[serde(rename = "availableIPv6", serialize_with = "as_decimal")]
    pub available_v6: u128,
}

fn as_decimal<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pools: BTreeMap<String, PoolState>,
    allocations: HashMap<ServiceKey, Allocation>,
    ips: HashMap<IpAddr, IpUse>,
}

impl Allocator {
    pub fn new(pools: &BTreeMap<String, Pool>) -> Allocator {
        let mut a = Allocator::default();
        a.install_pools(pools);
        a
    }

    fn install_pools(&mut self, pools: &BTreeMap<String, Pool>) {
        self.pools = pools
            .iter()
            .map(|(name, pool)| {
                let mut free = [FreeSet::default(), FreeSet::default()];
                for r in &pool.ranges {
                    free[fi(r.family)].add_range(r.first, r.last);
                }
                let state = PoolState { pool: pool.clone(), free, shared: HashMap::new(), in_use: [0, 0] };
                (name.clone(), state)
            })
            .collect();
    }

    pub fn has_pools(&self) -> bool {
        !self.pools.is_empty()
    }

    pub fn allocation(&self, key: &str) -> Option<&Allocation> {
        self.allocations.get(key)
    }

    pub fn allocations(&self) -> impl Iterator<Item = (&ServiceKey, &Allocation)> {
        self.allocations.iter()
    }

    /// Replaces the pools. Allocations whose IPs still sit together in one pool are kept (moved
    /// to that pool if it was renamed or split); the keys of the others are returned, released.
    pub fn set_pools(&mut self, pools: &BTreeMap<String, Pool>) -> Vec<ServiceKey> {
        let old = std::mem::take(&mut self.allocations);
        self.ips.clear();
        self.install_pools(pools);
        let mut keys: Vec<&ServiceKey> = old.keys().collect();
        keys.sort();
        let mut dropped = Vec::new();
        for key in keys {
            let a = &old[key];
            match self.pool_of_all(&a.ips) {
                Ok(pool) => {
                    let a = Allocation { pool, ..a.clone() };
                    self.insert(key, a);
                }
                Err(_) => dropped.push(key.clone()),
            }
        }
        dropped
    }

    pub fn pool_of(&self, ip: IpAddr) -> Option<&str> {
        self.pools
            .values()
            .find(|p| p.pool.ranges.iter().any(|r| r.contains(ip)))
            .map(|p| p.pool.name.as_str())
    }

    fn pool_of_all(&self, ips: &[IpAddr]) -> Result<String, AllocError> {
        let mut found: Option<(IpAddr, &str)> = None;
        for ip in ips {
            let pool = self.pool_of(*ip).ok_or(AllocError::NotInPool(*ip))?;
            if let Some((first_ip, first_pool)) = found.filter(|(_, p)| *p != pool) {
                return Err(AllocError::DifferentPools(first_ip, *ip, first_pool.into(), pool.into()));
            }
            found.get_or_insert((*ip, pool));
        }
        found.map(|(_, p)| p.to_string()).ok_or(AllocError::NoPools)
    }

    /// Whether `req` may hold `ip` beside whoever holds it now.
    fn check_shareable(&self, req: &Request, ip: IpAddr) -> Result<(), AllocError> {
        let Some(used) = self.ips.get(&ip) else { return Ok(()) };
        let mut others = used.users.iter().filter(|k| **k != req.key).peekable();
        let Some(holder) = others.peek() else {
            return Ok(()); // only this Service holds it: it may even change its sharing key
        };
        let in_use = |why| Err(AllocError::InUse { ip, holder: (*holder).clone(), why });
        match (&used.sharing, req.sharing()) {
            (None, _) => return in_use("not shared"),
            (Some(_), None) => return in_use("this Service has no allow-shared-ip key"),
            (Some((k, _)), Some((rk, _))) if *k != rk => return in_use("different allow-shared-ip key"),
            (Some((_, b)), Some((_, rb))) if *b != rb => {
                return in_use("externalTrafficPolicy or pod selector differ");
            }
            _ => {}
        }
        for other in others {
            let ports = &self.allocations.get(other).expect("every user has an allocation").ports;
            if let Some(p) = ports.intersection(&req.ports).next() {
                return Err(AllocError::InUse { ip, holder: other.clone(), why: port_clash(p) });
            }
        }
        Ok(())
    }

    /// Claims specific IPs for `req` (requested or already held). On error nothing changes.
    pub fn assign(&mut self, req: &Request, ips: &[IpAddr]) -> Result<Allocation, AllocError> {
        if self.pools.is_empty() {
            return Err(AllocError::NoPools);
        }
        let pool_name = self.pool_of_all(ips)?;
        if let Some(requested) = req.pool.as_ref().filter(|p| **p != pool_name) {
            return Err(AllocError::RequestedPoolMismatch {
                ip: ips[0],
                pool: pool_name,
                requested: requested.clone(),
            });
        }
        let pool = &self.pools[&pool_name].pool;
        if !pool.admits(&req.namespace, &req.labels) {
            return Err(AllocError::PoolNotAllowed(pool_name));
        }
        for ip in ips {
            if pool.avoid_buggy_ips && is_buggy(Family::of(ip), to_u128(*ip)) {
                return Err(AllocError::Buggy(*ip, pool_name));
            }
            self.check_shareable(req, *ip)?;
        }
        let a = Allocation {
            pool: pool_name,
            ips: ips.to_vec(),
            ports: req.ports.clone(),
            sharing: req.sharing(),
        };
        self.release(&req.key);
        self.insert(&req.key, a.clone());
        Ok(a)
    }

    /// Picks IPs for `req`: from its requested pool, else from the pools its serviceAllocation
    /// pins it to (by priority, then name), else from the unrestricted autoAssign pools (by name).
    pub fn allocate(&mut self, req: &Request) -> Result<Allocation, AllocError> {
        if self.pools.is_empty() {
            return Err(AllocError::NoPools);
        }
        let tiers: Vec<Vec<&str>> = if let Some(name) = &req.pool {
            let state = self.pools.get(name).ok_or_else(|| AllocError::UnknownPool(name.clone()))?;
            if !state.pool.admits(&req.namespace, &req.labels) {
                return Err(AllocError::PoolNotAllowed(name.clone()));
            }
            vec![vec![name.as_str()]]
        } else {
            let mut pinned: Vec<&PoolState> = self
                .pools
                .values()
                .filter(|p| p.pool.auto_assign && p.pool.allocation.is_some())
                .filter(|p| p.pool.admits(&req.namespace, &req.labels))
                .collect();
            pinned.sort_by_key(|p| {
                let prio = p.pool.allocation.as_ref().map_or(0, |a| a.priority);
                (prio == 0, prio, p.pool.name.as_str())
            });
            let open = self.pools.values().filter(|p| p.pool.auto_assign && p.pool.allocation.is_none());
            vec![
                pinned.into_iter().map(|p| p.pool.name.as_str()).collect(),
                open.map(|p| p.pool.name.as_str()).collect(),
            ]
        };
        let considered: Vec<&str> = tiers.iter().flatten().copied().collect();
        if considered.is_empty() {
            return Err(AllocError::NoEligiblePool(
                "every pool has autoAssign false or a serviceAllocation that excludes it".into(),
            ));
        }
        let (primary, secondary) = (req.families[0], req.families.get(1).copied());
        let mut choice: Option<(String, Vec<IpAddr>)> = None;
        'tiers: for tier in &tiers {
            let pick = |fams: &[Family]| -> Option<(String, Vec<IpAddr>)> {
                tier.iter().find_map(|name| {
                    let ips: Option<Vec<IpAddr>> =
                        fams.iter().map(|f| self.candidate(name, *f, req)).collect();
                    ips.map(|ips| (name.to_string(), ips))
                })
            };
            let attempts: Vec<Vec<Family>> = match secondary {
                None => vec![vec![primary]],
                Some(s) if req.prefer_dual_stack => vec![vec![primary, s], vec![primary], vec![s]],
                Some(s) => vec![vec![primary, s]],
            };
            for fams in attempts {
                if let Some(found) = pick(&fams) {
                    choice = Some(found);
                    break 'tiers;
                }
            }
        }
        let Some((pool, ips)) = choice else {
            let what = match secondary {
                Some(_) if !req.prefer_dual_stack => "pools with both IPv4 and IPv6 free",
                _ => "pools",
            };
            return Err(AllocError::Exhausted(format!("{what} [{}]", considered.join(", "))));
        };
        let a = Allocation { pool, ips, ports: req.ports.clone(), sharing: req.sharing() };
        self.release(&req.key);
        self.insert(&req.key, a.clone());
        Ok(a)
    }

    /// The first address of `family` in pool `name` that `req` could take, scanning entries in
    /// the order they were listed; a compatible shared IP counts as free.
    pub(crate) fn candidate(&self, name: &str, family: Family, req: &Request) -> Option<IpAddr> {
        let state = self.pools.get(name)?;
        let avoid = state.pool.avoid_buggy_ips;
        let shared = req.sharing().and_then(|(k, b)| state.shared.get(&(family, k, b)));
        for range in state.pool.ranges.iter().filter(|r| r.family == family) {
            let mut free = None;
            let mut x = range.first;
            while let Some(c) = state.free[fi(family)].first_at_or_after(x).filter(|c| *c <= range.last) {
                if avoid && is_buggy(family, c) {
                    x = c + 1;
                    continue;
                }
                free = Some(c);
                break;
            }
            let reuse = shared.and_then(|set| {
                set.range(range.first..=range.last.min(free.unwrap_or(u128::MAX))).copied().find(|v| {
                    !(avoid && is_buggy(family, *v))
                        && self.check_shareable(req, from_u128(family, *v)).is_ok()
                })
            });
            if let Some(v) = [free, reuse].into_iter().flatten().min() {
                return Some(from_u128(family, v));
            }
        }
        None
    }

    fn insert(&mut self, key: &ServiceKey, a: Allocation) {
        for ip in &a.ips {
            let (family, v) = (Family::of(ip), to_u128(*ip));
            let state = self.pools.get_mut(&a.pool).expect("allocations only name installed pools");
            let used = self.ips.entry(*ip).or_insert_with(|| {
                state.free[fi(family)].take(v);
                state.in_use[fi(family)] += 1;
                IpUse { pool: a.pool.clone(), sharing: a.sharing.clone(), users: Vec::new() }
            });
            if used.users.iter().all(|k| k == key) {
                // Sole holder: its sharing identity is the IP's.
                if let Some((k, b)) = &used.sharing
                    && let Some(set) = state.shared.get_mut(&(family, k.clone(), b.clone()))
                {
                    set.remove(&v);
                }
                used.sharing = a.sharing.clone();
            }
            if let Some((k, b)) = &used.sharing {
                state.shared.entry((family, k.clone(), b.clone())).or_default().insert(v);
            }
            if !used.users.contains(key) {
                used.users.push(key.clone());
            }
        }
        self.allocations.insert(key.clone(), a);
    }

    /// Gives back what `key` holds; IPs still used by sharing Services stay taken.
    pub fn release(&mut self, key: &str) -> Option<Allocation> {
        let a = self.allocations.remove(key)?;
        for ip in &a.ips {
            let Some(used) = self.ips.get_mut(ip) else { continue };
            used.users.retain(|k| k != key);
            if !used.users.is_empty() {
                continue;
            }
            let used = self.ips.remove(ip).expect("present");
            let (family, v) = (Family::of(ip), to_u128(*ip));
            if let Some(state) = self.pools.get_mut(&used.pool) {
                state.free[fi(family)].give(v);
                state.in_use[fi(family)] -= 1;
                if let Some((k, b)) = used.sharing
                    && let Some(set) = state.shared.get_mut(&(family, k, b))
                {
                    set.remove(&v);
                }
            }
        }
        Some(a)
    }

    pub fn stats(&self, pool: &str) -> Option<PoolStats> {
        let state = self.pools.get(pool)?;
        let capacity = |f: Family| -> u128 {
            state
                .pool
                .ranges
                .iter()
                .filter(|r| r.family == f)
                .map(|r| {
                    let buggy =
                        if state.pool.avoid_buggy_ips { count_buggy(r.family, r.first, r.last) } else { 0 };
                    r.size() - buggy
                })
                .fold(0u128, u128::saturating_add)
        };
        let (u4, u6) = (state.in_use[0], state.in_use[1]);
        Some(PoolStats {
            assigned_v4: u4,
            assigned_v6: u6,
            available_v4: capacity(Family::V4).saturating_sub(u4),
            available_v6: capacity(Family::V6).saturating_sub(u6),
        })
    }
}

fn port_clash(p: &Port) -> &'static str {
    match p.0 {
        crate::service::Protocol::Tcp => "both use the same TCP port",
        crate::service::Protocol::Udp => "both use the same UDP port",
        crate::service::Protocol::Sctp => "both use the same SCTP port",
    }
}

/// How many addresses in [first, last] end in .0 or .255.
fn count_buggy(family: Family, first: u128, last: u128) -> u128 {
    if family != Family::V4 {
        return 0;
    }
    // Values v with v % 256 == b, counted as (#multiples up to last) - (#multiples below first).
    let count = |b: u128| -> u128 {
        let upto = |n: u128| if n < b { 0 } else { (n - b) / 256 + 1 };
        upto(last) - if first == 0 { 0 } else { upto(first - 1) }
    };
    count(0) + count(255)
}

#[cfg(test)]
mod tests;

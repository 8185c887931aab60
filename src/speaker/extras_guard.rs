//! Keeps a bad `bgpextras` from holding the node's own configuration hostage.
//!
//! Every desired configuration ends with the operator's extras. When FRR refuses a
//! configuration whose extras are new, the extras are to blame: they are set aside and the same
//! configuration goes again with the extras FRR last accepted, so Services keep being announced
//! while the extras wait to be fixed. FRR never runs part of a refused change (frr-agent checks
//! a change as a whole and rolls back a batch that fails half way).

use crate::bgp::extras;

/// What the speaker wants FRR to run: the full frr.conf and the extras at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub config: String,
    pub extras: Option<String>,
}

/// Which text [`ExtrasGuard::text`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The configuration as desired; `new_extras` when its extras are not the accepted ones.
    AsDesired { new_extras: bool },
    /// With the accepted extras in place of refused ones.
    Fallback,
}

#[derive(Debug, Default)]
pub struct ExtrasGuard {
    /// The extras FRR runs (None: none yet, or none given).
    accepted: Option<String>,
    /// Extras FRR refused; not tried again until they change.
    refused: Option<String>,
}

impl ExtrasGuard {
    /// The text to send for `want`.
    pub fn text(&self, want: &Desired) -> (String, Sent) {
        let new_extras = want.extras.is_some() && want.extras != self.accepted;
        let as_desired = (want.config.clone(), Sent::AsDesired { new_extras });
        if !new_extras || want.extras != self.refused {
            return as_desired;
        }
        let given = want.extras.as_deref().unwrap_or_default();
        match extras::strip(&want.config, given) {
            Some(base) => {
                (extras::append(base, self.accepted.as_deref().unwrap_or_default()), Sent::Fallback)
            }
            // Not built by `extras::append`: nothing to take off.
            None => as_desired,
        }
    }

    /// FRR runs what [`ExtrasGuard::text`] gave for `want`.
    pub fn applied(&mut self, want: &Desired, sent: Sent) {
        if let Sent::AsDesired { .. } = sent {
            self.accepted = want.extras.clone();
            self.refused = None;
        }
    }

    /// FRR refused what [`ExtrasGuard::text`] gave for `want`: true when the extras are to
    /// blame (send again at once: [`ExtrasGuard::text`] now leaves them out).
    pub fn refused(&mut self, want: &Desired, sent: Sent) -> bool {
        let blamed = sent == Sent::AsDesired { new_extras: true };
        if blamed {
            self.refused = want.extras.clone();
        }
        blamed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(extras: Option<&str>) -> Desired {
        let base = "router bgp 64512\nexit\n";
        Desired {
            config: extras.map_or(base.to_string(), |e| extras::append(base, e)),
            extras: extras.map(str::to_string),
        }
    }

    #[test]
    fn refused_extras_fall_back_to_the_last_accepted_ones_until_they_change() {
        let mut g = ExtrasGuard::default();
        let good = want(Some("ip prefix-list a seq 5 permit 203.0.113.0/24"));
        let (text, sent) = g.text(&good);
        assert_eq!(sent, Sent::AsDesired { new_extras: true });
        assert!(text.ends_with("203.0.113.0/24\n"));
        g.applied(&good, sent);

        let bad = want(Some("ip prefix-list a seq 5 permit 999.0.0.0/8"));
        let (text, sent) = g.text(&bad);
        assert!(text.contains("999"));
        assert!(g.refused(&bad, sent));
        // Again, with what FRR accepted last.
        let (text, sent) = g.text(&bad);
        assert_eq!((text.as_str(), sent), (good.config.as_str(), Sent::Fallback));
        g.applied(&bad, sent);
        // A Service change later: still the good extras, the bad ones are not retried.
        let (text, _) = g.text(&bad);
        assert!(!text.contains("999"), "{text}");
        // Fixed: tried, and accepted.
        let fixed = want(Some("ip prefix-list a seq 5 permit 198.51.100.0/24"));
        let (text, sent) = g.text(&fixed);
        assert!(text.contains("198.51.100.0/24"));
        g.applied(&fixed, sent);
        assert_eq!(g.text(&fixed), (fixed.config.clone(), Sent::AsDesired { new_extras: false }));
        // Removed: the configuration goes without them, and none count as accepted.
        let none = want(None);
        let (text, sent) = g.text(&none);
        g.applied(&none, sent);
        assert!(!text.contains("prefix-list"));
        assert_eq!(g.accepted, None);
    }

    #[test]
    fn without_new_extras_a_refusal_is_not_theirs() {
        let mut g = ExtrasGuard::default();
        let none = want(None);
        let (_, sent) = g.text(&none);
        assert!(!g.refused(&none, sent));
        // Refused extras with nothing accepted before: the configuration goes without any.
        let bad = want(Some("bogus line"));
        let (_, sent) = g.text(&bad);
        assert!(g.refused(&bad, sent));
        assert_eq!(g.text(&bad), (none.config.clone(), Sent::Fallback));
    }
}

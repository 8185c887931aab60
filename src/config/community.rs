//! BGP community values: `A:B` (RFC 1997) and `large:A:B:C` (RFC 8092).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommunityValue {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl CommunityValue {
    pub fn parse(text: &str) -> Result<CommunityValue, String> {
        if let Some(rest) = text.strip_prefix("large:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
            return match nums.as_deref() {
                Some([a, b, c]) => Ok(CommunityValue::Large(*a, *b, *c)),
                _ => Err(format!("{text:?} is not a large community (large:A:B:C, each 0 to 4294967295)")),
            };
        }
        let parts: Vec<&str> = text.split(':').collect();
        let nums: Option<Vec<u16>> = parts.iter().map(|p| p.parse().ok()).collect();
        match nums.as_deref() {
            Some([a, b]) => Ok(CommunityValue::Standard(*a, *b)),
            _ => Err(format!("{text:?} is not a community (A:B with each 0 to 65535, or large:A:B:C)")),
        }
    }

    /// Only strings with a colon can be literal values; anything else names a Community alias.
    pub fn looks_literal(text: &str) -> bool {
        text.contains(':')
    }

    fn sort_key(&self) -> (u64, u32, u32) {
        match *self {
            CommunityValue::Standard(a, b) => ((a as u64) << 16 | b as u64, 0, 0),
            CommunityValue::Large(a, b, c) => (a as u64, b, c),
        }
    }
}

/// MetalLB's total order: `A:B` sorts as the large community `(A*65536+B):0:0`.
impl Ord for CommunityValue {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key()).then_with(|| {
            matches!(self, CommunityValue::Large(..)).cmp(&matches!(other, CommunityValue::Large(..)))
        })
    }
}

impl PartialOrd for CommunityValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(CommunityValue::parse("1234:1").unwrap(), CommunityValue::Standard(1234, 1));
        assert_eq!(CommunityValue::parse("large:1:2:3").unwrap(), CommunityValue::Large(1, 2, 3));
        for bad in ["99999999:1", "lar:1:2:3", "1:2:3", "large:1:2", "a:b", "large:1:2:4294967296"] {
            assert!(CommunityValue::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CommunityValue::parse("large:1:2:3").unwrap().to_string(), "large:1:2:3");
    }

    #[test]
    fn standard_sorts_as_its_large_equivalent() {
        let std = CommunityValue::Standard(1, 0); // = 65536:0:0
        assert!(std > CommunityValue::Large(65535, 9, 9));
        assert!(std < CommunityValue::Large(65536, 0, 1));
    }
}

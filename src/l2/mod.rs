//! Layer 2 mode. [`election`] decides, purely, which node answers ARP/NDP for each Service IP;
//! the packet and socket halves answer for it.

pub mod election;
pub mod groups;
pub mod interfaces;
pub mod membership;
pub mod packet;
pub mod quorum;
pub mod reach;
pub mod responder;
pub mod restart_hold;
pub mod socket;

pub use election::{L2Announcement, L2NodePlan, elect, plan_node};

#[cfg(test)]
mod tests;

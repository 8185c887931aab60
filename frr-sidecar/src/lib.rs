//! frr-agent: owns one FRR instance beside the ferrolb speaker.
//!
//! The pure parts live here: [`tree`] reads FRR configuration into contexts, [`diff`] turns one
//! configuration into another with a single vtysh script that leaves untouched sessions alone.
#![forbid(unsafe_code)]

pub mod apply;
pub mod diff;
pub mod tree;

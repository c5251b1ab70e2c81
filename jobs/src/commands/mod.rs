//! Commands for people, above the jobs: what finance, leadership and a newcomer run
//! at a terminal besides the close itself (`payouts show|approve|send`, `report`,
//! `demo`, `leads assign|show`, `scorecard show`, `simulate`). They take the [`crate::app::App`]; jobs never import them.

pub mod demo;
pub mod leads;
pub mod payouts;
pub mod report;
pub mod scorecard;
pub mod simulate;

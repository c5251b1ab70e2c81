//! Commands for people, above the jobs: what finance, leadership and a newcomer run
//! at a terminal besides the close itself (`payouts show|approve|send`, `report`,
//! `scorecard show`, `demo`). They take the [`crate::app::App`]; jobs never import them.

pub mod demo;
pub mod payouts;
pub mod report;
pub mod scorecard;

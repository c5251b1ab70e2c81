//! `opnet report --period M --out FILE`: the leadership report of a closed period,
//! rendered from the database at the targets of the plan in force for M.

use crate::app::App;
use crate::jobs::network_health::report::Report;
use crate::jobs::network_health::stored_report;
use opnet_pipelines::Period;

/// The report of `period` from the rows of its close.
pub async fn report(app: &App, period: Period) -> anyhow::Result<Report> {
    let plan = app.config.plan.for_period(period)?;
    let mut conn = app.db.pool.acquire().await?;
    Ok(stored_report(&mut conn, period, plan).await?)
}

//! density-real: being written (see the helper's brief).

use crate::Opts;
use crate::report::Row;

/// `Some` when this process was started as the density-real server.
pub fn child_main() -> Option<anyhow::Result<()>> {
    None
}

pub async fn density(_opts: &Opts) -> anyhow::Result<Row> {
    anyhow::bail!("not written yet")
}

use crate::Opts;
use crate::report::Row;

pub async fn sim(_opts: &Opts) -> anyhow::Result<Row> {
    anyhow::bail!("not written yet")
}

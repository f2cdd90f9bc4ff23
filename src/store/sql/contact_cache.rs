//! The engine's contact cache: the read is the same on both databases but for the order's
//! collation; the merging writes differ wholly (chunked `VALUES` against one `UNNEST` of
//! pre-merged rows, see each backend's `contact_cache.rs`).

use crate::engine::RawContact;
use crate::store::StoreResult;
use crate::store::sql::StoreRow;

/// What is cached for session `$1`, LID chats resolved to numbers where a mapping is known;
/// each backend orders it by `c.jid` in byte order. A macro, not a const: statements must be
/// `&'static str`, and `concat!` takes literals.
macro_rules! cached_contacts_select {
    () => {
        "SELECT c.jid, COALESCE(c.pn_jid, m.pn_jid) AS pn, c.name, c.push_name, \
           c.is_business, c.last_message_at \
         FROM engine_contact_cache c \
         LEFT JOIN engine_lid_map m \
           ON m.session_id = c.session_id AND m.lid_jid = COALESCE(c.lid_jid, c.jid) \
         WHERE c.session_id = $1"
    };
}
pub(crate) use cached_contacts_select;

pub(crate) fn cached_contact_from_row(row: &impl StoreRow) -> StoreResult<RawContact> {
    Ok(RawContact {
        jid: row.col("jid")?,
        pn_jid: row.col("pn")?,
        name: row.col("name")?,
        push_name: row.col("push_name")?,
        is_business: row.col::<Option<bool>>("is_business")?.unwrap_or(false),
        last_message_at: row.col("last_message_at")?,
    })
}

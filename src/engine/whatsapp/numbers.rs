//! Which numbers have a WhatsApp account: one usync query (`<contact>` per number, with the
//! business protocol) for all of them, as WhatsApp Web's "exists" job asks.

use std::collections::HashMap;

use whatsapp_rust::Jid;

use super::SEND_WAIT;
use super::client::WaClient;
use super::send::{lookup_error, lookup_timeout};
use crate::domain::PhoneNumber;
use crate::engine::{EngineError, NumberInfo};

impl WaClient {
    pub(super) async fn lookup_numbers(
        &self,
        numbers: &[PhoneNumber],
    ) -> Result<Vec<NumberInfo>, EngineError> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let lib = self.connected_lib()?;
        let jids: Vec<Jid> = numbers.iter().map(|n| Jid::pn(n.digits())).collect();
        let found = tokio::time::timeout(SEND_WAIT, lib.contacts().is_on_whatsapp(&jids))
            .await
            .map_err(|_| lookup_timeout())?
            .map_err(|e| lookup_error(&lib, &e))?;
        // WhatsApp answers by jid, in no promised order; a LID answer names its number in
        // `pn_jid`.
        let mut by_digits: HashMap<String, (bool, bool, String)> = HashMap::new();
        for r in &found {
            let pn = if r.jid.is_pn() {
                Some(&r.jid)
            } else {
                r.pn_jid.as_ref()
            };
            if let Some(pn) = pn {
                by_digits.insert(
                    pn.user.to_string(),
                    (r.is_registered, r.is_business, r.jid.to_string()),
                );
            }
        }
        Ok(numbers
            .iter()
            .map(|n| {
                let hit = by_digits.get(n.digits());
                let on_whatsapp = hit.is_some_and(|h| h.0);
                NumberInfo {
                    phone: n.clone(),
                    on_whatsapp,
                    is_business: on_whatsapp && hit.is_some_and(|h| h.1),
                    jid: hit.filter(|_| on_whatsapp).map(|h| h.2.clone()),
                }
            })
            .collect())
    }
}

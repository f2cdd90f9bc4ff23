//! A connection's handshake ends in a registration (a new companion showing QR codes) or
//! a login (a linked device): what each sets up before stanzas flow.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use whatsapp_rust::transport::DisconnectReason;

use super::{Conn, Flow, Role, random_ref};
use crate::iq::SERVER;
use crate::noise::TransportCipher;
use crate::{ConnKind, LoginFailure};

impl Conn {
    pub(super) fn start_registration(
        &mut self,
        cipher: &mut TransportCipher,
        noise_pub: [u8; 32],
        bundle: Option<crate::keyshare::DeviceBundle>,
    ) -> anyhow::Result<Flow> {
        self.role = Some(Role::Registration);
        let n = self.inner.lock().qr_refs;
        let refs: Vec<String> = (0..n).map(|_| random_ref()).collect();
        self.set_kind(ConnKind::Registration {
            refs: refs.clone(),
            noise_pub,
            pairing: false,
            bundle,
            code: None,
        });
        let ref_nodes: Vec<Node> = refs
            .iter()
            .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build())
            .collect();
        let iq = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "set")
            .attr("id", self.inner.next_id())
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-device").children(ref_nodes).build()])
            .build();
        self.send_node(cipher, &iq)?;
        tracing::debug!(
            conn = self.id,
            refs = n,
            "fake-whatsapp: registration, sent pair-device"
        );
        Ok(Flow::Continue)
    }

    pub(super) fn start_login(
        &mut self,
        cipher: &mut TransportCipher,
        client_static: [u8; 32],
        phone: String,
        device: u16,
    ) -> anyhow::Result<Flow> {
        enum Verdict {
            Fail(LoginFailure),
            Unknown,
            Ok { lid: wacore_binary::Jid },
        }
        let verdict = {
            let mut st = self.inner.lock();
            if let Some(f) = st.fail_logins.remove(&phone) {
                Verdict::Fail(f)
            } else {
                match st.accounts.get_mut(&phone) {
                    Some(acc)
                        if acc
                            .devices
                            .get(&device)
                            .is_some_and(|d| d.noise_pub == client_static) =>
                    {
                        acc.logins += 1;
                        Verdict::Ok {
                            lid: acc.phone.device_lid(device),
                        }
                    }
                    _ => Verdict::Unknown,
                }
            }
        };
        self.role = Some(Role::Login {
            phone: phone.clone(),
            device,
        });
        match verdict {
            Verdict::Fail(f) => {
                tracing::info!(
                    conn = self.id,
                    phone,
                    reason = f.reason,
                    "fake-whatsapp: scripted login failure"
                );
                self.set_kind(ConnKind::Login {
                    phone,
                    device,
                    logged_in: false,
                });
                self.send_node(cipher, &failure_node(&f))?;
                Ok(Flow::Close(Some(DisconnectReason::StreamEnded)))
            }
            Verdict::Unknown => {
                tracing::info!(
                    conn = self.id,
                    phone,
                    device,
                    "fake-whatsapp: login of an unknown device"
                );
                self.set_kind(ConnKind::Login {
                    phone,
                    device,
                    logged_in: false,
                });
                let f = LoginFailure {
                    reason: 401,
                    expire_secs: None,
                };
                self.send_node(cipher, &failure_node(&f))?;
                Ok(Flow::Close(Some(DisconnectReason::StreamEnded)))
            }
            Verdict::Ok { lid } => {
                let now = wacore::time::now_secs().max(0).to_string();
                let success = NodeBuilder::new("success")
                    .attr("t", now.clone())
                    .attr("props", "0")
                    .attr("abprops", "0")
                    .attr("location", "fake")
                    .attr("creation", now)
                    .attr("lid", lid);
                self.send_node(cipher, &success.build())?;
                self.set_kind(ConnKind::Login {
                    phone: phone.clone(),
                    device,
                    logged_in: true,
                });
                tracing::debug!(conn = self.id, phone, device, "fake-whatsapp: login ok");
                Ok(Flow::Continue)
            }
        }
    }
}

fn failure_node(f: &LoginFailure) -> Node {
    let mut b = NodeBuilder::new("failure")
        .attr("reason", f.reason.to_string())
        .attr("location", "fake");
    if f.reason == 402 {
        b = b
            .attr("code", "101")
            .attr("expire", f.expire_secs.unwrap_or(3600).to_string());
    } else if let Some(e) = f.expire_secs {
        b = b.attr("expire", e.to_string());
    }
    b.build()
}

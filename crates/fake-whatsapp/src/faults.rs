//! What goes wrong, scripted: dropped connections, stream errors, a removed or replaced
//! device, refused logins and no network.

use std::time::Duration;

use tokio::sync::mpsc;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;

use crate::{FakeWhatsApp, LoginFailure, conn};

impl FakeWhatsApp {
    /// Abruptly closes every connection of this account (as if the network
    /// dropped). The client emits `Disconnected` and reconnects by itself.
    pub async fn drop_connections(&self, phone_digits: &str) {
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::Drop);
        self.wait_closed(&ids).await;
    }

    /// Abruptly closes every connection, registered or not.
    pub async fn drop_all_connections(&self) {
        let ids: Vec<(u64, mpsc::UnboundedSender<conn::Cmd>)> = self
            .inner
            .lock()
            .conns
            .iter()
            .map(|(id, e)| (*id, e.cmd.clone()))
            .collect();
        for (_, cmd) in &ids {
            let _ = cmd.send(conn::Cmd::Drop);
        }
        let ids: Vec<u64> = ids.into_iter().map(|(id, _)| id).collect();
        self.wait_closed(&ids).await;
    }

    /// Sends `<stream:error code="..."/>` to the account's connections and
    /// closes them. 401 and 516 mean "logged out": the client emits
    /// `LoggedOut` and the fake forgets the account's devices. 515 makes the
    /// client reconnect at once; 503 reconnects with backoff.
    pub async fn stream_error(&self, phone_digits: &str, code: u16) {
        if matches!(code, 401 | 516) {
            self.forget_devices(phone_digits);
        }
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_code(code),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// The phone unlinked the device: `<stream:error><conflict
    /// type="device_removed"/></stream:error>` (client: `LoggedOut`), and the
    /// fake forgets the account's devices so they cannot log in again.
    pub async fn device_removed(&self, phone_digits: &str) {
        self.forget_devices(phone_digits);
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_conflict("device_removed"),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// Another session took over: `<stream:error><conflict type="replaced"/>`
    /// (client: `StreamReplaced`, no auto-reconnect). The device stays
    /// registered.
    pub async fn replaced(&self, phone_digits: &str) {
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_conflict("replaced"),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// Makes the next login of this account fail with
    /// `<failure reason=".."/>`: 402 (temporary ban; `code="101"` and `expire`
    /// seconds, default 3600) → `TemporaryBan`, 405 → `ClientOutdated`,
    /// 401/403/406 → `LoggedOut { on_connect: true }`, anything else →
    /// `ConnectFailure`. One-shot: the script is consumed by that login.
    /// Existing connections are not touched; combine with
    /// [`drop_connections`](Self::drop_connections) to force a new login.
    pub fn fail_logins(&self, phone_digits: &str, reason: u16, expire_secs: Option<u64>) {
        self.inner.lock().fail_logins.insert(
            phone_digits.to_string(),
            LoginFailure {
                reason,
                expire_secs,
            },
        );
    }

    /// Simulates losing the network: while offline, `create_transport` fails,
    /// and going offline also drops every open connection.
    pub fn set_offline(&self, offline: bool) {
        let cmds: Vec<_> = {
            let mut st = self.inner.lock();
            st.offline = offline;
            if offline {
                st.conns.values().map(|e| e.cmd.clone()).collect()
            } else {
                Vec::new()
            }
        };
        for cmd in cmds {
            let _ = cmd.send(conn::Cmd::Drop);
        }
    }
}

pub(crate) fn stream_error_code(code: u16) -> Node {
    NodeBuilder::new("stream:error")
        .attr("code", code.to_string())
        .build()
}

pub(crate) fn stream_error_conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict")
            .attr("type", kind.to_string())
            .build()])
        .build()
}

//! The client-facing end of a fake connection.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};

use crate::conn::{self, Input};
use crate::{ConnEntry, ConnKind, Inner};

/// A [`TransportFactory`] whose transports talk to a [`crate::FakeWhatsApp`].
#[derive(Clone)]
pub struct FakeTransportFactory {
    inner: Arc<Inner>,
}

impl FakeTransportFactory {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Debug for FakeTransportFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransportFactory")
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TransportFactory for FakeTransportFactory {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("fake-whatsapp needs a tokio runtime"))?;
        let (data_tx, data_rx) = mpsc::unbounded_channel::<Input>();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<conn::Cmd>();
        let (ev_tx, ev_rx) = async_channel::unbounded::<TransportEvent>();
        let id = {
            let mut st = self.inner.lock();
            if st.offline {
                st.connections_refused += 1;
                drop(st);
                self.inner.notify_changed();
                anyhow::bail!("fake-whatsapp: network unreachable (offline)");
            }
            st.connections_opened += 1;
            let id = st.connections_opened;
            st.conns.insert(
                id,
                ConnEntry {
                    cmd: cmd_tx,
                    kind: ConnKind::Handshaking,
                },
            );
            id
        };
        self.inner.notify_changed();
        let _ = ev_tx.try_send(TransportEvent::Connected);
        handle.spawn(conn::run(self.inner.clone(), id, data_rx, cmd_rx, ev_tx));
        tracing::debug!(conn = id, "fake-whatsapp: connection opened");
        Ok((Arc::new(FakeTransport { tx: data_tx }), ev_rx))
    }
}

/// The client's end of one connection: bytes go to the connection task.
struct FakeTransport {
    tx: mpsc::UnboundedSender<Input>,
}

#[async_trait]
impl Transport for FakeTransport {
    async fn send(&self, data: Bytes) -> Result<(), anyhow::Error> {
        self.tx
            .send(Input::Data(data))
            .map_err(|_| anyhow::anyhow!("fake-whatsapp: connection closed"))
    }

    async fn disconnect(&self) {
        let _ = self.tx.send(Input::Closed);
    }
}

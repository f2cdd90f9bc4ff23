//! Linking a companion: the phone scans its QR code or takes its pairing code, and the
//! fake answers as WhatsApp's server does until the device is registered.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::sync::{mpsc, oneshot};

use crate::faults::stream_error_code;
use crate::{
    Account, CLOSE_WAIT, ConnEntry, ConnKind, DeviceRecord, FakeWhatsApp, Signals, State, conn,
    keyshare, paircode, phone,
};

/// How long [`FakeWhatsApp::scan`] waits for the client's `pair-device-sign`.
const PAIR_REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`FakeWhatsApp::enter_pair_code`] waits for the client's
/// `companion_finish` (it runs a 131 072-round PBKDF2 first).
const COMPANION_FINISH_TIMEOUT: Duration = Duration::from_secs(20);

impl FakeWhatsApp {
    /// Pairs the client that is showing `qr` with the account `phone_digits`
    /// (created on first use; later scans of the same number add devices to
    /// the same account), like scanning the code with the phone.
    ///
    /// Sends `pair-success`, waits for and verifies the client's
    /// `pair-device-sign`, records the device, then ends the registration
    /// connection with stream error 515 so the client reconnects and logs in.
    pub async fn scan(&self, qr: &str, phone_digits: &str, push_name: &str) -> anyhow::Result<()> {
        if phone_digits.is_empty() || !phone_digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("phone number must be digits only, got {phone_digits:?}");
        }
        let payload = phone::parse_qr(qr).context("parsing QR code")?;

        // Find the registration connection that showed this ref, and claim it.
        let (conn_id, cmd, account, device_id, bundle) = {
            let mut st = self.inner.lock();
            let found = st
                .conns
                .iter_mut()
                .find_map(|(id, entry)| match &mut entry.kind {
                    ConnKind::Registration {
                        refs,
                        noise_pub,
                        pairing,
                        bundle,
                        ..
                    } if refs.contains(&payload.pair_ref) => {
                        Some((*id, entry.cmd.clone(), noise_pub, pairing, bundle.clone()))
                    }
                    _ => None,
                });
            let Some((conn_id, cmd, noise_pub, pairing, bundle)) = found else {
                bail!(
                    "no open registration connection is showing this QR code (expired or already used?)"
                );
            };
            if *noise_pub != payload.noise_pub {
                bail!("QR code noise key does not match the connection that showed it");
            }
            if *pairing {
                bail!("this QR code is already being scanned");
            }
            *pairing = true;

            let (account, device_id, _) = claim_device(&mut st, phone_digits, push_name);
            (conn_id, cmd, account, device_id, bundle)
        };

        let result = self
            .pair(
                conn_id,
                &cmd,
                &account,
                &payload,
                phone_digits,
                device_id,
                bundle,
            )
            .await;
        if result.is_err() {
            // Let the QR be scanned again.
            self.release_registration(conn_id);
        }
        result
    }

    /// The phone links the client that asked for a pairing code for
    /// `phone_digits` (`client.pair_with_code(PairCodeOptions { phone_number, .. })`)
    /// by typing `code` into "Link with phone number", like
    /// [`scan`](Self::scan) does for a QR code.
    ///
    /// Runs the real stage 2: unwraps the companion's ephemeral key with the
    /// code, pushes the `primary_hello` notification, waits for the client's
    /// `companion_finish`, opens its key bundle and derives the same ADV secret
    /// the client derived, then completes the link like a QR scan
    /// (`pair-success`, `pair-device-sign`, stream error 515, login).
    ///
    /// A wrong code is an `Err` and links nothing: the phone cannot open the
    /// key bundle (the client, like the real one, hears nothing and writes the
    /// code off after its one-minute timeout; a later call with the right code
    /// still works while the client allows retries: 3 per code). Takes a
    /// second or so: each side runs a 131 072-round PBKDF2.
    pub async fn enter_pair_code(
        &self,
        phone_digits: &str,
        code: &str,
        push_name: &str,
    ) -> anyhow::Result<()> {
        if phone_digits.is_empty() || !phone_digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("phone number must be digits only, got {phone_digits:?}");
        }
        let code = code.trim().to_ascii_uppercase();
        if !wacore::pair_code::PairCodeUtils::validate_code(&code) {
            bail!("{code:?} is not a pairing code (8 characters of 1-9, A-Z without I, O, U)");
        }

        // Find the newest registration connection that asked for a code for
        // this number, and claim it.
        let (conn_id, cmd, noise_pub, bundle, request) = {
            let mut st = self.inner.lock();
            let found = st
                .conns
                .iter_mut()
                .filter_map(|(id, entry)| match &mut entry.kind {
                    ConnKind::Registration {
                        noise_pub,
                        pairing,
                        bundle,
                        code: Some(request),
                        ..
                    } if request.phone == phone_digits => Some((
                        *id,
                        entry.cmd.clone(),
                        *noise_pub,
                        pairing,
                        bundle.clone(),
                        (**request).clone(),
                    )),
                    _ => None,
                })
                .max_by_key(|found| found.0);
            let Some((conn_id, cmd, noise_pub, pairing, bundle, request)) = found else {
                bail!(
                    "no open registration connection asked for a pairing code for {phone_digits}"
                );
            };
            if *pairing {
                bail!("that client is already being linked");
            }
            *pairing = true;
            (conn_id, cmd, noise_pub, bundle, request)
        };

        let result = self
            .link_with_code(
                conn_id,
                &cmd,
                noise_pub,
                bundle,
                request,
                &code,
                phone_digits,
                push_name,
            )
            .await;
        if result.is_err() {
            self.release_registration(conn_id);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn link_with_code(
        &self,
        conn_id: u64,
        cmd: &mpsc::UnboundedSender<conn::Cmd>,
        noise_pub: [u8; 32],
        bundle: Option<keyshare::DeviceBundle>,
        request: paircode::CodeRequest,
        code: &str,
        phone_digits: &str,
        push_name: &str,
    ) -> anyhow::Result<()> {
        if request.companion_noise_pub != noise_pub {
            bail!("companion_hello names another noise key than the connection's");
        }
        // PBKDF2: off the async threads.
        let (request, session) = {
            let code = code.to_owned();
            tokio::task::spawn_blocking(move || {
                let session = paircode::PhoneCodeSession::start(&request, &code);
                (request, session)
            })
            .await
            .context("the phone's code task failed")?
        };
        let session = session?;

        // The account exists from here on, as when a phone scans a QR; a
        // failed link leaves no device (and no account it created).
        let (account, device_id, created) =
            claim_device(&mut self.inner.lock(), phone_digits, push_name);
        let outcome = async {
            let (tx, rx) = oneshot::channel();
            let hello = session.primary_hello_node(&account, &request, &self.inner.next_id());
            cmd.send(conn::Cmd::SendAwaitFinish {
                node: hello,
                reply: tx,
            })
            .map_err(|_| anyhow!("the registration connection closed"))?;
            let finish = match tokio::time::timeout(COMPANION_FINISH_TIMEOUT, rx).await {
                Err(_) => bail!(
                    "the client did not answer primary_hello within {COMPANION_FINISH_TIMEOUT:?}"
                ),
                Ok(Err(_)) => {
                    bail!("the registration connection closed before companion_finish")
                }
                Ok(Ok(node)) => node,
            };
            let payload = session.open_finish(&account, &request, noise_pub, &finish)?;
            self.pair(
                conn_id,
                cmd,
                &account,
                &payload,
                phone_digits,
                device_id,
                bundle,
            )
            .await
        }
        .await;
        if outcome.is_err() && created {
            let mut st = self.inner.lock();
            if st
                .accounts
                .get(phone_digits)
                .is_some_and(|a| a.devices.is_empty())
            {
                st.accounts.remove(phone_digits);
            }
        }
        outcome
    }

    /// Makes a registration connection claimable again after a failed link.
    fn release_registration(&self, conn_id: u64) {
        let mut st = self.inner.lock();
        if let Some(ConnEntry {
            kind: ConnKind::Registration { pairing, .. },
            ..
        }) = st.conns.get_mut(&conn_id)
        {
            *pairing = false;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pair(
        &self,
        conn_id: u64,
        cmd: &mpsc::UnboundedSender<conn::Cmd>,
        account: &phone::PhoneAccount,
        payload: &phone::QrPayload,
        phone_digits: &str,
        device_id: u16,
        bundle: Option<keyshare::DeviceBundle>,
    ) -> anyhow::Result<()> {
        let iq_id = self.inner.next_id();
        let node = phone::pair_success_node(account, payload, device_id, &iq_id)
            .context("building pair-success")?;

        let (tx, rx) = oneshot::channel();
        cmd.send(conn::Cmd::SendAwait {
            node,
            id: iq_id.clone(),
            reply: tx,
        })
        .map_err(|_| anyhow!("the registration connection closed"))?;
        let reply = match tokio::time::timeout(PAIR_REPLY_TIMEOUT, rx).await {
            Err(_) => bail!("the client did not answer pair-success within {PAIR_REPLY_TIMEOUT:?}"),
            Ok(Err(_)) => bail!("the registration connection closed before the client answered"),
            Ok(Ok(reply)) => reply,
        };
        if reply.attrs().optional_string("type").as_deref() == Some("error") {
            let err = reply.get_optional_child("error");
            let code = err
                .and_then(|e| e.attrs().optional_string("code").map(|c| c.to_string()))
                .unwrap_or_default();
            let text = err
                .and_then(|e| e.attrs().optional_string("text").map(|c| c.to_string()))
                .unwrap_or_default();
            bail!("the client rejected pair-success: {code} {text}");
        }
        phone::verify_sign_reply(account, payload, &reply)
            .context("verifying the client's pair-device-sign")?;

        {
            let mut st = self.inner.lock();
            if let Some(acc) = st.accounts.get_mut(phone_digits) {
                acc.devices.insert(
                    device_id,
                    DeviceRecord {
                        noise_pub: payload.noise_pub,
                        prekeys: 0,
                        bundle,
                        bootstrapped: false,
                        push_name_sent: account.send_biz_name && !account.push_name.is_empty(),
                        history_sent: false,
                        contacts_sent: 0,
                    },
                );
            }
        }
        tracing::info!(
            phone = phone_digits,
            device_id,
            "fake-whatsapp: device paired"
        );
        self.inner.notify_changed();

        // Like the real server: end the registration stream, the client
        // reconnects at once and logs in with its new identity.
        let _ = cmd.send(conn::Cmd::StreamErrorClose {
            node: stream_error_code(515),
            delay: Duration::from_millis(100),
        });
        let _ = self
            .inner
            .wait_until(CLOSE_WAIT, |st| !st.conns.contains_key(&conn_id))
            .await;
        Ok(())
    }
}

/// The account `phone_digits` (created on first use, then `created` is true)
/// with `push_name`, and the device id its next companion gets.
fn claim_device(
    st: &mut State,
    phone_digits: &str,
    push_name: &str,
) -> (phone::PhoneAccount, u16, bool) {
    let push_name_as_biz = st.push_name_as_biz;
    let created = !st.accounts.contains_key(phone_digits);
    let account = st
        .accounts
        .entry(phone_digits.to_string())
        .or_insert_with(|| Account {
            phone: phone::PhoneAccount::new(phone_digits, push_name),
            devices: BTreeMap::new(),
            next_device: 1,
            logins: 0,
            app_state_key: keyshare::AppStateKey::generate(),
            signal: Signals::default(),
        });
    account.phone.push_name = push_name.to_string();
    account.phone.send_biz_name = push_name_as_biz;
    let device_id = account.next_device;
    account.next_device = account.next_device.wrapping_add(1).max(1);
    (account.phone.clone(), device_id, created)
}

//! Phone-number linking ("link with phone number instead"): the server and
//! the scripted phone's side of the pair-code exchange.
//!
//! 1. The companion sends `<iq xmlns="md" type="set"><link_code_companion_reg
//!    stage="companion_hello" jid="<phone>@s.whatsapp.net">` carrying its
//!    ephemeral public key wrapped with a key derived from the 8-character code
//!    (PBKDF2-SHA256 over the code with a random salt, then AES-256-CTR). The
//!    server answers with a `<link_code_pairing_ref>` and remembers the request
//!    on the connection ([`CodeRequest`]).
//! 2. The user types the code on the phone ([`crate::FakeWhatsApp::enter_pair_code`]):
//!    the phone unwraps the companion's ephemeral key with the code, wraps its
//!    own fresh ephemeral key the same way and the server pushes
//!    `<notification type="link_code_companion_reg"><link_code_companion_reg
//!    stage="primary_hello">` ([`primary_hello_node`]).
//! 3. The companion answers with `stage="companion_finish"`: a key bundle
//!    (its identity key, the phone's identity key, 32 random bytes) sealed
//!    with AES-256-GCM under a key derived (HKDF) from the ephemeral DH. Both
//!    sides then derive the ADV secret from both DH results and the random
//!    bytes ([`PhoneCodeSession::open_finish`]); with it the phone completes
//!    the link exactly like a QR scan (`pair-success`).
//!
//! A wrong code gives the two sides different ephemeral keys, so the phone
//! cannot open the key bundle and the link fails.

use crate::nodes::{attr, content_bytes};
use anyhow::{Context, Result, anyhow, ensure};
use wacore::libsignal::crypto::aes_256_gcm_decrypt;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair_code::PairCodeUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;

use crate::iq::SERVER;
use crate::phone::{PhoneAccount, QrPayload};

/// Length of a wrapped ephemeral key: salt (32) ‖ iv (16) ‖ ciphertext (32).
const WRAPPED_EPHEMERAL_LEN: usize = 80;
/// HKDF info for the key-bundle encryption key.
const BUNDLE_KEY_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// HKDF info for the ADV secret.
const ADV_SECRET_INFO: &[u8] = b"adv_secret";

/// What a `companion_hello` asked for, kept on the registration connection.
#[derive(Debug, Clone)]
pub(crate) struct CodeRequest {
    /// The phone number the companion wants to be linked to (digits).
    pub phone: String,
    /// The ref the server handed out in its answer.
    pub pairing_ref: String,
    /// The companion's ephemeral public key, wrapped with the code.
    pub wrapped_companion_ephemeral: [u8; WRAPPED_EPHEMERAL_LEN],
    /// `<companion_server_auth_key_pub>`: the companion's Noise static key.
    pub companion_noise_pub: Vec<u8>,
}

fn child_bytes<'a>(node: &'a Node, tag: &str) -> Result<&'a [u8]> {
    node.get_optional_child(tag)
        .and_then(content_bytes)
        .with_context(|| format!("<{}> has no <{tag}>", node.tag))
}

/// The `stage` of a `<link_code_companion_reg>` element.
pub(crate) fn stage(reg: &Node) -> Option<String> {
    attr(reg, "stage")
}

/// Reads a `companion_hello` (`reg` is its `<link_code_companion_reg>`) and
/// mints the pairing ref for it.
pub(crate) fn parse_companion_hello(reg: &Node) -> Result<CodeRequest> {
    let jid = attr(reg, "jid").context("companion_hello has no jid")?;
    let phone = jid.split('@').next().unwrap_or_default().to_owned();
    ensure!(
        phone.len() >= 7 && phone.bytes().all(|b| b.is_ascii_digit()),
        "companion_hello jid {jid:?} is not a phone number"
    );
    let wrapped = child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")?;
    let wrapped_companion_ephemeral: [u8; WRAPPED_EPHEMERAL_LEN] =
        wrapped.try_into().map_err(|_| {
            anyhow!(
                "wrapped companion ephemeral key is {} bytes, expected {WRAPPED_EPHEMERAL_LEN}",
                wrapped.len()
            )
        })?;
    let companion_noise_pub = child_bytes(reg, "companion_server_auth_key_pub")?.to_vec();
    Ok(CodeRequest {
        phone,
        pairing_ref: crate::conn::random_ref(),
        wrapped_companion_ephemeral,
        companion_noise_pub,
    })
}

/// The result content answering a `companion_hello`.
pub(crate) fn companion_hello_answer(req: &CodeRequest) -> Node {
    NodeBuilder::new("link_code_companion_reg")
        .children([NodeBuilder::new("link_code_pairing_ref")
            .bytes(req.pairing_ref.as_bytes().to_vec())
            .build()])
        .build()
}

/// The phone's half of one pair-code attempt.
pub(crate) struct PhoneCodeSession {
    companion_ephemeral: [u8; 32],
    primary_ephemeral: KeyPair,
    wrapped_primary_ephemeral: [u8; WRAPPED_EPHEMERAL_LEN],
}

impl PhoneCodeSession {
    /// The phone reads `code` (PBKDF2, slow: call from a blocking thread):
    /// unwraps the companion's ephemeral key with it and wraps a fresh
    /// ephemeral key of its own. A wrong code does not fail here: it yields a
    /// different key, and the bundle will not open later.
    pub(crate) fn start(req: &CodeRequest, code: &str) -> Result<Self> {
        let companion_ephemeral =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&req.wrapped_companion_ephemeral, code)
                .map_err(|e| anyhow!("unwrapping the companion's ephemeral key: {e}"))?;
        let primary_ephemeral = KeyPair::generate(&mut rand::make_rng::<rand::rngs::StdRng>());
        let primary_pub: [u8; 32] = primary_ephemeral
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("Curve25519 public keys are 32 bytes");
        let wrapped_primary_ephemeral = PairCodeUtils::encrypt_ephemeral_pub(&primary_pub, code);
        Ok(Self {
            companion_ephemeral,
            primary_ephemeral,
            wrapped_primary_ephemeral,
        })
    }

    /// Opens the companion's `companion_finish` (the whole `<iq>`) and derives
    /// the ADV secret. Returns what pair-success needs, as if read off a QR.
    pub(crate) fn open_finish(
        &self,
        account: &PhoneAccount,
        req: &CodeRequest,
        noise_pub: [u8; 32],
        finish: &Node,
    ) -> Result<QrPayload> {
        let reg = finish
            .get_optional_child("link_code_companion_reg")
            .context("companion_finish has no <link_code_companion_reg>")?;
        ensure!(
            stage(reg).as_deref() == Some("companion_finish"),
            "expected stage companion_finish, got {:?}",
            stage(reg)
        );
        let finish_ref = child_bytes(reg, "link_code_pairing_ref")?;
        ensure!(
            finish_ref == req.pairing_ref.as_bytes(),
            "companion_finish names another pairing ref"
        );
        let companion_identity: [u8; 32] = child_bytes(reg, "companion_identity_public")?
            .try_into()
            .map_err(|_| anyhow!("companion identity key is not 32 bytes"))?;
        let wrapped = child_bytes(reg, "link_code_pairing_wrapped_key_bundle")?;
        ensure!(
            wrapped.len() > 32 + 12 + 16,
            "wrapped key bundle is too short ({} bytes)",
            wrapped.len()
        );
        let (salt, rest) = wrapped.split_at(32);
        let (iv, sealed) = rest.split_at(12);
        let iv: &[u8; 12] = iv.try_into().expect("split at 12");

        let companion_eph = PublicKey::from_djb_public_key_bytes(&self.companion_ephemeral)
            .map_err(|e| anyhow!("companion ephemeral key is unusable (wrong code?): {e}"))?;
        let ephemeral_shared = self
            .primary_ephemeral
            .private_key
            .calculate_agreement(&companion_eph)
            .map_err(|e| anyhow!("ephemeral agreement failed (wrong code?): {e}"))?;

        let mut bundle_key = [0u8; 32];
        wacore::crypto::hkdf_sha256_into(
            &ephemeral_shared,
            Some(salt),
            BUNDLE_KEY_INFO,
            &mut bundle_key,
        )
        .map_err(|e| anyhow!("bundle key derivation: {e:?}"))?;
        let mut bundle = Vec::with_capacity(96);
        aes_256_gcm_decrypt(&bundle_key, iv, b"", sealed, &mut bundle).map_err(|_| {
            anyhow!("the phone cannot open the companion's key bundle: wrong pairing code")
        })?;
        ensure!(
            bundle.len() == 96,
            "key bundle is {} bytes, expected 96",
            bundle.len()
        );
        ensure!(
            bundle[..32] == companion_identity,
            "key bundle names another companion identity key"
        );
        ensure!(
            bundle[32..64] == account.identity_pub(),
            "key bundle names another primary identity key"
        );
        let random = &bundle[64..96];

        let companion_id = PublicKey::from_djb_public_key_bytes(&companion_identity)
            .map_err(|e| anyhow!("companion identity key is unusable: {e}"))?;
        let identity_shared = account
            .identity
            .private_key
            .calculate_agreement(&companion_id)
            .map_err(|e| anyhow!("identity agreement failed: {e}"))?;

        let secret_input = [ephemeral_shared.as_slice(), &identity_shared, random].concat();
        let mut adv_secret = [0u8; 32];
        wacore::crypto::hkdf_sha256_into(&secret_input, None, ADV_SECRET_INFO, &mut adv_secret)
            .map_err(|e| anyhow!("ADV secret derivation: {e:?}"))?;

        Ok(QrPayload {
            pair_ref: req.pairing_ref.clone(),
            noise_pub,
            identity_pub: companion_identity,
            adv_secret,
        })
    }

    /// The `primary_hello` notification the server pushes to the companion.
    pub(crate) fn primary_hello_node(
        &self,
        account: &PhoneAccount,
        req: &CodeRequest,
        id: &str,
    ) -> Node {
        let reg = NodeBuilder::new("link_code_companion_reg")
            .attr("jid", account.pn_jid())
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(self.wrapped_primary_ephemeral.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(account.identity_pub().to_vec())
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(req.pairing_ref.as_bytes().to_vec())
                    .build(),
            ])
            .build();
        NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "link_code_companion_reg")
            .attr("id", id)
            .attr("t", wacore::time::now_secs().max(0).to_string())
            .children([reg])
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_reg(phone: &str, wrapped: &[u8; 80]) -> Node {
        let iq = PairCodeUtils::build_companion_hello_iq(
            phone,
            &[7u8; 32],
            wrapped,
            "1",
            "Chrome (Linux)",
            true,
            "req-1".to_owned(),
        );
        iq.get_optional_child("link_code_companion_reg")
            .unwrap()
            .clone()
    }

    /// The library's own stage-2 code (companion side) against the phone side.
    fn run(code_companion: &str, code_phone: &str) -> Result<([u8; 32], QrPayload)> {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let companion_eph = KeyPair::generate(&mut rng);
        let companion_identity = KeyPair::generate(&mut rng);
        let eph_pub: [u8; 32] = companion_eph.public_key.public_key_bytes().try_into()?;
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, code_companion);
        let req = parse_companion_hello(&hello_reg("966501234567", &wrapped))?;
        assert_eq!(req.phone, "966501234567");
        assert_eq!(req.companion_noise_pub, vec![7u8; 32]);

        let account = PhoneAccount::new("966501234567", "Phone");
        let session = PhoneCodeSession::start(&req, code_phone)?;
        let hello = session.primary_hello_node(&account, &req, "n1");
        let reg = hello.get_optional_child("link_code_companion_reg").unwrap();
        let primary_eph = PairCodeUtils::decrypt_primary_ephemeral_pub(
            child_bytes(reg, "link_code_pairing_wrapped_primary_ephemeral_pub")?,
            code_companion,
        )?;
        let (bundle, adv) = PairCodeUtils::prepare_key_bundle(
            &companion_eph,
            &primary_eph,
            &account.identity_pub(),
            &companion_identity,
        )?;
        let identity_pub: [u8; 32] = companion_identity
            .public_key
            .public_key_bytes()
            .try_into()?;
        let finish = PairCodeUtils::build_companion_finish_iq(
            "966501234567",
            bundle,
            &identity_pub,
            req.pairing_ref.as_bytes(),
            "req-2".to_owned(),
        );
        let qr = session.open_finish(&account, &req, [9u8; 32], &finish)?;
        assert_eq!(qr.identity_pub, identity_pub);
        Ok((adv, qr))
    }

    #[test]
    fn the_right_code_derives_the_companions_adv_secret() {
        let (adv, qr) = run("ABCD1234", "ABCD1234").unwrap();
        assert_eq!(qr.adv_secret, adv);
        assert_eq!(qr.noise_pub, [9u8; 32]);
    }

    #[test]
    fn a_wrong_code_cannot_open_the_bundle() {
        let err = run("ABCD1234", "ABCD1235").unwrap_err().to_string();
        assert!(err.contains("wrong pairing code"), "{err}");
    }

    #[test]
    fn malformed_hello_is_refused() {
        assert!(parse_companion_hello(&hello_reg("123", &[0u8; 80])).is_err());
        let mut reg = hello_reg("966501234567", &[0u8; 80]);
        reg.attrs.insert("jid", "abc@s.whatsapp.net");
        assert!(parse_companion_hello(&reg).is_err());
    }
}

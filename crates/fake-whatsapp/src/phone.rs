//! The scripted *phone* (primary device) side of QR pairing.
//!
//! A real link goes: the server hands the companion a list of refs
//! (`<pair-device>`), the companion shows `ref,noise,identity,adv,client_type`
//! as a QR code, the phone scans it and tells the server, and the server sends
//! the companion `<pair-success>` carrying an ADV device identity that the
//! phone's account key signed and that is MAC'd with the ADV secret from the
//! QR. The companion checks both, adds its own device signature, and answers
//! with `<pair-device-sign>`.
//!
//! This module plays the phone's part of that exchange:
//!
//! * [`parse_qr`] reads the string the client emitted in `Event::PairingQrCode`;
//! * [`pair_success_node`] builds the complete `<iq><pair-success>…` stanza
//!   the server pushes to the companion;
//! * [`verify_sign_reply`] / [`check_sign_reply`] check the companion's
//!   `<pair-device-sign>` answer.
//!
//! Only the ordinary (E2EE) account family is produced: the hosted-business
//! prefixes (`[6, 5]` / `[6, 6]`) are never used.

use crate::nodes::{attr, content_bytes};
use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use wacore::libsignal::crypto::hmac_sha256;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use wacore_binary::{Jid, SERVER_JID};
use waproto::buffa::Message as _;
use waproto::whatsapp as wa;

/// Domain separator in front of the account signature (`ADVSignedDeviceIdentity.account_signature`).
pub const ADV_PREFIX_ACCOUNT_SIGNATURE: [u8; 2] = [6, 0];
/// Domain separator in front of the companion's device signature (`ADVSignedDeviceIdentity.device_signature`).
pub const ADV_PREFIX_DEVICE_SIGNATURE: [u8; 2] = [6, 1];
/// Prefix a QR string may carry when it is rendered as a native-camera deep link.
pub const QR_DEEP_LINK_PREFIX: &str = wacore::companion_reg::NATIVE_CAMERA_DEEP_LINK_PREFIX;

/// The account behind the scripted phone: who the companion gets linked to.
#[derive(Clone)]
pub struct PhoneAccount {
    /// The phone number, digits only (`"15551234567"`): the user part of every
    /// `…@s.whatsapp.net` JID of the account.
    pub phone: String,
    /// The account's display name. Sent as `<biz name=…>` in pair-success when
    /// [`send_biz_name`](Self::send_biz_name) is set, which is where the client
    /// takes its `push_name` from at pairing.
    pub push_name: String,
    /// The account's LID user part, digits only (`"123456789012345"`), used for
    /// `<device lid="<lid>:<device>@lid">`. Derived from the phone number by
    /// [`PhoneAccount::new`] (stable across runs); overwrite it freely.
    pub lid: String,
    /// The account (primary device) identity key pair: signs the companion's
    /// ADV device identity. Random per [`PhoneAccount::new`].
    pub identity: KeyPair,
    /// `ADVDeviceIdentity.raw_id`: the account's ADV id, the same for every
    /// companion linked to it. Derived from the phone number.
    pub adv_raw_id: u32,
    /// `<platform name=…>` of pair-success (the phone's platform, e.g.
    /// `"android"`, `"iphone"`, `"smba"`). Empty = no `<platform>` child.
    pub platform: String,
    /// Whether pair-success carries `<biz name="<push_name>">`. On by default
    /// so the client learns a push name at pairing; real servers only send it
    /// for business accounts.
    pub send_biz_name: bool,
}

impl std::fmt::Debug for PhoneAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneAccount")
            .field("phone", &self.phone)
            .field("push_name", &self.push_name)
            .field("lid", &self.lid)
            .field("identity_pub", &BASE64.encode(self.identity_pub()))
            .field("adv_raw_id", &self.adv_raw_id)
            .field("platform", &self.platform)
            .field("send_biz_name", &self.send_biz_name)
            .finish_non_exhaustive()
    }
}

impl PhoneAccount {
    /// A new account for `phone_digits` (anything that is not an ASCII digit,
    /// such as a leading `+` or spaces, is dropped) with a fresh identity key.
    pub fn new(phone_digits: &str, push_name: &str) -> Self {
        let phone: String = phone_digits.chars().filter(char::is_ascii_digit).collect();
        let h = fnv1a64(phone.as_bytes());
        // 15 digits, never starting with 0, like a real LID.
        let lid = (100_000_000_000_000 + h % 900_000_000_000_000).to_string();
        let adv_raw_id = ((h >> 32) as u32 ^ h as u32).max(1);
        Self {
            phone,
            push_name: push_name.to_owned(),
            lid,
            identity: KeyPair::generate(&mut rand::make_rng::<rand::rngs::StdRng>()),
            adv_raw_id,
            platform: "android".to_owned(),
            send_biz_name: true,
        }
    }

    /// The account identity public key (32-byte Curve25519, no type prefix).
    pub fn identity_pub(&self) -> [u8; 32] {
        self.identity
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("Curve25519 public keys are 32 bytes")
    }

    /// `<phone>@s.whatsapp.net`
    pub fn pn_jid(&self) -> Jid {
        Jid::pn(self.phone.as_str())
    }

    /// `<lid>@lid`
    pub fn lid_jid(&self) -> Jid {
        Jid::lid(self.lid.as_str())
    }

    /// `<phone>:<device_id>@s.whatsapp.net`: the companion's own JID once linked
    /// (what the client stores as its `pn`).
    pub fn device_jid(&self, device_id: u16) -> Jid {
        Jid::pn_device(self.phone.as_str(), device_id)
    }

    /// `<lid>:<device_id>@lid`: the companion's LID once linked (the client's `lid`).
    pub fn device_lid(&self, device_id: u16) -> Jid {
        Jid::lid_device(self.lid.as_str(), device_id)
    }
}

/// What the phone reads off the companion's QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPayload {
    /// The pairing ref the server issued in `<pair-device><ref>`.
    pub pair_ref: String,
    /// The companion's Noise static public key.
    pub noise_pub: [u8; 32],
    /// The companion's identity public key (signed over by the account, and the
    /// key the companion's device signature verifies with).
    pub identity_pub: [u8; 32],
    /// The ADV secret: keys the HMAC over the signed device identity.
    pub adv_secret: [u8; 32],
}

/// Parses the QR string the client emitted in `Event::PairingQrCode`:
/// `ref,noiseB64,identityB64,advSecretB64,clientType` (standard base64). The
/// legacy 4-field form, a `https://wa.me/settings/linked_devices#` prefix and
/// extra trailing fields are accepted too.
pub fn parse_qr(qr: &str) -> Result<QrPayload> {
    let body = qr.trim();
    let body = body.strip_prefix(QR_DEEP_LINK_PREFIX).unwrap_or(body);
    let fields: Vec<&str> = body.split(',').collect();
    ensure!(
        fields.len() >= 4,
        "QR code has {} comma-separated fields, expected at least 4 (ref,noise,identity,adv[,client type])",
        fields.len()
    );
    ensure!(!fields[0].is_empty(), "QR code has an empty pairing ref");
    Ok(QrPayload {
        pair_ref: fields[0].to_owned(),
        noise_pub: decode_key(fields[1], "noise public key")?,
        identity_pub: decode_key(fields[2], "identity public key")?,
        adv_secret: decode_key(fields[3], "ADV secret")?,
    })
}

fn decode_key(b64: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = BASE64
        .decode(b64)
        .with_context(|| format!("QR {what} is not valid base64"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow!("QR {what} is {} bytes, expected 32", b.len()))
}

/// The `<device-identity>` payload of pair-success: an
/// `ADVSignedDeviceIdentityHMAC` (HMAC-SHA256 keyed by the QR's ADV secret)
/// around an `ADVSignedDeviceIdentity` whose `details`
/// (`ADVDeviceIdentity { raw_id, timestamp, key_index, E2EE, E2EE }`) the account
/// key signed over `[6, 0] ‖ details ‖ companion identity pub`.
pub fn device_identity_container(
    account: &PhoneAccount,
    qr: &QrPayload,
    key_index: u32,
) -> Result<Vec<u8>> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(account.adv_raw_id),
        timestamp: Some(unix_now()),
        key_index: Some(key_index),
        account_type: Some(wa::ADVEncryptionType::E2EE),
        device_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();

    let signed_message = [
        ADV_PREFIX_ACCOUNT_SIGNATURE.as_slice(),
        &details,
        &qr.identity_pub,
    ]
    .concat();
    let account_signature = account
        .identity
        .private_key
        .calculate_signature(&signed_message, &mut rand::make_rng::<rand::rngs::StdRng>())
        .map_err(|e| anyhow!("account signature failed: {e}"))?;

    let signed_identity = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.identity_pub().to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();

    let hmac = hmac_sha256(&qr.adv_secret, &signed_identity);
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed_identity),
        hmac: Some(hmac.to_vec()),
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

/// The full server→client stanza that completes a QR link:
///
/// ```text
/// <iq from="s.whatsapp.net" type="set" id=iq_id xmlns="md" t=<now>>
///   <pair-success>
///     <device-identity>ADVSignedDeviceIdentityHMAC</device-identity>
///     <device jid="<phone>:<device_id>@s.whatsapp.net" lid="<lid>:<device_id>@lid"/>
///     <biz name="<push_name>"/>        (if send_biz_name and push_name ≠ "")
///     <platform name="<platform>"/>    (if platform ≠ "")
///   </pair-success>
/// </iq>
/// ```
///
/// The ADV key index given to the companion is `device_id`. Device 0 is the
/// phone itself and is refused.
pub fn pair_success_node(
    account: &PhoneAccount,
    qr: &QrPayload,
    device_id: u16,
    iq_id: &str,
) -> Result<Node> {
    ensure!(
        device_id != 0,
        "device 0 is the phone itself; companions start at 1"
    );
    ensure!(!account.phone.is_empty(), "the account has no phone number");
    let identity = device_identity_container(account, qr, u32::from(device_id))?;

    let mut children = vec![
        NodeBuilder::new("device-identity").bytes(identity).build(),
        NodeBuilder::new("device")
            .attr("jid", account.device_jid(device_id))
            .attr("lid", account.device_lid(device_id))
            .build(),
    ];
    if account.send_biz_name && !account.push_name.is_empty() {
        children.push(
            NodeBuilder::new("biz")
                .attr("name", account.push_name.as_str())
                .build(),
        );
    }
    if !account.platform.is_empty() {
        children.push(
            NodeBuilder::new("platform")
                .attr("name", account.platform.as_str())
                .build(),
        );
    }

    Ok(NodeBuilder::new("iq")
        .attr("from", SERVER_JID)
        .attr("type", "set")
        .attr("id", iq_id)
        .attr("xmlns", "md")
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("pair-success").children(children).build()])
        .build())
}

/// What a valid `<pair-device-sign>` reply carried.
#[derive(Debug, Clone)]
pub struct SignReply {
    /// The reply's `id` (the pair-success iq id it answers).
    pub iq_id: String,
    /// `<device-identity key-index=…>`.
    pub key_index: u32,
    /// The companion's `ADVSignedDeviceIdentity` bytes, now with both the
    /// account and the device signature: what a server hands out later as the
    /// companion's `<device-identity>`.
    pub signed_identity: Vec<u8>,
    /// The decoded `details` of that identity.
    pub details: wa::ADVDeviceIdentity,
}

/// Checks the client's answer to pair-success: `<iq type="result" id=…>
/// <pair-device-sign><device-identity key-index=…>ADVSignedDeviceIdentity`.
/// `Ok(())` when the identity is the one this account signed for this QR and
/// the companion's device signature over `[6, 1] ‖ details ‖ companion identity
/// pub ‖ account identity pub` verifies with the QR's identity key. An
/// `<iq type="error">` (the client refusing the pairing) is an `Err` naming its
/// code and text.
pub fn verify_sign_reply(account: &PhoneAccount, qr: &QrPayload, reply: &Node) -> Result<()> {
    check_sign_reply(account, qr, reply).map(|_| ())
}

/// [`verify_sign_reply`], returning what the reply carried.
pub fn check_sign_reply(account: &PhoneAccount, qr: &QrPayload, reply: &Node) -> Result<SignReply> {
    ensure!(
        reply.tag == "iq",
        "expected an <iq> reply to pair-success, got <{}>",
        reply.tag
    );
    let iq_id = attr(reply, "id").unwrap_or_default();
    match attr(reply, "type").as_deref() {
        Some("result") => {}
        Some("error") => {
            let error = reply.get_optional_child("error");
            let code = error.and_then(|e| attr(e, "code")).unwrap_or_default();
            let text = error.and_then(|e| attr(e, "text")).unwrap_or_default();
            bail!("the client refused pair-success {iq_id}: error {code} {text}");
        }
        other => bail!("pair-success reply has type {other:?}, expected \"result\""),
    }

    let sign = reply
        .get_optional_child("pair-device-sign")
        .context("reply has no <pair-device-sign>")?;
    let identity_node = sign
        .get_optional_child("device-identity")
        .context("<pair-device-sign> has no <device-identity>")?;
    let key_index: u32 = attr(identity_node, "key-index")
        .context("<device-identity> has no key-index")?
        .parse()
        .context("<device-identity> key-index is not a number")?;
    let signed_bytes = content_bytes(identity_node).context("<device-identity> is empty")?;

    let signed = waproto::codec::adv_signed_device_identity_decode(signed_bytes)
        .context("<device-identity> is not an ADVSignedDeviceIdentity")?;
    let details_bytes = signed
        .details
        .as_deref()
        .context("signed identity has no details")?;

    // The account part must be exactly what this phone signed for this QR.
    let account_pub = account.identity_pub();
    ensure!(
        signed.account_signature_key.as_deref() == Some(account_pub.as_slice()),
        "signed identity names another account key"
    );
    let account_key = PublicKey::from_djb_public_key_bytes(&account_pub)
        .map_err(|e| anyhow!("account identity key is unusable: {e}"))?;
    let account_message = [
        ADV_PREFIX_ACCOUNT_SIGNATURE.as_slice(),
        details_bytes,
        &qr.identity_pub,
    ]
    .concat();
    ensure!(
        account_key.verify_signature(
            &account_message,
            signed.account_signature.as_deref().unwrap_or_default()
        ),
        "account signature does not verify (details or companion key changed)"
    );

    let details = waproto::codec::adv_device_identity_decode(details_bytes)
        .context("signed identity details are not an ADVDeviceIdentity")?;
    ensure!(
        details.raw_id == Some(account.adv_raw_id),
        "details carry ADV raw id {:?}, the account's is {}",
        details.raw_id,
        account.adv_raw_id
    );
    ensure!(
        details.key_index == Some(key_index),
        "key-index attribute {key_index} differs from the signed key index {:?}",
        details.key_index
    );

    // The companion's own signature, made with the identity key from its QR.
    let device_signature = signed
        .device_signature
        .as_deref()
        .context("reply carries no device signature")?;
    let device_key = PublicKey::from_djb_public_key_bytes(&qr.identity_pub)
        .map_err(|e| anyhow!("QR identity key is unusable: {e}"))?;
    let device_message = [
        ADV_PREFIX_DEVICE_SIGNATURE.as_slice(),
        details_bytes,
        &qr.identity_pub,
        &account_pub,
    ]
    .concat();
    ensure!(
        device_key.verify_signature(&device_message, device_signature),
        "device signature does not verify with the QR's identity key"
    );

    Ok(SignReply {
        iq_id,
        key_index,
        signed_identity: signed_bytes.to_vec(),
        details,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wacore::adv::{AdvValidation, validate_adv_with_identity_key};
    use wacore::companion_reg::CompanionWebClientType;
    use wacore::pair::{DeviceState, PairUtils};
    use wacore_binary::OwnedNodeRef;
    use wacore_binary::node::NodeContent;
    use whatsapp_rust::NodeFilter;
    use whatsapp_rust::client::Client;

    fn companion() -> DeviceState {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let mut adv = [0u8; 32];
        rand::RngExt::fill(&mut rng, &mut adv);
        DeviceState {
            identity_key: KeyPair::generate(&mut rng),
            noise_key: KeyPair::generate(&mut rng),
            adv_secret_key: adv,
        }
    }

    fn library_qr(state: &DeviceState) -> String {
        PairUtils::make_qr_data(state, "2@fakeRef+/=", CompanionWebClientType::Chrome)
    }

    /// Runs pair-success through the library's own pairing code exactly as
    /// `whatsapp_rust::pair::handle_pair_success` does, returning its reply.
    fn library_handles(
        state: &DeviceState,
        iq: &Node,
    ) -> Result<Node, wacore::pair::PairCryptoError> {
        let iq_ref = iq.as_node_ref();
        let success = iq_ref
            .get_optional_child_by_tag(&["pair-success"])
            .expect("pair-success child");
        let bytes = PairUtils::extract_device_identity_bytes(success).expect("device-identity");
        let req_id = iq.attrs.get("id").unwrap().as_str().into_owned();
        let (signed, key_index) = PairUtils::do_pair_crypto(state, bytes)?;
        Ok(PairUtils::build_pair_success_response(
            &req_id, signed, key_index,
        ))
    }

    /// Encode then decode, as the node would travel over the socket.
    fn over_the_wire(node: &Node) -> OwnedNodeRef {
        let bytes = wacore_binary::marshal::marshal(node).unwrap();
        let unpacked = wacore_binary::util::unpack(&bytes).unwrap().into_owned();
        OwnedNodeRef::new(unpacked).unwrap()
    }

    #[test]
    fn parse_qr_reads_the_library_qr() {
        let state = companion();
        let qr = parse_qr(&library_qr(&state)).unwrap();
        assert_eq!(qr.pair_ref, "2@fakeRef+/=");
        assert_eq!(&qr.noise_pub, state.noise_key.public_key.public_key_bytes());
        assert_eq!(
            &qr.identity_pub,
            state.identity_key.public_key.public_key_bytes()
        );
        assert_eq!(qr.adv_secret, state.adv_secret_key);

        // Deep-link prefix and legacy 4-field form.
        let prefixed = format!("{QR_DEEP_LINK_PREFIX}{}", library_qr(&state));
        assert_eq!(parse_qr(&prefixed).unwrap(), qr);
        let full = library_qr(&state);
        let legacy = full.split(',').take(4).collect::<Vec<_>>().join(",");
        assert_eq!(parse_qr(&legacy).unwrap(), qr);
    }

    #[test]
    fn parse_qr_rejects_malformed_codes() {
        let state = companion();
        let good = library_qr(&state);
        let fields: Vec<&str> = good.split(',').collect();
        assert!(parse_qr("a,b,c").is_err());
        assert!(parse_qr(&format!(",{},{},{}", fields[1], fields[2], fields[3])).is_err());
        assert!(parse_qr(&format!("r,!!,{},{}", fields[2], fields[3])).is_err());
        let short = BASE64.encode([1u8; 16]);
        assert!(parse_qr(&format!("r,{},{short},{}", fields[1], fields[3])).is_err());
    }

    #[test]
    fn pair_success_has_the_children_the_client_reads() {
        let state = companion();
        let qr = parse_qr(&library_qr(&state)).unwrap();
        let account = PhoneAccount::new("+1 555 123 4567", "Alice");
        assert_eq!(account.phone, "15551234567");
        assert_eq!(account.lid.len(), 15);
        assert_eq!(account.lid, PhoneAccount::new("15551234567", "x").lid);

        let iq = pair_success_node(&account, &qr, 7, "pair-42").unwrap();
        let wire = over_the_wire(&iq);
        let iq = wire.get();
        assert_eq!(iq.get_attr("from").unwrap().as_str(), SERVER_JID);
        assert_eq!(iq.get_attr("type").unwrap().as_str(), "set");
        assert_eq!(iq.get_attr("id").unwrap().as_str(), "pair-42");
        let success = iq.get_optional_child("pair-success").unwrap();
        // Parsed the way handle_pair_success parses them.
        let device = success.get_optional_child_by_tag(&["device"]).unwrap();
        let mut parser = device.attrs();
        assert_eq!(
            parser.optional_jid("jid").unwrap().to_string(),
            "15551234567:7@s.whatsapp.net"
        );
        assert_eq!(
            parser.optional_jid("lid").unwrap().to_string(),
            format!("{}:7@lid", account.lid)
        );
        let biz = success.get_optional_child_by_tag(&["biz"]).unwrap();
        assert_eq!(biz.get_attr("name").unwrap().as_str(), "Alice");
        let platform = success.get_optional_child_by_tag(&["platform"]).unwrap();
        assert_eq!(platform.get_attr("name").unwrap().as_str(), "android");
        assert!(PairUtils::extract_device_identity_bytes(success).is_some());

        assert!(pair_success_node(&account, &qr, 0, "x").is_err());
    }

    #[test]
    fn library_accepts_pair_success_and_its_reply_verifies() {
        let state = companion();
        let qr = parse_qr(&library_qr(&state)).unwrap();
        let account = PhoneAccount::new("15551234567", "Alice");
        let iq = pair_success_node(&account, &qr, 3, "pair-1").unwrap();

        let reply = library_handles(&state, &iq).expect("library must accept our pair-success");
        // And after a trip over the wire, as the server will receive it.
        let reply = over_the_wire(&reply).to_owned_node();
        let checked = check_sign_reply(&account, &qr, &reply).unwrap();
        verify_sign_reply(&account, &qr, &reply).unwrap();
        assert_eq!(checked.iq_id, "pair-1");
        assert_eq!(checked.key_index, 3);
        assert_eq!(checked.details.raw_id, Some(account.adv_raw_id));

        // The library's own full ADV chain check agrees.
        assert_eq!(
            validate_adv_with_identity_key(&checked.signed_identity, &qr.identity_pub, None),
            AdvValidation::Valid
        );
    }

    #[test]
    fn library_rejects_a_wrong_adv_secret() {
        let state = companion();
        let mut qr = parse_qr(&library_qr(&state)).unwrap();
        qr.adv_secret[0] ^= 1;
        let account = PhoneAccount::new("15551234567", "Alice");
        let iq = pair_success_node(&account, &qr, 1, "p").unwrap();
        let err = library_handles(&state, &iq).expect_err("wrong ADV secret must be refused");
        assert_eq!((err.code, err.text), (401, "hmac-mismatch"));
    }

    #[test]
    fn library_rejects_a_signature_for_another_companion() {
        let state = companion();
        let other = companion();
        let mut qr = parse_qr(&library_qr(&state)).unwrap();
        // Right secret, but signed for someone else's identity key.
        qr.identity_pub = other
            .identity_key
            .public_key
            .public_key_bytes()
            .try_into()
            .unwrap();
        let account = PhoneAccount::new("15551234567", "Alice");
        let iq = pair_success_node(&account, &qr, 1, "p").unwrap();
        let err = library_handles(&state, &iq).expect_err("foreign signature must be refused");
        assert_eq!((err.code, err.text), (401, "signature-mismatch"));
    }

    fn set_device_identity(reply: &mut Node, bytes: Vec<u8>) {
        let Some(NodeContent::Nodes(sign)) = reply.content.as_mut() else {
            panic!()
        };
        let Some(NodeContent::Nodes(identity)) = sign[0].content.as_mut() else {
            panic!()
        };
        identity[0].content = Some(NodeContent::Bytes(bytes));
    }

    #[test]
    fn verify_sign_reply_rejects_tampering() {
        let state = companion();
        let qr = parse_qr(&library_qr(&state)).unwrap();
        let account = PhoneAccount::new("15551234567", "Alice");
        let iq = pair_success_node(&account, &qr, 2, "pair-1").unwrap();
        let reply = library_handles(&state, &iq).unwrap();
        verify_sign_reply(&account, &qr, &reply).unwrap();
        let signed_bytes = check_sign_reply(&account, &qr, &reply)
            .unwrap()
            .signed_identity;
        let signed = waproto::codec::adv_signed_device_identity_decode(&signed_bytes).unwrap();

        // A flipped bit in the device signature.
        let mut forged = signed.clone();
        forged.device_signature.as_mut().unwrap()[5] ^= 0x10;
        let mut tampered = reply.clone();
        set_device_identity(&mut tampered, forged.encode_to_vec());
        assert!(verify_sign_reply(&account, &qr, &tampered).is_err());

        // No device signature at all.
        let mut unsigned = signed.clone();
        unsigned.device_signature = None;
        let mut tampered = reply.clone();
        set_device_identity(&mut tampered, unsigned.encode_to_vec());
        assert!(verify_sign_reply(&account, &qr, &tampered).is_err());

        // Details rewritten (another key index).
        let mut details =
            waproto::codec::adv_device_identity_decode(signed.details.as_deref().unwrap()).unwrap();
        details.key_index = Some(9);
        let mut rewritten = signed.clone();
        rewritten.details = Some(details.encode_to_vec());
        let mut tampered = reply.clone();
        set_device_identity(&mut tampered, rewritten.encode_to_vec());
        assert!(verify_sign_reply(&account, &qr, &tampered).is_err());

        // Garbage bytes.
        let mut tampered = reply.clone();
        set_device_identity(&mut tampered, vec![0xff; 40]);
        assert!(verify_sign_reply(&account, &qr, &tampered).is_err());

        // The key-index attribute disagrees with the signed details.
        let mut tampered = reply.clone();
        let Some(NodeContent::Nodes(sign)) = tampered.content.as_mut() else {
            panic!()
        };
        let Some(NodeContent::Nodes(identity)) = sign[0].content.as_mut() else {
            panic!()
        };
        identity[0].attrs.insert("key-index", "5");
        assert!(verify_sign_reply(&account, &qr, &tampered).is_err());

        // Signed by a different companion than the one in the QR.
        let other = companion();
        let other_qr = QrPayload {
            identity_pub: other
                .identity_key
                .public_key
                .public_key_bytes()
                .try_into()
                .unwrap(),
            ..qr.clone()
        };
        assert!(verify_sign_reply(&account, &other_qr, &reply).is_err());

        // Checked against another account.
        let stranger = PhoneAccount::new("15551234567", "Alice");
        assert!(verify_sign_reply(&stranger, &qr, &reply).is_err());

        // The client's refusal is an error, with its code.
        let refusal = PairUtils::build_pair_error_node("pair-1", 401, "hmac-mismatch");
        let err = verify_sign_reply(&account, &qr, &refusal)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("401") && err.contains("hmac-mismatch"),
            "{err}"
        );
    }

    async fn offline_client() -> Arc<Client> {
        use whatsapp_rust::store::persistence_manager::PersistenceManager;
        use whatsapp_rust::store::traits::Backend;
        let backend: Arc<dyn Backend> = Arc::new(wacore::store::InMemoryBackend::new());
        let pm = Arc::new(PersistenceManager::new(backend).await.unwrap());
        whatsapp_rust::ClientBuilder::new()
            .with_runtime(whatsapp_rust::TokioRuntime)
            .with_persistence_manager(pm)
            .with_transport_factory(whatsapp_rust::transport::TokioWebSocketTransportFactory::new())
            .with_http_client(whatsapp_rust::http::UreqHttpClient::new())
            .build()
            .await
            .unwrap()
            .into_client()
    }

    /// Feeds pair-success to a real (never connected) `Client` through its
    /// public iq entry point and returns the stanza it tried to send back.
    /// The send itself fails (no socket), which only skips the `PairSuccess`
    /// event; everything else in `handle_pair_success` runs.
    async fn client_answers(client: &Arc<Client>, iq: &Node) -> Arc<Node> {
        let id = iq.attrs.get("id").unwrap().as_str().into_owned();
        let sent = client.wait_for_sent_node(NodeFilter::tag("iq").attr("id", id));
        let wire = over_the_wire(iq);
        assert!(whatsapp_rust::pair::handle_iq(client, wire.get()).await);
        tokio::time::timeout(std::time::Duration::from_secs(10), sent)
            .await
            .expect("the client answered pair-success")
            .unwrap()
    }

    #[tokio::test]
    async fn a_real_client_pairs_and_its_reply_verifies() {
        let client = offline_client().await;
        let snapshot = client.persistence_manager().get_device_snapshot();
        let qr_string = whatsapp_rust::pair::make_qr_data(&snapshot, "2@realClientRef");
        let qr = parse_qr(&qr_string).unwrap();
        assert_eq!(qr.adv_secret, snapshot.adv_secret_key);

        let account = PhoneAccount::new("15551234567", "Alice Phone");
        let iq = pair_success_node(&account, &qr, 4, "pair-real").unwrap();
        let reply = client_answers(&client, &iq).await;
        let checked = check_sign_reply(&account, &qr, &reply).expect("valid pair-device-sign");
        assert_eq!(checked.key_index, 4);

        let after = client.persistence_manager().get_device_snapshot();
        assert_eq!(after.pn.as_ref(), Some(&account.device_jid(4)));
        assert_eq!(after.lid.as_ref(), Some(&account.device_lid(4)));
        assert_eq!(after.push_name, "Alice Phone");
        let stored = after.account.as_ref().expect("account identity stored");
        assert_eq!(
            stored.account_signature_key.as_deref(),
            Some(account.identity_pub().as_slice())
        );
    }

    #[tokio::test]
    async fn a_real_client_refuses_a_wrong_adv_secret() {
        let client = offline_client().await;
        let snapshot = client.persistence_manager().get_device_snapshot();
        let mut qr = parse_qr(&whatsapp_rust::pair::make_qr_data(&snapshot, "2@ref")).unwrap();
        qr.adv_secret = [0x5a; 32];
        let account = PhoneAccount::new("15551234567", "Alice");
        let iq = pair_success_node(&account, &qr, 1, "pair-bad").unwrap();
        let reply = client_answers(&client, &iq).await;
        assert_eq!(reply.attrs.get("type").unwrap().as_str(), "error");
        let error = reply.get_optional_child("error").unwrap();
        assert_eq!(error.attrs.get("code").unwrap().as_str(), "401");
        assert!(verify_sign_reply(&account, &qr, &reply).is_err());
        assert!(
            client
                .persistence_manager()
                .get_device_snapshot()
                .pn
                .is_none()
        );
    }
}

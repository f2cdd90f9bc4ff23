//! How the library's structured values become bytes in our columns. Each encoding starts with
//! a format byte, so a later change of encoding can read the rows written before it.

use std::collections::HashMap;
use std::sync::Arc;

use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::client_profile::ClientProfile;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::device::DEVICE_PROPS;
use whatsapp_rust::wacore::store::error::StoreError as LibError;

/// serde_json of [`Device`]: self-describing, so a field the library adds later (always with
/// `#[serde(default)]`) reads from rows written before it.
const DEVICE_JSON: u8 = 1;
/// [`HashState`] as version, hash, flag and its index/value pairs, length-prefixed. Not JSON:
/// JSON writes each `Vec<u8>` as a list of numbers, and a contacts collection holds thousands.
const HASH_STATE_V1: u8 = 1;

pub(crate) fn encode_device(device: &Device) -> Result<Vec<u8>, LibError> {
    let mut out = vec![DEVICE_JSON];
    serde_json::to_writer(&mut out, device).map_err(|e| LibError::Serialization(Box::new(e)))?;
    Ok(out)
}

/// The inverse of [`encode_device`], with the fields serde skips restored exactly as the
/// library's own SQLite store restores them on load (`load_device_data_for_device`): the
/// process-wide device props, the web client profile, and "this salt not synced yet".
pub(crate) fn decode_device(bytes: &[u8]) -> Result<Device, LibError> {
    let Some((&format, json)) = bytes.split_first() else {
        return Err(LibError::Validation("empty device blob".into()));
    };
    if format != DEVICE_JSON {
        return Err(LibError::Validation(format!(
            "device blob has unknown format {format}"
        )));
    }
    let mut device: Device =
        serde_json::from_slice(json).map_err(|e| LibError::Serialization(Box::new(e)))?;
    device.device_props = Arc::new(DEVICE_PROPS.clone());
    device.client_profile = ClientProfile::web();
    device.nct_salt_sync_seen = false;
    Ok(device)
}

pub(crate) fn encode_hash_state(state: &HashState) -> Vec<u8> {
    let pairs: usize = state
        .index_value_map
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(1 + 8 + 128 + 1 + 4 + pairs);
    out.push(HASH_STATE_V1);
    out.extend_from_slice(&state.version.to_be_bytes());
    out.extend_from_slice(&state.hash);
    out.push(u8::from(state.mac_mismatch_fatal));
    put_len(&mut out, state.index_value_map.len());
    for (k, v) in &state.index_value_map {
        put_len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        put_len(&mut out, v.len());
        out.extend_from_slice(v);
    }
    out
}

// A collection larger than 4 GiB cannot reach us: the library holds it in memory first.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

pub(crate) fn decode_hash_state(bytes: &[u8]) -> Result<HashState, String> {
    let mut r = Reader(bytes);
    let format = r.take(1)?[0];
    if format != HASH_STATE_V1 {
        return Err(format!("unknown app-state version format {format}"));
    }
    let version = u64::from_be_bytes(r.array()?);
    let hash: [u8; 128] = r.array()?;
    let mac_mismatch_fatal = match r.take(1)?[0] {
        0 => false,
        1 => true,
        other => return Err(format!("bad flag byte {other}")),
    };
    let count = r.len()?;
    // Each pair takes at least 8 bytes: a corrupt count must not reserve gigabytes.
    let mut index_value_map = HashMap::with_capacity(count.min(r.0.len() / 8));
    for _ in 0..count {
        let k = r.len()?;
        let key = String::from_utf8(r.take(k)?.to_vec()).map_err(|e| e.to_string())?;
        let v = r.len()?;
        index_value_map.insert(key, r.take(v)?.to_vec());
    }
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok(HashState {
        version,
        hash,
        index_value_map,
        mac_mismatch_fatal,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: wanted {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self) -> Result<usize, String> {
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> HashState {
        let mut s = HashState {
            version: 0x0102_0304_0506_0708,
            hash: [7; 128],
            mac_mismatch_fatal: true,
            ..HashState::default()
        };
        s.hash[127] = 9;
        s.index_value_map.insert("a".into(), vec![1, 2, 3]);
        s.index_value_map.insert("ünï".into(), vec![]);
        s.index_value_map.insert(String::new(), vec![0; 40]);
        s
    }

    #[test]
    fn hash_state_round_trips() {
        let s = state();
        let back = decode_hash_state(&encode_hash_state(&s)).unwrap();
        assert_eq!(back.version, s.version);
        assert_eq!(back.hash, s.hash);
        assert_eq!(back.mac_mismatch_fatal, s.mac_mismatch_fatal);
        assert_eq!(back.index_value_map, s.index_value_map);
        let empty = decode_hash_state(&encode_hash_state(&HashState::default())).unwrap();
        assert_eq!(empty.version, 0);
        assert!(empty.index_value_map.is_empty() && !empty.mac_mismatch_fatal);
    }

    #[test]
    fn a_damaged_hash_state_is_an_error_not_a_panic() {
        let bytes = encode_hash_state(&state());
        for cut in 0..bytes.len() {
            assert!(decode_hash_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_hash_state(&longer).is_err());
        let mut other_format = bytes;
        other_format[0] = 2;
        assert!(decode_hash_state(&other_format).is_err());
    }

    #[test]
    fn a_device_round_trips_with_its_skipped_fields_restored() {
        let mut d = Device::new();
        d.push_name = "Ali".into();
        d.pn = "966501234567@s.whatsapp.net".parse().ok();
        d.nct_salt = Some(vec![1, 2, 3]);
        d.nct_salt_sync_seen = true;
        let back = decode_device(&encode_device(&d).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
        assert!(!back.nct_salt_sync_seen);
        assert_eq!(*back.device_props, *DEVICE_PROPS);
        assert!(decode_device(&[]).is_err());
        assert!(decode_device(&[9, b'{', b'}']).is_err());
    }
}

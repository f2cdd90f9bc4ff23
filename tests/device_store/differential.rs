//! Our backend against the library's own `InMemoryBackend`: the same seeded pseudo-random
//! sequence of writes on both, every answer compared, and every readable key compared every
//! few steps. Where the library's SQLite store (the one ours follows) answers differently from
//! its in-memory one, the generator stays out of that corner (the `methods` tests pin those):
//! `get_latest_sync_key_id` is not compared, each LID keeps one number and one `created_at`.

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{
    AppStateSyncKey, Backend, DeviceInfo, DeviceListRecord, LidPnMappingEntry, MsgSecretEntry,
    PendingInboundKey, PendingInboundRow, TcTokenEntry,
};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::{Device, InMemoryBackend};

use crate::Db;

crate::on_both!(replays_match_the_librarys_in_memory_backend);

const ADDRESSES: [&str; 5] = ["1@lid", "1:2@lid", "12@s.whatsapp.net", "2@lid", "21:1@lid"];
const USERS: [&str; 6] = ["1", "12", "2", "21", "3", "1:"];
const NAMES: [&str; 2] = ["regular", "critical_block"];
const GROUPS: [&str; 2] = ["g1@g.us", "g2@g.us"];
const DEVICE_JIDS: [&str; 3] = ["a:1@lid", "b:2@lid", "c:3@lid"];
const LIDS: [&str; 3] = ["100", "200", "300"];
const JIDS: [&str; 3] = ["t1@lid", "t2@lid", "t3@lid"];
const IDS: [&str; 4] = ["M1", "M2", "M3", "M4"];

/// xorshift64*: a seed names a sequence, on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = 1 + self.below(6);
        (0..n).map(|_| self.below(4) as u8).collect()
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
}

/// Runs the same call on both backends and hands back both answers.
macro_rules! on2 {
    ($m:expr, $o:expr, |$b:ident| $call:expr) => {{
        let x = {
            let $b: &dyn Backend = &**$m;
            $call.await.unwrap()
        };
        let y = {
            let $b: &dyn Backend = &**$o;
            $call.await.unwrap()
        };
        (x, y)
    }};
}

macro_rules! same {
    ($m:expr, $o:expr, $what:expr, |$b:ident| $call:expr) => {{
        let (x, y) = on2!($m, $o, |$b| $call);
        assert_eq!(x, y, "{}", $what);
    }};
    ($m:expr, $o:expr, $what:expr, |$b:ident| $call:expr, $norm:expr) => {{
        let (x, y) = on2!($m, $o, |$b| $call);
        assert_eq!($norm(x), $norm(y), "{}", $what);
    }};
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn lid_entry(lid: &str, updated_at: i64, source: &str) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: format!("55{lid}"),
        created_at: lid.parse().unwrap_or(0),
        updated_at,
        learning_source: source.into(),
    }
}

fn lid_key(e: Option<LidPnMappingEntry>) -> Option<(String, String, i64, i64, String)> {
    e.map(|e| {
        (
            e.lid,
            e.phone_number,
            e.created_at,
            e.updated_at,
            e.learning_source,
        )
    })
}

fn sync_key(k: Option<AppStateSyncKey>) -> Option<(Vec<u8>, Vec<u8>, i64)> {
    k.map(|k| (k.key_data, k.fingerprint, k.timestamp))
}

fn tc(e: Option<TcTokenEntry>) -> Option<(Vec<u8>, i64, Option<i64>)> {
    e.map(|e| (e.token, e.token_timestamp, e.sender_timestamp))
}

/// A state as comparable parts: version, hash, flag, sorted pairs.
type VersionParts = (u64, Vec<u8>, bool, Vec<(String, Vec<u8>)>);

fn version(s: HashState) -> VersionParts {
    (
        s.version,
        s.hash.to_vec(),
        s.mac_mismatch_fatal,
        sorted(s.index_value_map.into_iter().collect()),
    )
}

fn devices(r: Option<DeviceListRecord>) -> Option<serde_json::Value> {
    r.map(|r| serde_json::to_value(r).unwrap())
}

fn device_json(d: Option<Device>) -> Option<serde_json::Value> {
    d.map(|d| serde_json::to_value(d).unwrap())
}

async fn replays_match_the_librarys_in_memory_backend(db: Db) {
    for seed in [1u64, 0x5eed, 0xdead_beef] {
        let mem: Arc<dyn Backend> = Arc::new(InMemoryBackend::new());
        let ours = db.backend(&format!("diff_{seed}")).await;
        replay(&mem, &ours, seed, 400).await;
    }
}

async fn replay(m: &Arc<dyn Backend>, o: &Arc<dyn Backend>, seed: u64, steps: usize) {
    let mut r = Rng(seed);
    let saved_devices: Vec<Device> = (0..3)
        .map(|i| {
            let mut d = Device::new();
            d.push_name = format!("device {i}");
            d.pn = format!("96650123456{i}@s.whatsapp.net").parse().ok();
            d
        })
        .collect();
    let mut device_saved = false;
    same!(m, o, "exists", |b| b.exists());
    for step in 0..steps {
        let op = r.below(36);
        let what = format!("seed {seed} step {step} op {op}");
        // Every argument is drawn once, before the call runs on both backends.
        match op {
            0 => {
                let (a, k) = (r.pick(&ADDRESSES), [r.below(3) as u8; 32]);
                same!(m, o, &what, |b| b.put_identity(a, k))
            }
            1 => {
                let batch: Vec<(Arc<str>, [u8; 32])> = (0..r.below(4))
                    .map(|_| (Arc::from(*r.pick(&ADDRESSES)), [r.below(3) as u8; 32]))
                    .collect();
                same!(m, o, &what, |b| b.put_identities_batch(&batch))
            }
            2 => {
                let a = r.pick(&ADDRESSES);
                same!(m, o, &what, |b| b.delete_identity(a))
            }
            3 => {
                let (a, v) = (r.pick(&ADDRESSES), r.bytes());
                same!(m, o, &what, |b| b.put_session(a, &v))
            }
            4 => {
                let batch: Vec<(Arc<str>, Bytes)> = (0..r.below(4))
                    .map(|_| (Arc::from(*r.pick(&ADDRESSES)), Bytes::from(r.bytes())))
                    .collect();
                same!(m, o, &what, |b| b.put_sessions_batch(&batch))
            }
            5 => {
                let a = r.pick(&ADDRESSES);
                same!(m, o, &what, |b| b.delete_session(a))
            }
            6 => {
                let (id, v, up) = (1 + r.below(8) as u32, r.bytes(), r.coin());
                same!(m, o, &what, |b| b.store_prekey(id, &v, up))
            }
            7 => {
                let batch: Vec<(u32, Bytes)> = (0..r.below(4))
                    .map(|_| (1 + r.below(8) as u32, Bytes::from(r.bytes())))
                    .collect();
                let up = r.coin();
                same!(m, o, &what, |b| b.store_prekeys_batch(&batch, up))
            }
            8 => {
                let id = 1 + r.below(8) as u32;
                same!(m, o, &what, |b| b.remove_prekey(id))
            }
            9 => {
                let ids: Vec<u32> = (0..r.below(4)).map(|_| 1 + r.below(8) as u32).collect();
                same!(m, o, &what, |b| b.mark_prekeys_uploaded(&ids))
            }
            10 => {
                let (id, v) = (1 + r.below(4) as u32, r.bytes());
                same!(m, o, &what, |b| b.store_signed_prekey(id, &v))
            }
            11 => {
                let id = 1 + r.below(4) as u32;
                same!(m, o, &what, |b| b.remove_signed_prekey(id))
            }
            12 => {
                let (a, v) = (r.pick(&ADDRESSES), r.bytes());
                same!(m, o, &what, |b| b.put_sender_key(a, &v))
            }
            13 => {
                let a = r.pick(&ADDRESSES);
                same!(m, o, &what, |b| b.delete_sender_key(a))
            }
            14 => {
                let key = AppStateSyncKey {
                    key_data: r.bytes(),
                    fingerprint: r.bytes(),
                    timestamp: r.below(9) as i64,
                };
                let id = [r.below(3) as u8];
                same!(m, o, &what, |b| b.set_sync_key(&id, key.clone()))
            }
            15 => {
                let mut s = HashState {
                    version: r.below(50) as u64,
                    mac_mismatch_fatal: r.coin(),
                    ..HashState::default()
                };
                s.hash[r.below(128)] = r.below(255) as u8;
                for _ in 0..r.below(3) {
                    s.index_value_map
                        .insert(format!("k{}", r.below(4)), r.bytes());
                }
                let n = r.pick(&NAMES);
                same!(m, o, &what, |b| b.set_version(n, s.clone()))
            }
            16 => {
                let macs: Vec<AppStateMutationMAC> = (0..r.below(4))
                    .map(|_| AppStateMutationMAC {
                        index_mac: vec![r.below(5) as u8; 32],
                        value_mac: r.bytes(),
                    })
                    .collect();
                let (n, v) = (r.pick(&NAMES), r.below(9) as u64);
                same!(m, o, &what, |b| b.put_mutation_macs(n, v, &macs))
            }
            17 => {
                let macs: Vec<Vec<u8>> = (0..r.below(3))
                    .map(|_| vec![r.below(5) as u8; 32])
                    .collect();
                let n = r.pick(&NAMES);
                same!(m, o, &what, |b| b.delete_mutation_macs(n, &macs))
            }
            18 => {
                let n = r.pick(&NAMES);
                same!(m, o, &what, |b| b.clear_mutation_macs(n))
            }
            19 => {
                let entries: Vec<(&str, bool)> = (0..r.below(4))
                    .map(|_| (*r.pick(&DEVICE_JIDS), r.coin()))
                    .collect();
                let g = r.pick(&GROUPS);
                same!(m, o, &what, |b| b.set_sender_key_status(g, &entries))
            }
            20 => {
                let (g, d) = (r.pick(&GROUPS), *r.pick(&DEVICE_JIDS));
                match r.below(3) {
                    0 => same!(m, o, &what, |b| b.clear_sender_key_devices(g)),
                    1 => same!(m, o, &what, |b| b.delete_sender_key_device_rows(&[d])),
                    _ => same!(m, o, &what, |b| b.clear_all_sender_key_devices()),
                }
            }
            21 => {
                let e = lid_entry(LIDS[r.below(3)], step as i64, ["usync", "pn"][r.below(2)]);
                same!(m, o, &what, |b| b.put_lid_mapping(&e))
            }
            22 => {
                let batch: Vec<LidPnMappingEntry> = (0..r.below(3))
                    .map(|_| lid_entry(LIDS[r.below(3)], step as i64, "batch"))
                    .collect();
                same!(m, o, &what, |b| b.put_lid_mappings(&batch))
            }
            23 => {
                let (a, id, k) = (r.pick(&ADDRESSES), r.pick(&IDS), [r.below(2) as u8]);
                same!(m, o, &what, |b| b.save_base_key(a, id, &k))
            }
            24 => {
                let (a, id) = (r.pick(&ADDRESSES), r.pick(&IDS));
                same!(m, o, &what, |b| b.delete_base_key(a, id))
            }
            25 => {
                let records: Vec<DeviceListRecord> = (0..1 + r.below(2))
                    .map(|_| DeviceListRecord {
                        user: r.pick(&USERS).to_string(),
                        devices: (0..r.below(3))
                            .map(|i| {
                                DeviceInfo::new(i as u32, Some(r.below(3) as u32))
                                    .with_hosting(r.coin())
                            })
                            .collect(),
                        timestamp: r.below(100) as i64,
                        phash: r.coin().then(|| "2:x".to_string()),
                        raw_id: r.coin().then(|| r.below(9) as u32),
                    })
                    .collect();
                if records.len() == 1 {
                    same!(m, o, &what, |b| b.update_device_list(records[0].clone()))
                } else {
                    same!(m, o, &what, |b| b.update_device_lists(records.clone()))
                }
            }
            26 => {
                let u = r.pick(&USERS);
                same!(m, o, &what, |b| b.delete_devices(u))
            }
            27 => {
                let (g, v) = (r.pick(&GROUPS), r.bytes());
                match r.below(2) {
                    0 => same!(m, o, &what, |b| b.put_group_metadata(g, &v)),
                    _ => same!(m, o, &what, |b| b.delete_group_metadata(g)),
                }
            }
            28 => {
                let e = TcTokenEntry {
                    token: if r.coin() { vec![] } else { r.bytes() },
                    token_timestamp: r.below(100) as i64,
                    sender_timestamp: r.coin().then(|| r.below(100) as i64),
                };
                let j = r.pick(&JIDS);
                same!(m, o, &what, |b| b.put_tc_token(j, &e))
            }
            29 => {
                let (j, t1, t2, v) = (
                    r.pick(&JIDS),
                    r.below(100) as i64,
                    r.below(100) as i64,
                    r.bytes(),
                );
                match r.below(4) {
                    0 => same!(m, o, &what, |b| b.touch_tc_token_sender_timestamp(j, t1)),
                    1 => same!(m, o, &what, |b| b.store_received_tc_token(j, &v, t1)),
                    2 => same!(m, o, &what, |b| b.delete_tc_token(j)),
                    _ => same!(m, o, &what, |b| b.delete_expired_tc_tokens(t1, t2)),
                }
            }
            30 => {
                let (id, v) = (r.pick(&IDS), r.bytes());
                match r.below(3) {
                    0 | 1 => same!(m, o, &what, |b| b.store_sent_message("c@lid", id, &v)),
                    _ => same!(m, o, &what, |b| b.take_sent_message("c@lid", id)),
                }
            }
            31 => {
                // Ages are wall-clock seconds on both: only "none" and "all" are exact.
                let cutoff = if r.below(4) == 0 { i64::MAX } else { 0 };
                match r.below(2) {
                    0 => same!(m, o, &what, |b| b.delete_expired_sent_messages(cutoff)),
                    _ => same!(m, o, &what, |b| b.delete_expired_pending_inbound(cutoff)),
                }
            }
            32 => {
                let rows: Vec<(String, String, Vec<u8>)> = (0..r.below(3))
                    .map(|_| {
                        (
                            r.pick(&ADDRESSES).to_string(),
                            r.pick(&IDS).to_string(),
                            r.bytes(),
                        )
                    })
                    .collect();
                let batch: Vec<PendingInboundRow<'_>> = rows
                    .iter()
                    .map(|(s, id, msg)| PendingInboundRow {
                        chat: "c@lid",
                        sender: s,
                        id,
                        message: msg,
                    })
                    .collect();
                match batch.len() {
                    1 => {
                        let p = batch[0];
                        same!(m, o, &what, |b| b
                            .store_pending_inbound(p.chat, p.sender, p.id, p.message))
                    }
                    _ => same!(m, o, &what, |b| b.store_pending_inbound_batch(&batch)),
                }
            }
            33 => {
                let keys: Vec<(String, String)> = (0..r.below(3))
                    .map(|_| (r.pick(&ADDRESSES).to_string(), r.pick(&IDS).to_string()))
                    .collect();
                let batch: Vec<PendingInboundKey<'_>> = keys
                    .iter()
                    .map(|(s, id)| PendingInboundKey {
                        chat: "c@lid",
                        sender: s,
                        id,
                    })
                    .collect();
                match batch.len() {
                    1 => {
                        let k = batch[0];
                        same!(m, o, &what, |b| b
                            .delete_pending_inbound(k.chat, k.sender, k.id))
                    }
                    _ => same!(m, o, &what, |b| b.delete_pending_inbound_batch(&batch)),
                }
            }
            34 => {
                let (a, id, sec, cutoff) = (
                    r.pick(&ADDRESSES),
                    r.pick(&IDS),
                    [r.below(3) as u8; 32],
                    r.below(120) as i64,
                );
                let entries: Vec<MsgSecretEntry> = (0..r.below(4))
                    .map(|_| MsgSecretEntry {
                        chat: Arc::from("c@lid"),
                        sender: Arc::from(*r.pick(&ADDRESSES)),
                        msg_id: Arc::from(*r.pick(&IDS)),
                        secret: [r.below(3) as u8; 32],
                        expires_at: if r.coin() {
                            0
                        } else {
                            10 + r.below(100) as i64
                        },
                        message_ts: r.below(50) as i64,
                    })
                    .collect();
                match r.below(4) {
                    0 => same!(m, o, &what, |b| b.put_msg_secret("c@lid", a, id, &sec)),
                    1 => same!(m, o, &what, |b| b.delete_expired_msg_secrets(cutoff)),
                    _ => same!(m, o, &what, |b| b.put_msg_secrets(entries.clone())),
                }
            }
            _ => {
                if r.coin() {
                    same!(m, o, &what, |b| b.create(), |_: i32| ());
                } else {
                    let d = &saved_devices[r.below(3)];
                    same!(m, o, &what, |b| b.save(d));
                    device_saved = true;
                }
            }
        }
        if step % 40 == 39 || step + 1 == steps {
            compare_all(
                m,
                o,
                &format!("seed {seed} after step {step}"),
                device_saved,
            )
            .await;
        }
    }
}

/// Every read, over every key the generator uses.
async fn compare_all(m: &Arc<dyn Backend>, o: &Arc<dyn Backend>, at: &str, device_saved: bool) {
    same!(m, o, at, |b| b.exists());
    if device_saved {
        same!(m, o, at, |b| b.load(), device_json);
    }
    for a in ADDRESSES {
        same!(m, o, at, |b| b.load_identity(a));
        same!(m, o, at, |b| b.get_session(a));
        same!(m, o, at, |b| b.has_session(a));
        same!(m, o, at, |b| b.get_sender_key(a));
        for id in IDS {
            for k in [[0u8], [1u8]] {
                same!(m, o, at, |b| b.has_same_base_key(a, id, &k));
            }
            same!(m, o, at, |b| b.get_pending_inbound("c@lid", a, id));
            same!(m, o, at, |b| b.get_msg_secret_with_ts("c@lid", a, id));
            same!(m, o, at, |b| b.get_msg_secret("c@lid", a, id));
        }
    }
    for u in USERS {
        same!(m, o, at, |b| b.has_signal_state_for_user(u));
        same!(m, o, at, |b| b.get_devices(u), devices);
    }
    let ids: Vec<u32> = (0..10).collect();
    for id in &ids {
        same!(m, o, at, |b| b.load_prekey(*id));
        same!(m, o, at, |b| b.load_signed_prekey(*id));
    }
    same!(m, o, at, |b| b.load_prekeys_batch(&ids), sorted);
    same!(m, o, at, |b| b.get_max_prekey_id());
    same!(m, o, at, |b| b.load_all_signed_prekeys(), sorted);
    for k in 0..3u8 {
        same!(m, o, at, |b| b.get_sync_key(&[k]), sync_key);
    }
    let all_macs: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
    for n in NAMES {
        same!(m, o, at, |b| b.get_version(n), version);
        for mac in &all_macs {
            same!(m, o, at, |b| b.get_mutation_mac(n, mac));
        }
        same!(
            m,
            o,
            at,
            |b| b.get_mutation_macs(n, &all_macs),
            |h: std::collections::HashMap<[u8; 32], Vec<u8>>| sorted(h.into_iter().collect())
        );
    }
    for g in GROUPS {
        same!(m, o, at, |b| b.get_sender_key_devices(g), sorted);
        same!(m, o, at, |b| b.get_group_metadata(g));
    }
    for l in LIDS {
        same!(m, o, at, |b| b.get_lid_mapping(l), lid_key);
        same!(m, o, at, |b| b.get_pn_mapping(&format!("55{l}")), lid_key);
    }
    same!(m, o, at, |b| b.get_all_lid_mappings(), |v: Vec<
        LidPnMappingEntry,
    >| sorted(
        v.into_iter().map(|e| lid_key(Some(e))).collect()
    ));
    for j in JIDS {
        same!(m, o, at, |b| b.get_tc_token(j), tc);
    }
    same!(m, o, at, |b| b.get_all_tc_token_jids(), sorted);
}

//! Answers to the IQs a client sends (mostly during and after login).
//!
//! Everything not listed gets an empty `type="result"`: the client treats most
//! of the post-login queries (props, privacy, digest, device lists, ...) as
//! best-effort and only logs a parse failure, but an unanswered IQ would hold
//! its caller for 75 s.

use crate::nodes::attr;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::{Node, NodeContent};

pub(crate) const SERVER: &str = "s.whatsapp.net";

/// What the connection knows that answers may depend on.
pub(crate) struct IqCtx {
    /// Pre-keys the server holds for this device.
    pub prekey_count: usize,
    /// The account's contacts as app state, if this is a logged-in device.
    pub contacts: Option<ContactsCtx>,
}

/// What a `critical_unblock_low` answer is built from.
pub(crate) struct ContactsCtx {
    pub key: crate::keyshare::AppStateKey,
    /// One batch per version ([`crate::FakeWhatsApp::set_contacts`]).
    pub batches: Vec<Vec<crate::PhoneContact>>,
    /// The version this device was last sent.
    pub sent: u64,
}

/// Side effects of an IQ, applied by the connection.
#[derive(Debug, Default)]
pub(crate) struct IqEffects {
    /// The client uploaded this many one-time pre-keys.
    pub uploaded_prekeys: Option<usize>,
    /// The client left passive mode (`<active/>`): offline delivery starts.
    pub went_active: bool,
    /// The client asked to unlink itself (logout).
    pub removed_self: bool,
    /// App-state collections the client synced (all answered empty).
    pub synced_collections: Vec<String>,
    /// The device was sent `critical_unblock_low` up to this version.
    pub contacts_sent: Option<u64>,
    /// The client asked for a phone-number pairing code (`companion_hello`).
    pub code_request: Option<crate::paircode::CodeRequest>,
    /// The client sent its pair-code key bundle (`companion_finish`).
    pub companion_finish: bool,
}

pub(crate) struct IqAnswer {
    pub reply: Node,
    pub effects: IqEffects,
}

/// Builds the answer for an IQ request (`type="get"` or `"set"`).
pub(crate) fn answer(req: &Node, ctx: &IqCtx) -> IqAnswer {
    let xmlns = attr(req, "xmlns").unwrap_or_default();
    let kind = attr(req, "type").unwrap_or_default();
    let first_child = req.children().and_then(|c| c.first());
    let child_tag = first_child.map(|c| c.tag.as_ref()).unwrap_or("");
    let mut effects = IqEffects::default();

    let content: Vec<Node> = match (xmlns.as_str(), kind.as_str(), child_tag) {
        // Pre-key count.
        ("encrypt", "get", "count") => vec![
            NodeBuilder::new("count")
                .attr("value", ctx.prekey_count.to_string())
                .build(),
        ],
        // Pre-key upload: <registration/><type/><identity/><list><key/>...</list><skey/>.
        ("encrypt", "set", _) => {
            let uploaded = req
                .get_optional_child("list")
                .map(|l| l.get_children_by_tag("key").count())
                .unwrap_or(0);
            effects.uploaded_prekeys = Some(uploaded);
            Vec::new()
        }
        ("passive", _, "active") => {
            effects.went_active = true;
            Vec::new()
        }
        ("w:sync:app:state", _, "sync") => {
            let (sync, contacts_sent) = app_state(first_child, ctx.contacts.as_ref());
            effects.contacts_sent = contacts_sent;
            effects.synced_collections = sync
                .get_children_by_tag("collection")
                .filter_map(|c| attr(c, "name"))
                .collect();
            vec![sync]
        }
        (_, "get", "props") => vec![
            NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", "fake")
                .attr("refresh", "86400")
                .build(),
        ],
        // Nothing known about anyone: an empty user list ("unchanged").
        ("usync", _, "usync") => vec![
            NodeBuilder::new("usync")
                .children([
                    NodeBuilder::new("result").build(),
                    NodeBuilder::new("list").build(),
                ])
                .build(),
        ],
        // Where to upload media: the fake media server (`crate::media`).
        ("w:m", "set", "media_conn") => vec![
            NodeBuilder::new("media_conn")
                .attr("auth", crate::media::AUTH)
                .attr("ttl", "3600")
                .children([NodeBuilder::new("host")
                    .attr("hostname", crate::media::HOST)
                    .attr("type", "primary")
                    .build()])
                .build(),
        ],
        ("blocklist", "get", _) => vec![NodeBuilder::new("list").build()],
        ("privacy", "get", _) => vec![NodeBuilder::new("privacy").build()],
        ("md", "set", "remove-companion-device") => {
            effects.removed_self = true;
            Vec::new()
        }
        // Phone-number linking, stage 1: hand out a pairing ref.
        ("md", "set", "link_code_companion_reg") => {
            let reg = first_child.expect("matched on the child tag");
            match crate::paircode::stage(reg).as_deref() {
                Some("companion_hello") => match crate::paircode::parse_companion_hello(reg) {
                    Ok(request) => {
                        let content = vec![crate::paircode::companion_hello_answer(&request)];
                        effects.code_request = Some(request);
                        content
                    }
                    Err(e) => {
                        tracing::debug!("fake-whatsapp: bad companion_hello: {e:#}");
                        return IqAnswer {
                            reply: error_for(req, 400, "bad-request"),
                            effects,
                        };
                    }
                },
                // Stage 2: the server acknowledges; the phone judges the bundle.
                Some("companion_finish") => {
                    effects.companion_finish = true;
                    Vec::new()
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };

    IqAnswer {
        reply: result_for(req, content),
        effects,
    }
}

/// `<iq type="result" id=.. from=..>` answering `req`.
pub(crate) fn result_for(req: &Node, content: Vec<Node>) -> Node {
    let id = attr(req, "id").unwrap_or_default();
    let from = attr(req, "to")
        .filter(|t| !t.is_empty() && t != "@s.whatsapp.net")
        .unwrap_or_else(|| SERVER.to_string());
    let mut b = NodeBuilder::new("iq")
        .attr("from", from)
        .attr("type", "result")
        .attr("id", id);
    if !content.is_empty() {
        b = b.children(content);
    }
    b.build()
}

/// `<iq type="error" id=..><error code=.. text=../></iq>` answering `req`.
pub(crate) fn error_for(req: &Node, code: u16, text: &str) -> Node {
    let mut reply = result_for(
        req,
        vec![
            NodeBuilder::new("error")
                .attr("code", code.to_string())
                .attr("text", text)
                .build(),
        ],
    );
    reply.attrs.insert("type", "error");
    reply
}

/// Every requested collection, empty and at version 0 (no snapshot, no
/// patches, so the client needs no app-state keys to "sync" it), except
/// `critical_unblock_low` once the phone has contacts: its patches newer than
/// the client's version, inline. Also returns the version sent that far.
///
/// A request without `version` (`return_snapshot="true"`: the client is at 0,
/// or forces a full resync while keeping its state) is answered from the
/// version this device was last sent, since patches must continue the
/// client's own version and snapshots would need a media download.
fn app_state(sync: Option<&Node>, contacts: Option<&ContactsCtx>) -> (Node, Option<u64>) {
    let mut sent = None;
    let collections: Vec<Node> = sync
        .map(|s| {
            s.get_children_by_tag("collection")
                .filter_map(|c| Some((attr(c, "name")?, c)))
                .map(|(name, c)| match contacts {
                    Some(ctx) if name == crate::contacts::COLLECTION && !ctx.batches.is_empty() => {
                        let from = attr(c, "version")
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(ctx.sent);
                        let head = ctx.batches.len() as u64;
                        let patches = crate::contacts::patches_since(&ctx.batches, &ctx.key, from);
                        sent = Some(head.max(from));
                        let mut b = NodeBuilder::new("collection")
                            .attr("name", name)
                            .attr("version", head.max(from).to_string());
                        if !patches.is_empty() {
                            b = b.children([NodeBuilder::new("patches")
                                .children(
                                    patches
                                        .into_iter()
                                        .map(|p| NodeBuilder::new("patch").bytes(p).build()),
                                )
                                .build()]);
                        }
                        b.build()
                    }
                    _ => NodeBuilder::new("collection")
                        .attr("name", name)
                        .attr("version", "0")
                        .build(),
                })
                .collect()
        })
        .unwrap_or_default();
    (
        Node::new(
            "sync",
            Default::default(),
            Some(NodeContent::Nodes(collections)),
        ),
        sent,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(xmlns: &str, kind: &str, child: Node) -> Node {
        NodeBuilder::new("iq")
            .attr("id", "1")
            .attr("xmlns", xmlns.to_string())
            .attr("type", kind.to_string())
            .attr("to", SERVER)
            .children([child])
            .build()
    }

    #[test]
    fn count_reports_prekeys() {
        let a = answer(
            &iq("encrypt", "get", NodeBuilder::new("count").build()),
            &IqCtx {
                prekey_count: 7,
                contacts: None,
            },
        );
        let count = a.reply.get_optional_child("count").unwrap();
        assert_eq!(attr(count, "value").as_deref(), Some("7"));
        assert_eq!(attr(&a.reply, "type").as_deref(), Some("result"));
        assert_eq!(attr(&a.reply, "id").as_deref(), Some("1"));
    }

    #[test]
    fn app_state_mirrors_collections() {
        let sync = NodeBuilder::new("sync")
            .children([
                NodeBuilder::new("collection")
                    .attr("name", "critical_block")
                    .build(),
                NodeBuilder::new("collection")
                    .attr("name", "regular")
                    .build(),
            ])
            .build();
        let a = answer(
            &iq("w:sync:app:state", "set", sync),
            &IqCtx {
                prekey_count: 0,
                contacts: None,
            },
        );
        let lists = wacore::appstate::patch_decode::parse_patch_lists(&a.reply).unwrap();
        assert_eq!(lists.len(), 2);
        assert!(
            lists
                .iter()
                .all(|l| l.patches.is_empty() && l.error.is_none())
        );
    }

    #[test]
    fn active_is_flagged() {
        let a = answer(
            &iq("passive", "set", NodeBuilder::new("active").build()),
            &IqCtx {
                prekey_count: 0,
                contacts: None,
            },
        );
        assert!(a.effects.went_active);
    }
}

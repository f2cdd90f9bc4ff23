//! Reading binary nodes the client sent.

use wacore_binary::node::{Node, NodeContent};

pub(crate) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub(crate) fn content_bytes(node: &Node) -> Option<&[u8]> {
    match node.content.as_ref()? {
        NodeContent::Bytes(b) => Some(b),
        NodeContent::String(s) => Some(s.as_bytes()),
        NodeContent::Nodes(_) => None,
    }
}

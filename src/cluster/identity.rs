//! Who this node is: its `--node-id` and the address the other nodes reach it at.

use std::net::SocketAddr;

use crate::config::ClusterArgs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    /// `http(s)://host:port`, no trailing slash.
    pub advertise_url: String,
}

impl NodeIdentity {
    /// The flags' values, or the defaults: the host name and the port actually bound (a
    /// `--listen` on port 0 gets its port from the system), so a node keeps its id across
    /// restarts on the same address.
    pub fn resolve(args: &ClusterArgs, bound: SocketAddr) -> Self {
        let host = host_name();
        let node_id = args
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{host}:{}", bound.port()));
        let advertise_url = args.advertise_url.clone().unwrap_or_else(|| {
            // A node listening on every address is reached by its name; one on a single
            // address, by that address.
            let shown = if bound.ip().is_unspecified() {
                host
            } else if bound.is_ipv6() {
                format!("[{}]", bound.ip())
            } else {
                bound.ip().to_string()
            };
            format!("http://{shown}:{}", bound.port())
        });
        Self {
            node_id,
            advertise_url,
        }
    }
}

/// The machine's host name; `localhost` when the system will not say.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => "localhost".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_host_and_the_bound_port() {
        let args = ClusterArgs::default();
        let me = NodeIdentity::resolve(&args, "127.0.0.1:5123".parse().unwrap());
        assert_eq!(me.node_id, format!("{}:5123", host_name()));
        assert_eq!(me.advertise_url, "http://127.0.0.1:5123");
        let any = NodeIdentity::resolve(&args, "0.0.0.0:80".parse().unwrap());
        assert_eq!(any.advertise_url, format!("http://{}:80", host_name()));
        let given = ClusterArgs {
            node_id: Some("a".into()),
            advertise_url: Some("https://a.internal:8443".into()),
            ..ClusterArgs::default()
        };
        let me = NodeIdentity::resolve(&given, "0.0.0.0:80".parse().unwrap());
        assert_eq!(me.node_id, "a");
        assert_eq!(me.advertise_url, "https://a.internal:8443");
    }
}

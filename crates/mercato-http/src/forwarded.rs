//! The client's address behind proxies. A forwarding header is believed only
//! as far as it was written by proxies this instance was told to trust:
//! anyone can send `X-Forwarded-For: 1.2.3.4`, so reading it from an
//! untrusted peer would let a client pick the address its login throttle and
//! rate limits key on.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Which header the trusted proxies append to. Only one is read: a client
/// could add the other one itself, and a proxy that does not know it would
/// pass it on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (HAProxy's `option forwarded`).
    Forwarded,
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    /// Shared: the edge hands a copy to every request.
    nets: std::sync::Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// From `http.trusted_proxies` (addresses or CIDR blocks) and
    /// `http.forwarded_header` (`x-forwarded-for` or `forwarded`).
    pub fn parse(proxies: &[String], header: &str) -> Result<TrustedProxies, String> {
        let header = match header.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            other => {
                return Err(format!("http.forwarded_header: '{other}' is neither 'x-forwarded-for' nor 'forwarded'"));
            }
        };
        let nets = proxies
            .iter()
            .map(|p| {
                let p = p.trim();
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("http.trusted_proxies: '{p}' is neither an address nor a CIDR block"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets: nets.into(), header })
    }

    /// True when no forwarding header is ever read (no proxy configured).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client a request came from: the peer itself unless the peer is a
    /// trusted proxy; then the header's hops are walked from the right (each
    /// proxy appends the address it saw) past every trusted proxy, and the
    /// first untrusted hop is the client. A hop that is not an address
    /// ("unknown", an obfuscated RFC 7239 name) stops the walk at the last
    /// proxy known, which is the safe choice for a limit keyed on it.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if self.nets.is_empty() || !self.trusts(client) {
            return client;
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order (RFC 9110, 5.3).
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        let hops: Vec<&str> = values.iter().flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev() {
            let parsed = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(hop),
                ForwardedHeader::Forwarded => forwarded_for(hop).and_then(parse_node),
            };
            match parsed {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// The `for=` parameter of one RFC 7239 element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    node.rsplit_once(':').and_then(|(ip, port)| port.parse::<u16>().ok().and_then(|_| ip.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()], "x-forwarded-for").unwrap();
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(t.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // No proxies configured: the header is never read.
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()], "x-forwarded-for").unwrap();
        // The client forged the first entry; nginx appended what it saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Through two trusted proxies, with a port, over two header lines.
        let h = headers(&[("x-forwarded-for", "198.51.100.7:5555"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Every hop trusted: the leftmost is as far as anyone can tell.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // A hop that is no address stops at the last proxy known.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // A trusted peer that sent no header is itself the client.
        assert_eq!(t.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn rfc_7239_forwarded_is_read_only_when_configured() {
        let t = TrustedProxies::parse(&["::1".into(), "127.0.0.0/8".into()], "forwarded").unwrap();
        let h = headers(&[
            ("forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.2"#),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(t.client(ip("::1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=_hidden, for=127.0.0.2")]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("127.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let t = TrustedProxies::parse(&["127.0.0.1/32".into()], "x-forwarded-for").unwrap();
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(t.client(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/33".into()], "x-forwarded-for").unwrap_err();
        assert!(e.contains("http.trusted_proxies"), "{e}");
        let e = TrustedProxies::parse(&[], "x-real-ip").unwrap_err();
        assert!(e.contains("http.forwarded_header"), "{e}");
    }
}

//! `[pitr] allowed_destinations` rules: which existing instances (host:port) a PITR may
//! restore into. A rule is `HOST:PORT` with HOST an IP address, an IP network
//! (`10.0.0.0/8`, `[fd00::]/8` for IPv6 in brackets) or a host name (matched as written,
//! case-insensitive, never resolved), and PORT a number or `*`. A URL's host matches a
//! network only when it is an IP literal. The check of a request against them is
//! `replay::pitr::allow`.

use std::net::IpAddr;

/// One `allowed_destinations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRule {
    host: HostRule,
    /// `None` = any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Net { addr: IpAddr, prefix: u8 },
    Name(String),
}

impl std::str::FromStr for DestinationRule {
    type Err = String;
    /// `HOST:PORT`, see the module doc.
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    fn from_str(text: &str) -> Result<DestinationRule, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT (PORT may be *)"))?;
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("{text:?}: port {p:?} is not a number or *"))?,
            ),
        };
        let (addr, prefix) = match host.split_once('/') {
            Some((a, p)) => (
                a,
                Some(
                    p.parse::<u8>()
                        .map_err(|_| format!("{text:?}: prefix {p:?} is not a number"))?,
                ),
            ),
            None => (host, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let host = match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = prefix.unwrap_or(max);
                if prefix > max {
                    return Err(format!("{text:?}: prefix /{prefix} is longer than {max}"));
                }
                HostRule::Net { addr: ip, prefix }
            }
            Err(_) if prefix.is_some() => {
                return Err(format!("{text:?}: a network needs an IP address"))
            }
            Err(_) if addr.is_empty() || addr.contains(char::is_whitespace) => {
                return Err(format!("{text:?}: no host"))
            }
            Err(_) => HostRule::Name(addr.to_ascii_lowercase()),
        };
        Ok(DestinationRule { host, port })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl DestinationRule {
    /// Whether `host:port` is allowed by this rule.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host.parse::<IpAddr>()) {
            (HostRule::Net { addr, prefix }, Ok(ip)) => in_net(ip, *addr, *prefix),
            (HostRule::Name(n), Err(_)) => n.eq_ignore_ascii_case(host),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_hosts_networks_and_ports() {
        let r = |s: &str| s.parse::<DestinationRule>().unwrap();
        assert!(r("127.0.0.1:3306").allows("127.0.0.1", 3306));
        assert!(!r("127.0.0.1:3306").allows("127.0.0.1", 3307));
        assert!(r("10.0.0.0/8:3306").allows("10.20.30.40", 3306));
        assert!(!r("10.0.0.0/8:3306").allows("11.0.0.1", 3306));
        assert!(r("0.0.0.0/0:*").allows("192.168.1.1", 1));
        assert!(r("[fd00::]/8:*").allows("fd12::1", 3306));
        assert!(!r("[fd00::]/8:*").allows("fe80::1", 3306));
        assert!(r("db.example.com:3306").allows("DB.example.com", 3306));
        assert!(!r("db.example.com:3306").allows("db.example.com.evil", 3306));
        assert!(!r("10.0.0.0/8:3306").allows("ten.example.com", 3306));
        for bad in [
            "127.0.0.1",
            "127.0.0.1:x",
            "10.0.0.0/33:1",
            "name/8:1",
            ":1",
        ] {
            assert!(bad.parse::<DestinationRule>().is_err(), "{bad}");
        }
    }
}

//! IP addresses and CIDR blocks of `destinationSubnets` in TCP and TLS match blocks.

use std::net::IpAddr;

/// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `192.168.1.7`).
///
/// ```
/// use mesh_routing::Subnet;
/// let s: Subnet = "10.1.0.0/16".parse().unwrap();
/// assert!(s.contains("10.1.2.3".parse().unwrap()));
/// assert!(!s.contains("10.2.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<Subnet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    prefix_len: u8,
}

impl std::str::FromStr for Subnet {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or CIDR block")?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(len) => (len.parse::<u8>().ok())
                .filter(|l| *l <= max)
                .ok_or("invalid prefix length")?,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl Subnet {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i)),
            _ => return false,
        };
        let len = u32::from(self.prefix_len);
        len == 0 || (net ^ ip) >> (128 - len) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses_only() {
        let s = |t: &str| t.parse::<Subnet>().unwrap();
        assert!(s("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(s("192.168.1.7").contains("192.168.1.7".parse().unwrap()));
        assert!(!s("192.168.1.7").contains("192.168.1.8".parse().unwrap()));
        assert!(s("10.0.0.0/8").contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(s("2001:db8::/32").contains("2001:db8:1::1".parse().unwrap()));
        assert!(!s("2001:db8::/32").contains("10.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/", "10.0.0/8", "::/129", "x"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }
}

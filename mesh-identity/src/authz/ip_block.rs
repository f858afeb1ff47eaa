//! IP addresses and CIDR ranges of `ipBlocks`, `remoteIpBlocks` and `source.ip`.

use std::net::IpAddr;

/// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `192.168.1.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpBlock {
    network: IpAddr,
    prefix_len: u8,
}

impl IpBlock {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // Compare IPv4-mapped IPv6 peers as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix_len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix_len)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(len));
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_containment() {
        let table = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "2001:db8::1", false),
        ];
        for (block, addr, want) in table {
            assert_eq!(
                IpBlock::parse(block).unwrap().contains(ip(addr)),
                want,
                "{block} {addr}"
            );
        }
    }

    #[test]
    fn bad_blocks_are_rejected() {
        for s in ["10.0.0.0/33", "10.0.0/8", "host", "::/129", "1.2.3.4/x"] {
            assert!(IpBlock::parse(s).is_err(), "{s}");
        }
    }
}

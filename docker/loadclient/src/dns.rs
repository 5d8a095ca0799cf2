//! A minimal DNS A-record client (RFC 1035): one question over UDP, every A record of the
//! answer. The load client resolves its target for every connection, the way a client of a
//! Swarm `--endpoint-mode dnsrr` service or a headless Service does; libc's resolver is not used,
//! so a static glibc build (no NSS modules in a FROM-scratch image) resolves the same as musl.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

#[derive(Debug, PartialEq)]
pub enum Error {
    /// The name cannot be put into a query (empty label, label over 63 bytes, name over 253).
    BadName(String),
    /// The server answered with a non-zero RCODE (3 = NXDOMAIN: no such name, no tasks).
    Rcode(u8),
    /// The answer holds no A record.
    NoAddress,
    /// The answer could not be parsed.
    Malformed(&'static str),
    /// Sending or receiving failed, or no answer came in time.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadName(n) => write!(f, "bad name {n:?}"),
            Error::Rcode(3) => write!(f, "no such name (NXDOMAIN)"),
            Error::Rcode(c) => write!(f, "server answered rcode {c}"),
            Error::NoAddress => write!(f, "no A record in the answer"),
            Error::Malformed(why) => write!(f, "malformed answer: {why}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The first `nameserver` of a resolv.conf text.
pub fn nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The query packet for NAME's A records, with transaction ID `id`.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, Error> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(Error::BadName(name.to_string()));
    }
    // Header: ID, flags (RD), QDCOUNT 1, ANCOUNT/NSCOUNT/ARCOUNT 0.
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Error::BadName(name.to_string()));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_A.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(packet)
}

/// The A records of an answer to the query with transaction ID `id`.
pub fn parse(id: u16, packet: &[u8]) -> Result<Vec<Ipv4Addr>, Error> {
    let mut r = Reader { packet, at: 0 };
    if r.u16()? != id {
        return Err(Error::Malformed("transaction ID differs"));
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(Error::Malformed("not a response"));
    }
    let rcode = (flags & 0x000f) as u8;
    if rcode != 0 {
        return Err(Error::Rcode(rcode));
    }
    let (questions, answers) = (r.u16()?, r.u16()?);
    r.skip(4)?; // NSCOUNT, ARCOUNT
    for _ in 0..questions {
        r.name()?;
        r.skip(4)?; // QTYPE, QCLASS
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        r.skip(4)?; // TTL
        let len = usize::from(r.u16()?);
        let data = r.take(len)?;
        // CNAMEs come before the A records they lead to; only the addresses matter here.
        if rtype == TYPE_A && class == CLASS_IN && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
    }
    if addrs.is_empty() {
        return Err(Error::NoAddress);
    }
    Ok(addrs)
}

struct Reader<'a> {
    packet: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.packet.len());
        let end = end.ok_or(Error::Malformed("truncated"))?;
        let bytes = &self.packet[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), Error> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Skips a name: labels ending in a zero byte, or in a compression pointer (two bytes whose
    /// top bits are 11), which ends the name in place.
    fn name(&mut self) -> Result<(), Error> {
        loop {
            let len = self.take(1)?[0];
            match len {
                0 => return Ok(()),
                l if l & 0xc0 == 0xc0 => return self.skip(1),
                l if l & 0xc0 != 0 => return Err(Error::Malformed("reserved label type")),
                l => self.skip(usize::from(l))?,
            }
        }
    }
}

/// Asks `server` for NAME's A records: two tries of `timeout` each.
pub fn resolve(
    server: SocketAddr,
    name: &str,
    id: u16,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, Error> {
    let packet = query(id, name)?;
    let io = |e: io::Error| Error::Io(format!("DNS server {server}: {e}"));
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let sock = UdpSocket::bind(bind).map_err(io)?;
    sock.connect(server).map_err(io)?;
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut buf = [0u8; 1500];
    let mut last = Error::Io(format!("DNS server {server}: no answer"));
    for _ in 0..2 {
        sock.send(&packet).map_err(io)?;
        // Answers to an earlier try (a different packet, same ID) are as good.
        match sock.recv(&mut buf) {
            Ok(n) => match parse(id, &buf[..n]) {
                Err(Error::Malformed("transaction ID differs")) => continue,
                answer => return answer,
            },
            Err(e) => last = io(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query(id, name)` with one CNAME (compressed) and the given A records.
    pub fn answer(id: u16, name: &str, addrs: &[Ipv4Addr], rcode: u8) -> Vec<u8> {
        let mut p = query(id, name).unwrap();
        p[2] = 0x81;
        p[3] = 0x80 | rcode;
        let count = 1 + addrs.len() as u16;
        p[6..8].copy_from_slice(&count.to_be_bytes());
        // CNAME record: owner is a pointer to the question's name (offset 12), rdata "x" + ptr.
        p.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 12]);
        for a in addrs {
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            p.extend_from_slice(&a.octets());
        }
        p
    }

    #[test]
    fn query_encodes_labels() {
        let q = query(0x1234, "web.local.").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x03web\x05local\x00\x00\x01\x00\x01");
    }

    #[test]
    fn query_refuses_bad_names() {
        for bad in ["", ".", "a..b", &"x".repeat(64), &["a"; 130].join(".")] {
            assert!(matches!(query(1, bad), Err(Error::BadName(_))), "{bad:?}");
        }
    }

    #[test]
    fn parse_returns_every_a_record_past_a_cname() {
        let addrs = [Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(10, 0, 1, 4)];
        assert_eq!(parse(7, &answer(7, "web", &addrs, 0)), Ok(addrs.to_vec()));
    }

    #[test]
    fn parse_failures() {
        let a = [Ipv4Addr::LOCALHOST];
        assert_eq!(parse(7, &answer(7, "web", &[], 3)), Err(Error::Rcode(3)));
        assert_eq!(parse(7, &answer(7, "web", &[], 0)), Err(Error::NoAddress));
        assert!(matches!(
            parse(8, &answer(7, "web", &a, 0)),
            Err(Error::Malformed(_))
        ));
        let full = answer(7, "web", &a, 0);
        // Every truncation is refused, none panics.
        for n in 0..full.len() {
            assert!(parse(7, &full[..n]).is_err(), "truncated at {n}");
        }
        let question = query(7, "web").unwrap();
        assert_eq!(parse(7, &question), Err(Error::Malformed("not a response")));
    }

    #[test]
    fn nameserver_is_the_first_one() {
        let conf =
            "# docker\nsearch x\nnameserver 127.0.0.11\nnameserver 8.8.8.8\noptions ndots:0\n";
        assert_eq!(nameserver(conf), Some("127.0.0.11:53".parse().unwrap()));
        assert_eq!(nameserver("search x\n"), None);
        assert_eq!(nameserver("nameserver bogus\n"), None);
    }

    #[test]
    fn resolve_against_a_local_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            assert_eq!(&buf[12..n - 4], b"\x03web\x00");
            let reply = answer(id, "web", &[Ipv4Addr::new(10, 9, 8, 7)], 0);
            server.send_to(&reply, from).unwrap();
        });
        let got = resolve(addr, "web", 42, Duration::from_secs(5));
        t.join().unwrap();
        assert_eq!(got, Ok(vec![Ipv4Addr::new(10, 9, 8, 7)]));
    }

    #[test]
    fn resolve_times_out_without_a_server() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = resolve(
            silent.local_addr().unwrap(),
            "web",
            1,
            Duration::from_millis(50),
        );
        assert!(matches!(got, Err(Error::Io(_))), "{got:?}");
    }
}

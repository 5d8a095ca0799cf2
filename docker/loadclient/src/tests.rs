use super::*;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn args_defaults_and_values() {
    let a = parse_args(&argv("--target web:8080 --seconds 3")).unwrap();
    assert_eq!((a.host.as_str(), a.port, a.clients), ("web", 8080, 4));
    assert_eq!(a.seconds, Some(3));
    let a = parse_args(&argv(
        "--target [::1]:80 --stop-file /tmp/s --clients 9 --nameserver 10.0.0.2",
    ))
    .unwrap();
    assert_eq!((a.host.as_str(), a.clients), ("::1", 9));
    assert_eq!(a.nameserver, Some("10.0.0.2:53".parse().unwrap()));
}

#[test]
fn args_errors() {
    for bad in [
        "",
        "--seconds 3",
        "--target web --seconds 3",
        "--target web:x --seconds 3",
        "--target web:80",
        "--target web:80 --seconds",
        "--target web:80 --seconds x",
        "--target web:80 --seconds 1 --bogus 1",
        "--target web:80 --seconds 1 --nameserver nope",
    ] {
        assert!(parse_args(&argv(bad)).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn generation_of_a_reply() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\npid=7 gen=12 path=/load\n";
    assert_eq!(answered_generation(ok), Some(12));
    assert_eq!(answered_generation(&ok.replace("200 OK", "503 Busy")), None);
    assert_eq!(answered_generation("HTTP/1.1 200 OK\r\n\r\nhello"), None);
    assert_eq!(answered_generation("HTTP/1.1 200 OK\r\nX: 1"), None);
    assert_eq!(answered_generation(""), None);
}

/// An HTTP server on `addr` answering every connection with `gen=GEN`, until the process ends.
fn serve(listener: TcpListener, generation: u64) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = format!("pid=1 gen={generation} path=/load\n");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// A DNS server answering every query with `addrs` (NXDOMAIN when empty).
fn dns_server(addrs: Vec<Ipv4Addr>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x81;
            reply[3] = if addrs.is_empty() { 0x83 } else { 0x80 };
            reply[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
            for a in &addrs {
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
                reply.extend_from_slice(&a.octets());
            }
            let _ = sock.send_to(&reply, from);
        }
    });
    addr
}

fn load(target: &str, ns: Option<SocketAddr>) -> Counts {
    let mut args = parse_args(&argv(&format!(
        "--target {target} --seconds 1 --clients 2 --delay 0 --timeout 2000"
    )))
    .unwrap();
    args.nameserver = ns;
    run(args).unwrap()
}

#[test]
fn every_resolved_address_gets_connections() {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = first.local_addr().unwrap().port();
    let second = TcpListener::bind(("127.0.0.2", port)).unwrap();
    serve(first, 1);
    serve(second, 2);
    let ns = dns_server(vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::LOCALHOST]);
    let counts = load(&format!("web:{port}"), Some(ns));
    let (requests, failed, addresses, gens) = counts.snapshot();
    assert!(requests >= 4, "{}", counts.summary());
    assert_eq!(
        (failed, addresses, gens),
        (0, 2, Some((1, 2))),
        "{}",
        counts.summary()
    );
}

#[test]
fn refused_connections_and_missing_names_count_as_failed() {
    // A port nobody listens on: bind, learn it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let counts = load(&format!("127.0.0.1:{port}"), None);
    let (requests, failed, addresses, _) = counts.snapshot();
    assert!(
        requests >= 2 && failed == requests && addresses == 0,
        "{}",
        counts.summary()
    );

    let ns = dns_server(vec![]);
    let counts = load("gone:80", Some(ns));
    let (requests, failed, _, gens) = counts.snapshot();
    assert!(
        requests >= 2 && failed == requests && gens.is_none(),
        "{}",
        counts.summary()
    );
    assert_eq!(counts.status(), format!("{requests} {failed} 0 0\n"));
}

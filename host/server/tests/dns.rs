//! The plugins' resolver (`wasmail::dns::SystemResolver`) against a small authoritative
//! responder on 127.0.0.1 (UDP and TCP on one port), written here with hickory-proto's message
//! codec: answers, NXDOMAIN and NoData, server failures, truncation to TCP, the bounds on
//! answers, and a server that never answers. Nothing here needs the internet.
//!
//! No test guest imports `dns` (plugins/guests/test), so there is no test through a plugin.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use wasmail::config::{Config, ConfigError, DnsConfig, TimeSpan};
use wasmail::dns::{MAX_RECORDS, MAX_STRING, SystemResolver};
use wasmail_plugin::{DnsFailure, Resolver};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TIMEOUT: Duration = Duration::from_secs(2);

/// A lookup's answer, its failure made an error `?` can return.
fn dns<T>(result: Result<T, DnsFailure>) -> Result<T, String> {
    result.map_err(|failure| format!("lookup failed: {failure:?}"))
}

// ---------------------------------------------------------------------------------------------
// The responder

/// The zone `test.`, by name and type. Names are compared in lower case without the final dot.
fn zone(name: &str, record_type: RecordType) -> Result<Vec<RData>, ResponseCode> {
    let n = |text: &str| Name::from_ascii(text).expect("test name");
    let known = [
        "txt.test",
        "host.test",
        "v4only.test",
        "alias.test",
        "mail.test",
        "many.test",
        "long.test",
        "servfail.test",
        "1.2.0.192.in-addr.arpa",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    ];
    if !known.contains(&name) {
        return Err(ResponseCode::NXDomain);
    }
    let data = match (name, record_type) {
        ("servfail.test", _) => return Err(ResponseCode::ServFail),
        ("txt.test", RecordType::TXT) => vec![
            // Two character-strings in one record: a plugin sees them joined.
            RData::TXT(TXT::new(vec!["v=spf1 ".to_owned(), "-all".to_owned()])),
            RData::TXT(TXT::new(vec!["second record".to_owned()])),
        ],
        ("host.test", RecordType::A) => vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))],
        ("host.test", RecordType::AAAA) => {
            vec![RData::AAAA(AAAA(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            )))]
        }
        ("v4only.test", RecordType::A) => vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 4)))],
        ("alias.test", _) => vec![RData::CNAME(CNAME(n("host.test.")))],
        ("mail.test", RecordType::MX) => vec![
            RData::MX(MX::new(10, n("mx1.test."))),
            RData::MX(MX::new(20, n("mx2.test."))),
        ],
        ("many.test", RecordType::A) => (0..100u8)
            .map(|i| RData::A(A(Ipv4Addr::new(198, 51, 100, i))))
            .collect(),
        ("long.test", RecordType::TXT) => {
            // 5100 octets in 255-octet character-strings: past MAX_STRING, and too big for UDP.
            let chunk = "x".repeat(255);
            vec![RData::TXT(TXT::new(vec![chunk; 20]))]
        }
        ("1.2.0.192.in-addr.arpa", RecordType::PTR) => vec![RData::PTR(PTR(n("host.test.")))],
        (ip6, RecordType::PTR) if ip6.ends_with("ip6.arpa") => {
            vec![RData::PTR(PTR(n("host6.test.")))]
        }
        _ => Vec::new(), // NoData
    };
    Ok(data)
}

/// The response to one query message.
fn respond(query: &Message) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.add_queries(query.queries.iter().cloned());
    if let Some(edns) = &query.edns {
        response.set_edns(edns.clone());
    }
    let Some(question) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let name = question.name().to_ascii().to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    match zone(name, question.query_type()) {
        Ok(data) => {
            let owner = question.name().clone();
            for rdata in data {
                response.add_answer(Record::from_rdata(owner.clone(), 60, rdata.clone()));
                // Follow the CNAME inside the zone, as an authoritative server does.
                if let RData::CNAME(CNAME(target)) = &rdata {
                    let target_text = target.to_ascii().to_ascii_lowercase();
                    if let Ok(more) = zone(target_text.trim_end_matches('.'), question.query_type())
                    {
                        for data in more {
                            response.add_answer(Record::from_rdata(target.clone(), 60, data));
                        }
                    }
                }
            }
            if response.answers.is_empty() {
                response.add_authority(soa());
            }
        }
        Err(code) => {
            response.metadata.response_code = code;
            if code == ResponseCode::NXDomain {
                response.add_authority(soa());
            }
        }
    }
    response
}

fn soa() -> Record {
    let n = |text: &str| Name::from_ascii(text).expect("test name");
    Record::from_rdata(
        n("test."),
        60,
        RData::SOA(SOA::new(
            n("ns.test."),
            n("hostmaster.test."),
            1,
            60,
            60,
            60,
            60,
        )),
    )
}

/// A responder on 127.0.0.1: UDP and TCP on the same port, each query answered from [`zone`].
/// UDP answers larger than the client's payload size are sent truncated, so the client asks
/// again over TCP. Counts the queries it sees per transport.
struct Responder {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
}

impl Responder {
    fn start() -> Responder {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("local addr");
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let count = udp_queries.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                let Ok(query) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let response = respond(&query);
                let mut bytes = response.to_vec().expect("encode");
                if bytes.len() > usize::from(query.max_payload().max(512)) {
                    bytes = response.truncate().to_vec().expect("encode");
                }
                let _ = udp.send_to(&bytes, peer);
            }
        });
        let count = tcp_queries.clone();
        thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                thread::spawn(move || serve_tcp(stream, &count));
            }
        });
        Responder {
            addr,
            udp_queries,
            tcp_queries,
        }
    }

    fn resolver(&self) -> SystemResolver {
        SystemResolver::with_servers(&[self.addr], TIMEOUT).expect("resolver")
    }
}

fn serve_tcp(mut stream: TcpStream, count: &AtomicUsize) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut buffer).is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&buffer) else {
            return;
        };
        count.fetch_add(1, Ordering::SeqCst);
        let bytes = respond(&query).to_vec().expect("encode");
        let len = u16::try_from(bytes.len()).expect("fits").to_be_bytes();
        if stream.write_all(&len).is_err() || stream.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = udp.local_addr().expect("local addr");
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

// ---------------------------------------------------------------------------------------------
// Answers

#[test]
fn txt_records_are_joined_per_record() -> TestResult {
    let responder = Responder::start();
    let resolver = responder.resolver();
    let mut txt = dns(resolver.txt("txt.test"))?;
    txt.sort();
    assert_eq!(txt, ["second record", "v=spf1 -all"]);
    Ok(())
}

#[test]
fn ip_returns_a_and_aaaa() -> TestResult {
    let responder = Responder::start();
    let resolver = responder.resolver();
    assert_eq!(dns(resolver.ip("host.test"))?, ["192.0.2.1", "2001:db8::1"]);
    // A name with only an A record: the missing AAAA is no failure.
    assert_eq!(dns(resolver.ip("v4only.test."))?, ["192.0.2.4"]);
    // Through a CNAME: only the addresses reach the plugin.
    assert_eq!(
        dns(resolver.ip("alias.test"))?,
        ["192.0.2.1", "2001:db8::1"]
    );
    Ok(())
}

#[test]
fn mx_returns_preference_and_exchange_without_the_final_dot() -> TestResult {
    let responder = Responder::start();
    let resolver = responder.resolver();
    let mut mx = dns(resolver.mx("MAIL.test"))?;
    mx.sort();
    assert_eq!(
        mx,
        [(10, "mx1.test".to_owned()), (20, "mx2.test".to_owned())]
    );
    Ok(())
}

#[test]
fn ptr_takes_an_address_of_either_family() -> TestResult {
    let responder = Responder::start();
    let resolver = responder.resolver();
    assert_eq!(dns(resolver.ptr("192.0.2.1"))?, ["host.test"]);
    assert_eq!(dns(resolver.ptr("2001:db8::1"))?, ["host6.test"]);
    assert_eq!(resolver.ptr("192.0.2.99"), Err(DnsFailure::NotFound));
    assert!(matches!(
        resolver.ptr("not an address"),
        Err(DnsFailure::Failure(text)) if text.contains("not an IP address")
    ));
    Ok(())
}

#[test]
fn nxdomain_and_nodata_are_not_found() {
    let responder = Responder::start();
    let resolver = responder.resolver();
    assert_eq!(resolver.txt("nowhere.test"), Err(DnsFailure::NotFound));
    assert_eq!(resolver.ip("nowhere.test"), Err(DnsFailure::NotFound));
    assert_eq!(resolver.mx("nowhere.test"), Err(DnsFailure::NotFound));
    // The name exists, but has no record of the type asked for.
    assert_eq!(resolver.txt("host.test"), Err(DnsFailure::NotFound));
    assert_eq!(resolver.mx("host.test"), Err(DnsFailure::NotFound));
}

#[test]
fn a_server_failure_and_a_bad_name_are_failures() {
    let responder = Responder::start();
    let resolver = responder.resolver();
    assert!(matches!(
        resolver.txt("servfail.test"),
        Err(DnsFailure::Failure(_))
    ));
    assert!(matches!(resolver.txt(""), Err(DnsFailure::Failure(_))));
    let label = "a".repeat(64);
    assert!(matches!(
        resolver.txt(&format!("{label}.test")),
        Err(DnsFailure::Failure(_))
    ));
}

#[test]
fn answers_are_bounded() -> TestResult {
    let responder = Responder::start();
    let resolver = responder.resolver();
    let many = dns(resolver.ip("many.test"))?;
    assert_eq!(many.len(), MAX_RECORDS);
    assert!(many.iter().all(|ip| ip.starts_with("198.51.100.")));

    // 5100 octets of TXT: truncated over UDP, fetched over TCP, cut to MAX_STRING.
    let long = dns(resolver.txt("long.test"))?;
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].len(), MAX_STRING);
    assert!(long[0].bytes().all(|b| b == b'x'));
    assert!(responder.tcp_queries.load(Ordering::SeqCst) >= 1);
    assert!(responder.udp_queries.load(Ordering::SeqCst) >= 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Where it is called from, and when nobody answers

#[test]
fn a_server_that_never_answers_is_a_failure_within_the_timeout() -> TestResult {
    // Bound, so the queries are neither refused nor answered: they vanish.
    let silent = UdpSocket::bind("127.0.0.1:0")?;
    let timeout = Duration::from_millis(300);
    let resolver = SystemResolver::with_servers(&[silent.local_addr()?], timeout)?;
    for lookup in [
        Box::new(|| resolver.txt("slow.test").map(drop)) as Box<dyn Fn() -> _>,
        Box::new(|| resolver.ip("slow.test").map(drop)),
        Box::new(|| resolver.mx("slow.test").map(drop)),
        Box::new(|| resolver.ptr("192.0.2.1").map(drop)),
    ] {
        let started = Instant::now();
        let result = lookup();
        let took = started.elapsed();
        assert!(matches!(result, Err(DnsFailure::Failure(_))), "{result:?}");
        assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
        assert!(took < timeout + Duration::from_millis(1500), "{took:?}");
    }
    Ok(())
}

#[test]
fn works_from_blocking_threads_of_a_runtime_and_from_plain_threads() -> TestResult {
    let responder = Responder::start();
    let resolver = Arc::new(responder.resolver());

    // As the plugin host calls it: spawn_blocking on the server's multi-thread runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let answers = runtime.block_on({
        let resolver = resolver.clone();
        async move {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let resolver = resolver.clone();
                tasks.push(tokio::task::spawn_blocking(move || {
                    resolver.ip("host.test")
                }));
            }
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await);
            }
            answers
        }
    });
    for answer in answers {
        assert_eq!(dns(answer?)?, ["192.0.2.1", "2001:db8::1"]);
    }
    // A current-thread runtime too: the lookup runs on the resolver's own thread, so blocking
    // here does not starve it.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mx = current.block_on({
        let resolver = resolver.clone();
        async move { tokio::task::spawn_blocking(move || resolver.mx("mail.test")).await }
    })?;
    assert_eq!(dns(mx)?.len(), 2);

    // Plain threads, no runtime anywhere, at once; then the runtimes are gone and it still works.
    drop(runtime);
    drop(current);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let resolver = resolver.clone();
            thread::spawn(move || resolver.ptr("192.0.2.1"))
        })
        .collect();
    for thread in threads {
        let answer = thread.join().map_err(|_| "lookup thread panicked")?;
        assert_eq!(dns(answer)?, ["host.test"]);
    }
    Ok(())
}

#[test]
fn the_resolver_comes_from_config() -> TestResult {
    let responder = Responder::start();
    let config = Config::parse(
        &format!(
            "[dns]\nservers = [\"{}\"]\ntimeout = \"1500ms\"\n",
            responder.addr
        ),
        None,
    )?;
    assert_eq!(config.dns.servers, [responder.addr]);
    assert_eq!(config.dns.timeout, TimeSpan::from_millis(1500));
    let resolver = SystemResolver::from_config(&config.dns)?;
    assert_eq!(resolver.timeout(), Duration::from_millis(1500));
    assert_eq!(dns(resolver.ip("v4only.test"))?, ["192.0.2.4"]);
    Ok(())
}

#[test]
fn dns_config_defaults_and_validation() -> TestResult {
    assert_eq!(Config::default().dns, DnsConfig::default());
    assert!(Config::default().dns.servers.is_empty());
    assert_eq!(Config::default().dns.timeout, TimeSpan::from_secs(2));

    // A bare address means port 53.
    let config = Config::parse(
        "[dns]\nservers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\n",
        None,
    )?;
    assert_eq!(
        config.dns.servers,
        [
            "192.0.2.53:53".parse::<SocketAddr>()?,
            "[2001:db8::53]:5353".parse()?
        ]
    );

    match Config::parse(
        "[dns]\ntimeout = \"0s\"\nservers = [\"192.0.2.53:0\"]\n",
        None,
    ) {
        Err(ConfigError::Invalid { findings, .. }) => {
            let keys: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
            assert_eq!(keys, ["dns.servers[0]", "dns.timeout"]);
        }
        other => panic!("expected findings, got {other:?}"),
    }
    assert!(matches!(
        Config::parse("[dns]\nservers = [\"ns.example.org\"]\n", None),
        Err(ConfigError::Parse(_))
    ));
    assert!(matches!(
        Config::parse("[dns]\nretries = 3\n", None),
        Err(ConfigError::Parse(_))
    ));
    Ok(())
}

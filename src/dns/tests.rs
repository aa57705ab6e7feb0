use super::query::{Lookup, Progress};
use super::*;
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, RCODE, TYPE};

fn reply(id: u16, name: &str, t: TYPE, rcode: RCODE, ips: &[IpAddr]) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    p.set_flags(PacketFlag::RESPONSE);
    *p.rcode_mut() = rcode;
    let n = Name::new_unchecked(name);
    p.questions
        .push(Question::new(n.clone(), t.into(), CLASS::IN.into(), false));
    for ip in ips {
        let rdata = match ip {
            IpAddr::V4(a) => RData::A(A {
                address: (*a).into(),
            }),
            IpAddr::V6(a) => RData::AAAA(AAAA {
                address: (*a).into(),
            }),
        };
        p.answers
            .push(ResourceRecord::new(n.clone(), CLASS::IN, 30, rdata));
    }
    p.build_bytes_vec().unwrap()
}

/// A lookup sent to a socket that never answers: the tests feed it answers.
fn lookup(ipv6: bool) -> Lookup {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let addr = silent.local_addr().unwrap();
    Lookup::start(addr, 0, "App.Test.", ipv6, deadline).unwrap()
}

fn ids(l: &Lookup) -> Vec<(u16, TYPE)> {
    l.pending_queries()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn answers_are_matched_by_id_name_and_type() {
    let mut l = lookup(true);
    let q = ids(&l);
    let (a, aaaa) = (q[0].0, q[1].0);
    let v4 = [ip("10.0.0.1"), ip("10.0.0.2")];
    // Wrong id, wrong name, wrong type, garbage, a query instead of a response: ignored.
    assert_eq!(
        l.answer(&reply(
            a.wrapping_add(1),
            "app.test",
            TYPE::A,
            RCODE::NoError,
            &v4
        )),
        None
    );
    assert_eq!(
        l.answer(&reply(a, "evil.test", TYPE::A, RCODE::NoError, &v4)),
        None
    );
    assert_eq!(
        l.answer(&reply(a, "app.test", TYPE::MX, RCODE::NoError, &v4)),
        None
    );
    assert_eq!(l.answer(b"\x00\x01garbage"), None);
    assert_eq!(l.answer(&[]), None);
    // The name is compared without case; both answers make the result.
    assert_eq!(
        l.answer(&reply(a, "APP.test", TYPE::A, RCODE::NoError, &v4)),
        None
    );
    let p = l.answer(&reply(
        aaaa,
        "app.test",
        TYPE::AAAA,
        RCODE::NoError,
        &[ip("2001:db8::1")],
    ));
    assert_eq!(
        p,
        Some(Progress::Answer(vec![
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("2001:db8::1")
        ]))
    );
}

#[test]
fn a_truncated_answer_is_asked_again_and_the_query_stays_pending() {
    let mut l = lookup(false);
    let a = ids(&l)[0].0;
    let bytes = reply(a, "app.test", TYPE::A, RCODE::NoError, &[]);
    let mut tc = Packet::parse(&bytes).unwrap();
    tc.set_flags(PacketFlag::TRUNCATION);
    assert_eq!(
        l.answer(&tc.build_bytes_vec().unwrap()),
        Some(Progress::Pending)
    );
    assert_eq!(ids(&l).len(), 1, "still waiting for the full answer");
    let full = reply(a, "app.test", TYPE::A, RCODE::NoError, &[ip("10.0.0.7")]);
    assert_eq!(
        l.answer(&full),
        Some(Progress::Answer(vec![ip("10.0.0.7")]))
    );
}

#[test]
fn no_such_name_is_final_and_a_failure_asks_the_next_server() {
    let mut l = lookup(false);
    let a = ids(&l)[0].0;
    assert!(matches!(
        l.answer(&reply(a, "app.test", TYPE::A, RCODE::NameError, &[])),
        Some(Progress::NoSuchName(_))
    ));
    let mut l = lookup(false);
    let a = ids(&l)[0].0;
    assert!(matches!(
        l.answer(&reply(a, "app.test", TYPE::A, RCODE::ServerFailure, &[])),
        Some(Progress::TryNext(_))
    ));
    // An A record in answer to the AAAA question is not taken.
    let mut l = lookup(true);
    let q = ids(&l);
    assert_eq!(
        l.answer(&reply(
            q[1].0,
            "app.test",
            TYPE::AAAA,
            RCODE::NoError,
            &[ip("10.9.9.9")]
        )),
        None
    );
    assert!(matches!(
        l.answer(&reply(q[0].0, "app.test", TYPE::A, RCODE::NoError, &[])),
        Some(Progress::NoSuchName(_))
    ));
}

#[test]
fn the_next_server_after_a_timeout_and_the_last_error_at_the_end() {
    let silent = [0, 1].map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    let r = Resolver {
        servers: silent.iter().map(|s| s.local_addr().unwrap()).collect(),
        timeout: Duration::from_millis(200),
        ipv6: false,
        hosts: PathBuf::from("/nonexistent"),
    };
    let now = Instant::now();
    let a = Attempt::new(&r, "app.test", now);
    let Attempt::Asking(mut l) = a else {
        panic!("asks a server")
    };
    assert_eq!(l.server(), 0);
    assert_eq!(l.expired(now), Progress::Pending);
    let p = l.expired(now + Duration::from_secs(1));
    let a = Attempt::Asking(l).next(&r, "app.test", p, now);
    let Attempt::Asking(mut l) = a else {
        panic!("asks the second server")
    };
    assert_eq!(l.server(), 1);
    let p = l.expired(now + Duration::from_secs(1));
    match Attempt::Asking(l).next(&r, "app.test", p, now) {
        Attempt::Done(Err(e)) => assert!(e.contains(&format!("{} timed out", r.servers[1])), "{e}"),
        _ => panic!("gives up after the last server"),
    }
}

#[test]
fn hosts_file_and_resolv_conf() {
    let dir = std::env::temp_dir().join(format!("proxyd-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.0.0.5 db DB.internal # x\n\
         10.0.0.6 db\nnot-an-ip db\n",
    )
    .unwrap();
    assert_eq!(
        from_hosts_file(&hosts, "db", true),
        vec![ip("10.0.0.5"), ip("10.0.0.6")]
    );
    assert_eq!(
        from_hosts_file(&hosts, "db.INTERNAL", true),
        vec![ip("10.0.0.5")]
    );
    assert_eq!(
        from_hosts_file(&hosts, "localhost", false),
        vec![ip("127.0.0.1")]
    );
    assert_eq!(from_hosts_file(&hosts, "localhost", true).len(), 2);
    assert!(from_hosts_file(&hosts, "x", true).is_empty());
    let r = Resolver {
        hosts: hosts.clone(),
        ..Resolver::default()
    };
    assert_eq!(r.lookup("db"), Ok(vec![ip("10.0.0.5"), ip("10.0.0.6")]));

    let conf = dir.join("resolv.conf");
    std::fs::write(
        &conf,
        "search example.com\nnameserver 10.0.0.53\nnameserver ::1\noptions ndots:2\n",
    )
    .unwrap();
    assert_eq!(
        system_servers(&conf),
        vec!["10.0.0.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
    );
    assert_eq!(
        system_servers(&dir.join("none")),
        vec!["127.0.0.1:53".parse().unwrap()]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! TLS per client: certificates a server asks clients for (`verify_client`, `client_ca`) and
//! what the upstream is told of them, SNI against Host when a server verifies clients, and
//! the certificate a server presents chosen by what the client supports (`extra_certs`).
//! Certificates are made by `openssl` at test time; curl is the client.

mod common;

use common::certs::{ca, cert, client_cert, curl, fingerprint};
use common::raw::{self, RawUpstream};
use common::*;

/// api.test requires a client certificate from `ca`, opt.test asks for one, www.test (the
/// default) does not; api and opt proxy to `up`.
fn sites(d: &str, up: &RawUpstream) -> String {
    let server = |name: &str, verify: &str| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"{name}\"\n\
             tls = {{ cert = \"{d}/{name}.crt\", key = \"{d}/{name}.key\"{verify} }}\n\
             access_log = {{ path = \"{{dir}}/tls.log\", format = \"tls\" }}\n\
             [[server.route]]\npath = \"/\"\nupstream = \"app\"\n"
        )
    };
    format!(
        "[[upstream]]\nname = \"app\"\npeers = [\"{}\"]\n{}{}{}",
        up.addr(),
        server("www.test", ""),
        server(
            "api.test",
            &format!(", verify_client = \"required\", client_ca = \"{d}/ca.crt\"")
        ),
        server(
            "opt.test",
            &format!(", verify_client = \"optional\", client_ca = \"{d}/ca.crt\"")
        ),
    )
}

/// What the access log says of each TLS request.
const TLS_FORMAT: &str = "log_format = { tls = '$ssl_server_name $ssl_protocol $ssl_cipher $ssl_client_verify \"$ssl_client_s_dn\" $ssl_client_fingerprint $scheme $status' }";

#[test]
fn client_certificates_are_verified_and_passed_upstream() {
    let dir = TempDir::new("mtls");
    let p = dir.path();
    for name in ["www.test", "api.test", "opt.test"] {
        cert(p, name, &[name], false);
    }
    ca(p, "ca");
    ca(p, "other");
    client_cert(p, "alice", "/CN=alice/O=Example Corp", "ca");
    client_cert(p, "mallory", "/CN=mallory", "other");
    let up = RawUpstream::start(|_| raw::ok("from upstream"));
    let px = Proxyd::start_with(1, TLS_FORMAT, &sites(&p.display().to_string(), &up));
    let key = |n: &str| p.join(format!("{n}.key")).display().to_string();
    let crt = |n: &str| p.join(format!("{n}.crt")).display().to_string();
    let spoof = [
        "-H",
        "X-Client-Subject: CN=admin",
        "-H",
        "X-Client-Verify: SUCCESS",
    ];
    let with = |n: &str| {
        let mut a = vec!["--cert".to_string(), crt(n), "--key".to_string(), key(n)];
        a.extend(spoof.iter().map(|s| s.to_string()));
        a
    };
    let run = |host: &str, v: Vec<String>| {
        let a: Vec<&str> = v.iter().map(String::as_str).collect();
        curl(px.port, &p.join(format!("{host}.crt")), host, "/", &a)
    };

    // Required, and a certificate from the CA: the upstream learns who it is.
    let (rc, body, v) = run("api.test", with("alice"));
    assert_eq!((rc, body.as_str()), (0, "from upstream"), "{v}");
    let r = up.requests().pop().expect("the upstream got the request");
    assert_eq!(r.header("X-Client-Verify"), Some("SUCCESS"));
    let subject = r.header("X-Client-Subject").unwrap_or("");
    assert!(
        subject.contains("CN=alice") && subject.contains("O=Example Corp"),
        "{subject}"
    );
    assert_eq!(
        r.header("X-Client-Fingerprint"),
        Some(fingerprint(&p.join("alice.crt")).as_str())
    );
    assert_eq!(r.head.matches("X-Client-Subject").count(), 1, "{}", r.head);
    up.clear();

    // Required: no certificate, or one from another CA, ends the handshake.
    let (rc, _, v) = run("api.test", vec![]);
    assert_ne!(rc, 0, "{v}");
    let (rc, _, v) = run("api.test", with("mallory"));
    assert_ne!(rc, 0, "{v}");
    assert!(up.requests().is_empty(), "nothing reached the upstream");

    // Optional: without a certificate the request goes on, marked NONE, and what the client
    // claimed is gone; with one it is verified all the same.
    let (rc, body, v) = run("opt.test", spoof.map(String::from).to_vec());
    assert_eq!((rc, body.as_str()), (0, "from upstream"), "{v}");
    let r = up.requests().pop().unwrap();
    assert_eq!(r.header("X-Client-Verify"), Some("NONE"), "{}", r.head);
    assert_eq!(r.header("X-Client-Subject"), None, "{}", r.head);
    let (rc, _, _) = run("opt.test", with("alice"));
    assert_eq!(rc, 0);
    assert_eq!(
        up.requests().pop().unwrap().header("X-Client-Verify"),
        Some("SUCCESS")
    );
    let (rc, _, v) = run("opt.test", with("mallory"));
    assert_ne!(rc, 0, "{v}");

    // A handshake made for www.test (no verification) cannot carry a request for
    // api.test: 421, and the upstream sees nothing.
    up.clear();
    let status_for_api = || {
        [
            "-H",
            "Host: api.test",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ]
        .map(String::from)
        .to_vec()
    };
    let (rc, body, v) = run("www.test", status_for_api());
    assert_eq!((rc, body.as_str()), (0, "421"), "{v}");
    assert!(up.requests().is_empty());
    // Nor one made for opt.test without a certificate.
    let (rc, body, v) = run("opt.test", status_for_api());
    assert_eq!((rc, body.as_str()), (0, "421"), "{v}");
    assert!(up.requests().is_empty());
    assert!(px.unexpected_errors(&[]).is_empty(), "{}", px.error_log());

    // The access log has the verified identity of each request (and nothing for those
    // refused in the handshake).
    let log = px.dir.path().join("tls.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(std::time::Duration::from_secs(3), || read().lines().count()
            >= 5),
        "{}",
        read()
    );
    let lines: Vec<String> = read().lines().map(String::from).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let fp = fingerprint(&p.join("alice.crt"));
    assert!(
        lines[0].starts_with("api.test TLSv1.3 TLS13_"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(&format!("SUCCESS \"{subject}\" {fp} https 200")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("opt.test ") && lines[1].ends_with(" NONE \"-\" - https 200"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with(&format!("SUCCESS \"{subject}\" {fp} https 200")),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("www.test ") && lines[3].ends_with(" NONE \"-\" - https 421"),
        "{}",
        lines[3]
    );
}

#[test]
fn client_verification_settings_are_checked() {
    let dir = TempDir::new("mtls-config");
    let p = dir.path();
    cert(p, "a", &["a.test"], false);
    ca(p, "ca");
    std::fs::write(p.join("empty.pem"), "").unwrap();
    let d = p.display().to_string();
    let site = |extra: &str| {
        format!(
            "pid_file = \"{d}/p.pid\"\n[[server]]\nlisten = \"127.0.0.1:{}\"\n\
             server_name = \"a.test\"\n\
             tls = {{ cert = \"{d}/a.crt\", key = \"{d}/a.key\"{extra} }}\n\
             [[server.route]]\npath = \"/\"\nreturn = 200\n",
            free_port()
        )
    };
    let (ok, out) = config_test(
        &dir,
        &site(&format!(
            ", verify_client = \"required\", client_ca = \"{d}/ca.crt\""
        )),
    );
    assert!(ok, "{out}");
    let bad = [
        (
            ", verify_client = \"required\"".to_string(),
            "verify_client needs client_ca",
        ),
        (
            ", verify_client = \"yes\"".to_string(),
            "unknown verify_client \"yes\"",
        ),
        (
            format!(", verify_client = \"optional\", client_ca = \"{d}/missing.pem\""),
            "cannot read CA bundle",
        ),
        (
            format!(", verify_client = \"optional\", client_ca = \"{d}/empty.pem\""),
            "no certificate in CA bundle",
        ),
    ];
    for (extra, says) in bad {
        let (ok, out) = config_test(&dir, &site(&extra));
        assert!(!ok && out.contains(says), "wanted {says:?} in {out}");
        assert!(out.contains("main.toml:5:"), "file:line in {out}");
    }
}

#[test]
fn the_handshake_has_its_own_timeout() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let dir = TempDir::new("tls-handshake-timeout");
    let px = hello_server(&dir, "1s", "client_header_timeout = \"60s\"\n");
    // Silent, and stalled in the middle of a ClientHello: closed by the handshake timeout,
    // long before the header timeout.
    for sent in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = std::net::TcpStream::connect(px.addr()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s.write_all(sent).unwrap();
        let mut b = [0u8; 64];
        let n = s.read(&mut b).expect("closed, not timed out on our side");
        assert_eq!(n, 0, "sent {sent:?}");
    }
    assert!(wait_until(std::time::Duration::from_secs(5), || px
        .error_log()
        .matches("timed out in the TLS handshake")
        .count()
        == 2));
    // A finished handshake then has client_header_timeout: still open well past 1s.
    let mut c = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &px.addr()])
        .args(["-servername", "a.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(c.try_wait().unwrap().is_none(), "the connection was closed");
    c.stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = c.wait();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("hello"),
        "{out}"
    );
}

/// A real ClientHello for `a.test`, as a TLS client's first write sends it: offering TLS 1.3
/// and 1.2, or only 1.2.
fn client_hello(only_tls12: bool) -> Vec<u8> {
    let versions: &[&rustls::SupportedProtocolVersion] = if only_tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
    let mut c = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    assert_eq!(hello.first(), Some(&0x16), "a handshake record");
    hello
}

/// Review item 12: what follows the ClientHello in the same write (a fatal alert, a
/// close_notify, garbage) is acted on at once, as nginx does; it waited for more bytes, so
/// the connection stayed open until `handshake_timeout`.
#[test]
fn bytes_after_the_client_hello_in_one_write_are_processed_at_once() {
    use std::io::{Read, Write};
    let dir = TempDir::new("tls-hello-tail");
    let px = hello_server(&dir, "60s", "");
    // In a TLS 1.2 handshake a close_notify is an unauthenticated warning, which rustls
    // ignores: proxyd sees the alert record itself.
    let close_notify: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00];
    let fatal: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    let garbage: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
    let record: &[u8] = &[0x17, 0x03, 0x03, 0x00, 0x03, 1, 2, 3];
    let tails: [(&str, &[u8], bool); 8] = [
        ("fatal alert", fatal, false),
        ("close_notify", close_notify, false),
        ("TLS 1.2: close_notify", close_notify, true),
        ("garbage", garbage, false),
        ("an application record", record, false),
        ("TLS 1.2: fatal alert", fatal, true),
        ("TLS 1.2: garbage", garbage, true),
        ("TLS 1.2: an application record", record, true),
    ];
    for (what, tail, only_tls12) in tails {
        let hello = client_hello(only_tls12);
        let mut s = std::net::TcpStream::connect(px.addr()).unwrap();
        // Far shorter than handshake_timeout: only a close that does not wait for it ends
        // this read in time.
        s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .unwrap();
        s.write_all(&[&hello[..], tail].concat()).unwrap();
        let mut got = Vec::new();
        let end = loop {
            let mut b = [0u8; 4096];
            match s.read(&mut b) {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => break Err(e),
            }
        };
        match end {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "{what}: the connection was not closed ({e}); {} bytes came",
                got.len()
            ),
        }
        // The ServerHello went out first: the hello itself was fine.
        assert_eq!(got.first(), Some(&0x16), "{what}: {} bytes came", got.len());
    }
    let log = px.error_log();
    assert!(log.contains("TLS error from client"), "{log}");
}

/// `openssl s_client` offering only `sigalgs`; returns its output (certificate and
/// handshake summary).
fn s_client_with(port: u16, sigalgs: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.test", "-tls1_3", "-sigalgs", sigalgs])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn ecdsa_rsa_and_ed25519_certificates_serve_every_client() {
    let dir = TempDir::new("tls-extra-certs");
    let p = dir.path();
    cert(p, "ec", &["a.test"], false);
    cert(p, "rsa", &["a.test"], true);
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-nodes", "-days", "30", "-newkey", "ed25519",
        ])
        .args(["-keyout", "ed.key", "-out", "ed.crt", "-subj", "/CN=a.test"])
        .args(["-addext", "subjectAltName=DNS:a.test"])
        .current_dir(p)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let d = p.display().to_string();
    let px = Proxyd::start(
        1,
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"a.test\"\n\
             tls = {{ cert = \"{d}/ec.crt\", key = \"{d}/ec.key\", \
             extra_certs = [{{ cert = \"{d}/rsa.crt\", key = \"{d}/rsa.key\" }}, \
             {{ cert = \"{d}/ed.crt\", key = \"{d}/ed.key\" }}] }}\n\
             [[server.route]]\npath = \"/\"\nreturn = 200\n"
        ),
    );
    let ec = s_client_with(px.port, "ECDSA+SHA256:RSA-PSS+SHA256");
    assert!(ec.contains("Server public key is 256 bit"), "{ec}");
    let rsa = s_client_with(px.port, "rsa_pss_rsae_sha256");
    assert!(rsa.contains("Server public key is 2048 bit"), "{rsa}");
    let ed = s_client_with(px.port, "ed25519");
    assert!(ed.contains("Peer signature type: ed25519"), "{ed}");
    // A key that does not match its extra certificate is refused where it is named.
    let text = format!(
        "pid_file = \"{d}/p.pid\"\n[[server]]\nlisten = \"127.0.0.1:{}\"\n\
         server_name = \"a.test\"\ntls = {{ cert = \"{d}/ec.crt\", key = \"{d}/ec.key\", \
         extra_certs = [{{ cert = \"{d}/rsa.crt\", key = \"{d}/ec.key\" }}] }}\n\
         [[server.route]]\npath = \"/\"\nreturn = 200\n",
        free_port()
    );
    let (ok, out) = config_test(&dir, &text);
    assert!(
        !ok && out.contains("does not match certificate") && out.contains("rsa.crt"),
        "{out}"
    );
}

/// What `openssl s_client -status` says of the staple for a.test.
fn stapled(port: u16) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.test", "-status"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn next_update(status: &str) -> String {
    status
        .lines()
        .find(|l| l.trim_start().starts_with("Next Update:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn ocsp_responses_are_stapled_and_refreshed() {
    use common::certs::{ocsp_response, server_cert};
    let dir = TempDir::new("tls-ocsp");
    let p = dir.path();
    ca(p, "ca");
    server_cert(p, "a.test", "a.test", "ca");
    server_cert(p, "b.test", "b.test", "ca");
    ocsp_response(p, "a.test", "ca", false, 1, "a.ocsp");
    let d = p.display().to_string();
    let site = |ocsp: &str| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"a.test\"\n\
             tls = {{ cert = \"{d}/a.test.crt\", key = \"{d}/a.test.key\", ocsp = \"{d}/{ocsp}\" }}\n\
             [[server.route]]\npath = \"/\"\nreturn = 200\n"
        )
    };
    let px = Proxyd::start(1, &site("a.ocsp"));
    let first = stapled(px.port);
    assert!(
        first.contains("OCSP Response Status: successful") && first.contains("Cert Status: good"),
        "{first}"
    );
    let first_update = next_update(&first);
    assert!(!first_update.is_empty(), "{first}");

    // A revoked response written over the file is refused by the master: the good one stays.
    ocsp_response(p, "a.test", "ca", true, 1, "new.ocsp");
    std::fs::rename(p.join("new.ocsp"), p.join("a.ocsp")).unwrap();
    assert!(wait_until(std::time::Duration::from_secs(30), || px
        .error_log()
        .contains("revoked: keeping the last OCSP response")));
    assert!(stapled(px.port).contains("Cert Status: good"));

    // A renewed response is stapled without a reload.
    ocsp_response(p, "a.test", "ca", false, 3, "new.ocsp");
    std::fs::rename(p.join("new.ocsp"), p.join("a.ocsp")).unwrap();
    let mut last = String::new();
    let renewed = wait_until(std::time::Duration::from_secs(30), || {
        last = stapled(px.port);
        last.contains("Cert Status: good") && next_update(&last) != first_update
    });
    assert!(renewed, "{last}");
    assert!(px.error_log().contains("reloaded"), "{}", px.error_log());
    drop(px);

    // Files that are not a response for this certificate are refused with file:line.
    std::fs::write(p.join("garbage.ocsp"), b"\x30\x03\x0a\x01\x00junk").unwrap();
    ocsp_response(p, "b.test", "ca", false, 1, "b.ocsp");
    ocsp_response(p, "a.test", "ca", true, 1, "revoked.ocsp");
    for (file, says) in [
        ("garbage.ocsp", "not a usable OCSP response"),
        ("b.ocsp", "not for this certificate"),
        ("revoked.ocsp", "the certificate is revoked"),
        ("missing.ocsp", "cannot read OCSP response"),
    ] {
        let text = format!("pid_file = \"{d}/p.pid\"\n{}", site(file))
            .replace("{port}", &free_port().to_string());
        let (ok, out) = config_test(&dir, &text);
        assert!(
            !ok && out.contains(says) && out.contains("main.toml:5:"),
            "{file}: {out}"
        );
    }
}

/// Review item 13: a response whose nextUpdate passes is no longer stapled (clients refuse a
/// stale one), with a warning, although its file does not change; it stayed stapled while
/// the master only looked for changed files.
#[test]
fn an_ocsp_response_past_its_next_update_is_no_longer_stapled() {
    use common::certs::{ocsp_response_minutes, server_cert};
    let dir = TempDir::new("tls-ocsp-stale");
    let p = dir.path();
    ca(p, "ca");
    server_cert(p, "a.test", "a.test", "ca");
    // openssl ocsp's shortest validity: a minute.
    ocsp_response_minutes(p, "a.test", "ca", 1, "a.ocsp");
    let d = p.display().to_string();
    let px = Proxyd::start(
        2,
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"a.test\"\n\
             tls = {{ cert = \"{d}/a.test.crt\", key = \"{d}/a.test.key\", ocsp = \"{d}/a.ocsp\" }}\n\
             [[server.route]]\npath = \"/\"\nreturn = 200\n"
        ),
    );
    let first = stapled(px.port);
    assert!(first.contains("Cert Status: good"), "{first}");
    assert!(
        wait_until(std::time::Duration::from_secs(180), || px
            .error_log()
            .contains("(nextUpdate): no longer stapled")),
        "{}",
        px.error_log()
    );
    let log = px.error_log();
    assert!(
        log.lines()
            .any(|l| l.contains("[warn]") && l.contains("a.ocsp expired at")),
        "{log}"
    );
    // Both workers (on either, the connection lands) staple nothing now.
    for _ in 0..4 {
        let now = stapled(px.port);
        assert!(now.contains("OCSP response: no response sent"), "{now}");
    }
}

/// proxyd with one TLS server for a.test (certificate made in `dir`) answering "hello", with
/// `handshake_timeout` and `extra` server lines.
fn hello_server(dir: &TempDir, handshake_timeout: &str, extra: &str) -> Proxyd {
    let p = dir.path();
    cert(p, "a", &["a.test"], false);
    let d = p.display().to_string();
    Proxyd::start(
        1,
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"a.test\"\n{extra}\
             tls = {{ cert = \"{d}/a.crt\", key = \"{d}/a.key\", handshake_timeout = \"{handshake_timeout}\" }}\n\
             [[server.route]]\npath = \"/\"\nreturn = 200\nbody = \"hello\"\n"
        ),
    )
}

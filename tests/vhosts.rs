//! Virtual hosts through real requests: exact names, leading and trailing wildcards,
//! regular expressions and the default server, with nginx's precedence; thousands of
//! servers on one address still route by a table lookup.

mod common;

use common::client::Client;
use common::*;

fn body_for(p: &Proxyd, host: &str) -> String {
    let mut c = Client::connect(&p.addr()).unwrap();
    c.raw(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    c.recv(false).unwrap().text()
}

fn server(names: &str, extra: &str, body: &str) -> String {
    format!(
        "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = [{names}]\n{extra}\n[[server.route]]\npath = \"/\"\nreturn = 200\nbody = \"{body}\"\n\n"
    )
}

#[test]
fn server_name_forms_and_precedence() {
    let conf = [
        server("\"first.test\"", "", "first"),
        server(r#""~^api\\d+\\.test$""#, "", "regex"),
        server("\"www.example.*\"", "", "trailing"),
        server("\"*.example.com\"", "", "leading"),
        server("\"*.deep.example.com\"", "", "longer-leading"),
        server("\"www.example.com\"", "", "exact"),
        server("\".dot.test\"", "default_server = true", "dot-default"),
    ]
    .concat();
    let p = Proxyd::start(1, &conf);
    for (host, want) in [
        ("www.example.com", "exact"),
        ("WWW.Example.COM:8080", "exact"),
        ("www.example.com.", "exact"),
        ("a.example.com.:80", "leading"),
        ("a.deep.example.com", "longer-leading"),
        ("a.example.com", "leading"),
        ("www.example.org", "trailing"),
        ("api12.test", "regex"),
        ("api.test", "dot-default"),
        ("dot.test", "dot-default"),
        ("x.dot.test", "dot-default"),
        ("first.test", "first"),
        ("nothing.here", "dot-default"),
    ] {
        assert_eq!(body_for(&p, host), want, "Host: {host}");
    }
}

#[test]
fn ten_thousand_servers_route_by_table() {
    let mut conf = String::new();
    for i in 0..10_000 {
        conf.push_str(&server(&format!("\"s{i}.test\""), "", &format!("s{i}")));
    }
    let p = Proxyd::start(1, &conf);
    assert_eq!(body_for(&p, "s0.test"), "s0");
    assert_eq!(body_for(&p, "s9999.test"), "s9999");
    assert_eq!(
        body_for(&p, "unknown.test"),
        "s0",
        "the first server is the default"
    );
}

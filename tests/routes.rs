//! Routes inside a server, end to end against real upstreams: exact, prefix, regex and
//! priority; conditions on method, header, query and client address; weighted and sticky
//! splits; redirects, rewrites and prefix stripping with captures; `-t` warnings for routes
//! that can never match and errors for regexes that do not compile.

mod common;

use common::client::{Body, Client, Response};
use common::upstream::Upstream;
use common::*;

fn send(p: &Proxyd, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut c = Client::connect(&p.addr()).unwrap();
    c.send(method, target, headers, Body::None).unwrap();
    c.recv(method == "HEAD").unwrap()
}

/// (which upstream, the target it received) for a GET.
fn via(p: &Proxyd, target: &str, headers: &[(&str, &str)]) -> (String, String) {
    let r = send(p, "GET", target, headers);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    let text = r.text();
    let (name, got) = text.split_once(' ').unwrap();
    (name.to_string(), got.to_string())
}

fn ups(names: &[&str]) -> (Vec<Upstream>, String) {
    let mut v = Vec::new();
    let mut conf = String::new();
    for n in names {
        let u = Upstream::start(n);
        conf.push_str(&format!(
            "[[upstream]]\nname = \"{n}\"\npeers = [\"{}\"]\n",
            u.addr()
        ));
        v.push(u);
    }
    (v, conf)
}

#[test]
fn matchers_pick_the_route_by_rank_and_conditions() {
    let (_u, upstreams) = ups(&[
        "main", "api", "exact", "regex", "canary", "prio", "inner", "q",
    ]);
    let p = Proxyd::start(
        1,
        &format!(
            r#"{upstreams}
[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
path = "/"
upstream = "main"
[[server.route]]
path = "/api/"
upstream = "api"
[[server.route]]
exact = "/api/login"
upstream = "exact"
[[server.route]]
regex = "^/api/users/[0-9]+$"
upstream = "regex"
[[server.route]]
path = "/api/"
match = {{ method = ["POST", "PUT"], header = {{ x-canary = "~^(yes|1)$" }} }}
upstream = "canary"
[[server.route]]
path = "/assets/"
priority = 10
upstream = "prio"
[[server.route]]
regex = "\\.css$"
upstream = "regex"
[[server.route]]
path = "/internal/"
match = {{ client = ["10.0.0.0/8", "127.0.0.0/8"] }}
upstream = "inner"
[[server.route]]
path = "/internal/"
match = {{ client = "192.168.0.0/16" }}
return = 403
body = "no"
[[server.route]]
path = "/search"
match = {{ query = {{ beta = true, v = "2" }}, header = {{ x-debug = false }} }}
upstream = "q"
"#
        ),
    );
    let name = |t: &str, h: &[(&str, &str)]| via(&p, t, h).0;
    assert_eq!(name("/x", &[]), "main");
    assert_eq!(name("/api/x", &[]), "api");
    assert_eq!(name("/api/login", &[]), "exact");
    assert_eq!(name("/api/login/", &[]), "api");
    assert_eq!(name("/api/users/42", &[]), "regex");
    assert_eq!(name("/api/users/42x", &[]), "api");
    // Normalized before matching: an escaped or dotted path cannot dodge a route.
    assert_eq!(name("/api/%6cogin", &[]), "exact");
    assert_eq!(name("/x/../api/login", &[]), "exact");
    // Method and header conditions, both needed.
    let post = |h: &[(&str, &str)]| {
        let r = send(&p, "POST", "/api/x", h);
        r.text().split(' ').next().unwrap().to_string()
    };
    assert_eq!(post(&[("X-Canary", "yes")]), "canary");
    assert_eq!(post(&[("X-Canary", "no")]), "api");
    assert_eq!(post(&[]), "api");
    assert_eq!(name("/api/x", &[("X-Canary", "1")]), "api");
    // A regex beats a prefix; priority beats both.
    assert_eq!(name("/a/b.css", &[]), "regex");
    assert_eq!(name("/assets/b.css", &[]), "prio");
    // Client address: the test connects from 127.0.0.1.
    assert_eq!(name("/internal/x", &[]), "inner");
    // Query parameters (present, equal) and an absent header.
    assert_eq!(name("/search?beta&v=2", &[]), "q");
    assert_eq!(name("/search?v=2&beta=1", &[]), "q");
    assert_eq!(name("/search?v=2", &[]), "main");
    assert_eq!(name("/search?beta&v=3", &[]), "main");
    assert_eq!(name("/search?beta&v=2", &[("X-Debug", "1")]), "main");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn redirects_rewrites_and_prefix_stripping() {
    let (_u, upstreams) = ups(&["app", "legacy"]);
    let p = Proxyd::start(
        1,
        &format!(
            r#"{upstreams}
[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
regex = "^/old/(?P<rest>.*)$"
redirect = "https://$host/new/${{rest}}?$args"
return = 301
[[server.route]]
exact = "/moved"
redirect = "/elsewhere"
[[server.route]]
exact = "/see-other"
redirect = "/done"
return = 303
[[server.route]]
exact = "/temp"
redirect = "/t"
return = 307
[[server.route]]
exact = "/perm"
redirect = "/p"
return = 308
[[server.route]]
regex = "^/v1/users/(\\d+)/(\\w+)$"
rewrite = "/api/users/$2?id=$1"
upstream = "app"
[[server.route]]
regex = "^/v1/(.*)$"
rewrite = "/api/$1"
upstream = "app"
[[server.route]]
path = "/legacy/"
strip_prefix = "/legacy"
upstream = "legacy"
"#
        ),
    );
    let r = send(&p, "GET", "/old/a/b?x=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://test.local/new/a/b?x=1"));
    for (target, status, to) in [
        ("/moved", 302, "/elsewhere"),
        ("/see-other", 303, "/done"),
        ("/temp", 307, "/t"),
        ("/perm", 308, "/p"),
    ] {
        let r = send(&p, "GET", target, &[]);
        assert_eq!(r.status, status, "{target}");
        assert_eq!(r.header("location"), Some(to), "{target}");
    }
    // Rewrites with captures; the request's query is kept unless the rewrite has one.
    assert_eq!(
        via(&p, "/v1/users/7/posts", &[]),
        ("app".into(), "/api/users/posts?id=7".into())
    );
    assert_eq!(
        via(&p, "/v1/x/y?z=1", &[]),
        ("app".into(), "/api/x/y?z=1".into())
    );
    // Stripping a prefix.
    assert_eq!(
        via(&p, "/legacy/a/b?q=2", &[]),
        ("legacy".into(), "/a/b?q=2".into())
    );
    assert_eq!(via(&p, "/legacy/", &[]), ("legacy".into(), "/".into()));
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn weighted_split_and_sticky_split() {
    let (u, upstreams) = ups(&["stable", "canary"]);
    let p = Proxyd::start(
        1,
        &format!(
            r#"{upstreams}
[[server]]
listen = "127.0.0.1:{{port}}"
keepalive_requests = 100000
[[server.route]]
path = "/"
split = [{{ upstream = "stable", weight = 9 }}, {{ upstream = "canary", weight = 1 }}]
[[server.route]]
path = "/sticky/"
split = [{{ upstream = "stable", weight = 1 }}, {{ upstream = "canary", weight = 1 }}]
sticky = "header:x-user"
[[server.route]]
path = "/cookie/"
split = [{{ upstream = "stable", weight = 1 }}, {{ upstream = "canary", weight = 1 }}]
sticky = "cookie:uid"
"#
        ),
    );
    // 2000 requests at 9:1. The count of canary picks is about 200; 5 standard deviations
    // (sqrt(2000 * 0.1 * 0.9) = 13.4) either side is 133..267.
    let mut c = Client::connect(&p.addr()).unwrap();
    let mut canary = 0;
    for i in 0..2000 {
        let r = c.request("GET", &format!("/r{i}"), Body::None).unwrap();
        if r.header("x-upstream") == Some("canary") {
            canary += 1;
        }
    }
    assert!((133..=267).contains(&canary), "canary got {canary} of 2000");
    assert_eq!(u[0].requests() + u[1].requests(), 2000);

    // Sticky: one user always lands on one side; many users land on both.
    let mut sides = std::collections::HashSet::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let first = via(&p, "/sticky/a", &[("X-User", &id)]).0;
        for _ in 0..5 {
            assert_eq!(
                via(&p, "/sticky/b", &[("X-User", &id)]).0,
                first,
                "{id} moved"
            );
        }
        sides.insert(first);
        let cookie = format!("a=1; uid={id}; b=2");
        let c1 = via(&p, "/cookie/a", &[("Cookie", &cookie)]).0;
        for _ in 0..3 {
            assert_eq!(via(&p, "/cookie/b", &[("Cookie", &cookie)]).0, c1);
        }
    }
    assert_eq!(sides.len(), 2, "40 users all on one side");
}

fn check(body: &str) -> (bool, String) {
    let dir = TempDir::new("routes-t");
    let conf = dir.write("proxyd.toml", body);
    let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_test_warns_about_shadowed_routes_and_refuses_bad_regexes() {
    let (ok, err) = check(
        r#"[[upstream]]
name = "app"
peers = ["127.0.0.1:9"]
[[server]]
listen = "127.0.0.1:8080"
[[server.route]]
path = "/"
priority = 5
upstream = "app"
[[server.route]]
path = "/api/"
upstream = "app"
[[server.route]]
regex = "^/x"
upstream = "app"
[[server.route]]
path = "/b/"
priority = 6
match = { method = "GET" }
upstream = "app"
[[server.route]]
path = "/b/"
priority = 6
upstream = "app"
"#,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("warning:") && err.contains("proxyd.toml:10:1: route for path \"/api/\" can never match: the route at line 6 (path \"/\", priority 5)"),
        "{err}"
    );
    assert!(
        err.contains("proxyd.toml:13:1: route for regex \"^/x\" can never match"),
        "{err}"
    );
    // The conditional "/b/" ranks first, and the plain one still takes what it does not.
    assert!(!err.contains("\"/b/\""), "{err}");

    let (ok, err) = check(
        r#"[[server]]
listen = "127.0.0.1:8080"
[[server.route]]
regex = "^/(unclosed"
return = 200
[[server.route]]
exact = "/r"
redirect = "/to/$1"
[[server.route]]
path = "/s"
return = 200
match = { client = "10.0.0.1/8", header = { "bad name" = true } }
[[server.route]]
path = "/t"
redirect = "/x"
return = 200
"#,
    );
    assert!(!ok);
    assert!(
        err.contains("proxyd.toml:4:9: invalid regular expression \"^/(unclosed\""),
        "{err}"
    );
    assert!(err.contains("only a \"regex\" route has captures"), "{err}");
    assert!(err.contains("has host bits set"), "{err}");
    assert!(err.contains("invalid name \"bad name\""), "{err}");
    assert!(
        err.contains("a redirect's status is 301, 302, 303, 307 or 308, not 200"),
        "{err}"
    );
}

/// Issue 19 item 1: a thousand regex routes (the shapes that overflowed one `RegexSet`, which
/// then matched nothing) leave a deny route working, and every route still matches; 1,500
/// routes with counted Unicode classes load (they took 2 GB with the old engine).
#[test]
fn many_regex_routes_never_fail_open() {
    let (_u, upstreams) = ups(&["main"]);
    let mut routes = String::from(
        "[[server.route]]\npath = \"/\"\nupstream = \"main\"\n[[server.route]]\nregex = '^/admin(/.*)?$'\nreturn = 403\n\
         [[server.route]]\nregex = '^/panel\\b|^/internal'\nreturn = 403\n",
    );
    for i in 0..500 {
        routes.push_str(&format!(
            "[[server.route]]\nregex = '^/(?P<lang>\\w{{2}})/blog/(?P<year>\\d{{4}})/(?P<slug>[\\w-]+)-{i}$'\nreturn = 200\nbody = \"blog {i}\"\n[[server.route]]\nregex = '^/api/v{i}/users/(\\d+)/posts/(\\w+)$'\nreturn = 200\nbody = \"api {i}\"\n"
        ));
    }
    let p = Proxyd::start(
        1,
        &format!("{upstreams}\n[[server]]\nlisten = \"127.0.0.1:{{port}}\"\n{routes}"),
    );
    for path in [
        "/admin",
        "/admin/",
        "/admin/users",
        "/%61dmin",
        "//admin",
        "/internal/x",
        "/panel",
    ] {
        assert_eq!(send(&p, "GET", path, &[]).status, 403, "{path}");
    }
    for i in [0, 250, 499] {
        let r = send(&p, "GET", &format!("/de/blog/2024/hello-world-{i}"), &[]);
        assert_eq!(r.text(), format!("blog {i}"));
        let r = send(&p, "GET", &format!("/api/v{i}/users/7/posts/abc"), &[]);
        assert_eq!(r.text(), format!("api {i}"));
    }
    assert_eq!(via(&p, "/de/blog/2024/x-500", &[]).0, "main");
    assert!(p.unexpected_errors(&[]).is_empty());

    let dir = TempDir::new("regex-scale");
    let mut text = String::from("[[server]]\nlisten = \"127.0.0.1:1\"\n");
    for i in 0..1500 {
        text.push_str(&format!(
            "[[server.route]]\nregex = '^/shop/(?P<cat>[\\p{{L}}0-9_-]{{1,40}})/item-{i}/(?P<id>[0-9a-f]{{8,32}})(/(edit|view|buy))?$'\nreturn = 200\n"
        ));
    }
    let (ok, out) = config_test(&dir, &text);
    assert!(ok, "{out}");
    // Non-ASCII text in a pattern can never match a routed path: said, not silently dead.
    let (ok, out) = config_test(
        &dir,
        "[[server]]\nlisten = \"127.0.0.1:1\"\n[[server.route]]\nregex = '^/café/'\nreturn = 403\n",
    );
    assert!(
        ok && out.contains("main.toml:4:9: regex \"^/café/\" has non-ASCII"),
        "{out}"
    );
}

/// A pattern that runs out of its backtracking budget is a 500 (nginx answers a PCRE error
/// alike), never a fall-through to a route that would proxy what a deny route guards.
#[test]
fn runaway_regex_fails_closed() {
    let (u, upstreams) = ups(&["main"]);
    let p = Proxyd::start(
        1,
        &format!(
            "{upstreams}\n[[server]]\nlisten = \"127.0.0.1:{{port}}\"\n[[server.route]]\npath = \"/\"\nupstream = \"main\"\n[[server.route]]\nregex = '^/(a|aa)+$'\nreturn = 403\n"
        ),
    );
    assert_eq!(send(&p, "GET", "/aaaa", &[]).status, 403);
    let evil = format!("/{}b", "a".repeat(4000));
    assert_eq!(send(&p, "GET", &evil, &[]).status, 500);
    assert_eq!(u[0].requests(), 0, "nothing reached the upstream");
    assert!(p.error_log().contains("route regex of server 0 failed"));
}

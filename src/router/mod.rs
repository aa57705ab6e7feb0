//! Request routing: pick the server by listen address and Host (`HostTable::lookup`), then
//! the route by its server's compiled table (`RouteTable::lookup`). The router knows no
//! config: a route is anything `Routable`.

mod conditions;
mod hosts;
mod pattern;
mod routes;
mod template;
pub use conditions::{Cidr, Conditions, Request, Test};
pub use hosts::{HostTable, Hosts, NamePattern};
pub use pattern::{MatchError, Pattern};
pub use routes::{PathKind, Rank, Routable, RouteTable};
pub use template::{Template, Vars};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::net::SocketAddr;

    fn select_server(cfg: &Config, listen: SocketAddr, host: Option<&str>) -> usize {
        cfg.hosts.lookup(listen, host)
    }

    fn select_route(
        cfg: &Config,
        server: usize,
        path: &str,
        req: &Request,
    ) -> Result<Option<usize>, MatchError> {
        let srv = &cfg.server[server];
        srv.routes.lookup(&srv.route, path, req)
    }
    use crate::config::Action;

    fn cfg(text: &str) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "proxyd-router-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.toml");
        std::fs::write(&p, text).unwrap();
        let c = crate::config::load(&p).unwrap_or_else(|e| panic!("{e:?}"));
        std::fs::remove_dir_all(&dir).unwrap();
        c
    }

    /// The body of the route chosen for a request.
    fn pick(c: &Config, server: usize, host: Option<&str>, method: &str, target: &str) -> String {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let hdr = |n: &str| -> Vec<&[u8]> {
            if n == "x-canary" && target.contains("canary") {
                vec![b"1"]
            } else {
                vec![]
            }
        };
        let r = Request {
            method,
            host,
            query,
            header: &hdr,
            client: &|| "10.1.2.3".parse().unwrap(),
        };
        match select_route(c, server, path, &r)
            .unwrap()
            .map(|i| &c.server[server].route[i].action)
        {
            Some(Action::Return { body, .. }) => body.clone(),
            None => "none".into(),
            _ => panic!(),
        }
    }

    #[test]
    fn servers_and_routes() {
        let c = cfg(r#"
[[server]]
listen = "127.0.0.1:1"
[[server.route]]
path = "/"
return = 200
body = "default"
[[server.route]]
path = "/api/"
return = 200
body = "api"
[[server.route]]
path = "/api/"
host = "*.example.com"
return = 200
body = "api-host"
[[server.route]]
path = "/api/v2/"
return = 200
body = "v2"
[[server.route]]
exact = "/api/v2/login"
return = 200
body = "exact"
[[server.route]]
regex = "^/api/v2/user/\\d+$"
return = 200
body = "regex"
[[server.route]]
path = "/api/"
match = { method = "POST", header = { x-canary = "1" } }
return = 200
body = "canary-post"
[[server.route]]
path = "/static/"
priority = 5
return = 200
body = "static"
[[server.route]]
regex = "\\.png$"
return = 200
body = "png"
[[server.route]]
path = "/q"
match = { query = { v = "2" }, client = "10.0.0.0/8" }
return = 200
body = "q2"

[[server]]
listen = "127.0.0.1:1"
server_name = ["b.test", "*.wild.test"]
[[server.route]]
return = 200
body = "b"
"#);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(select_server(&c, a, Some("b.test")), 1);
        assert_eq!(select_server(&c, a, Some("x.wild.test")), 1);
        assert_eq!(select_server(&c, a, Some("wild.test")), 0);
        assert_eq!(select_server(&c, a, None), 0);
        let p = |host, method, target| pick(&c, 0, host, method, target);
        assert_eq!(p(None, "GET", "/x"), "default");
        assert_eq!(p(None, "GET", "/api/x"), "api");
        assert_eq!(p(Some("a.example.com"), "GET", "/api/x"), "api-host");
        assert_eq!(p(Some("a.example.com"), "GET", "/api/v2/x"), "v2");
        assert_eq!(p(None, "GET", "/api/v2/login"), "exact");
        assert_eq!(p(None, "GET", "/api/v2/login/"), "v2");
        assert_eq!(p(None, "GET", "/api/v2/user/42"), "regex");
        assert_eq!(p(None, "GET", "/api/v2/user/x"), "v2");
        assert_eq!(p(None, "POST", "/api/canary"), "canary-post");
        assert_eq!(p(None, "GET", "/api/canary"), "api");
        assert_eq!(p(None, "POST", "/api/x"), "api");
        // A regex beats a prefix, but priority beats both.
        assert_eq!(p(None, "GET", "/a.png"), "png");
        assert_eq!(p(None, "GET", "/static/a.png"), "static");
        assert_eq!(p(None, "GET", "/q?a=1&v=2"), "q2");
        assert_eq!(p(None, "GET", "/q?v=3"), "default");
    }

    #[test]
    fn lookup_is_by_table_not_scan() {
        let mut text = String::from("[[server]]\nlisten = \"127.0.0.1:1\"\n");
        for i in 0..2000 {
            text.push_str(&format!(
                "[[server.route]]\npath = \"/p{i}/\"\nreturn = 200\nbody = \"p{i}\"\n[[server.route]]\nexact = \"/e{i}\"\nreturn = 200\nbody = \"e{i}\"\n"
            ));
        }
        let c = cfg(&text);
        assert_eq!(pick(&c, 0, None, "GET", "/p1999/x"), "p1999");
        assert_eq!(pick(&c, 0, None, "GET", "/p19/x"), "p19");
        assert_eq!(pick(&c, 0, None, "GET", "/e7"), "e7");
        assert_eq!(pick(&c, 0, None, "GET", "/e7/"), "none");
    }

    /// The literal index of regex routes finds exactly what trying every regex finds.
    #[test]
    fn regex_index_agrees_with_trying_every_regex() {
        let patterns = [
            r"^/shop/(?P<cat>[\p{L}0-9_-]{1,40})/item-N/(?P<id>[0-9a-f]{8,32})(/(edit|view|buy))?$",
            r"^/(?P<lang>\w{2})/blog/(?P<year>\d{4})/(?P<slug>[\w-]+)-N$",
            r"^/api/vN/users/(\d+)/posts/(\w+)$",
            r"/x[]/]yN/",
            r"^/(a|b)+N",
            r"N\.css$",
            r"^/adminN(/.*)?$",
            r"(?i)^/CaseN/",
            r"^/q\QN|\E",
            r"^/adminN\b|^/internalN",
            r"^/xN(\c)admin\d)?",
            r"^/[[:]|xN:]]/zzz",
            r"^/bN{2,3}c/d",
            r"^/e(f|g)*hN\.i",
            r"^/j[^]k]N\(l",
            r"^/adminN\E?/",
            r"^/x[\E]abcN]",
        ];
        let mut text = String::from("[[server]]\nlisten = \"127.0.0.1:1\"\n");
        for n in 0..40 {
            for (k, p) in patterns.iter().enumerate() {
                let p = p.replace('N', &n.to_string());
                text.push_str(&format!(
                    "[[server.route]]\nregex = '{p}'\nreturn = 200\nbody = \"{n}.{k}\"\n"
                ));
            }
        }
        let c = cfg(&text);
        let routes = &c.server[0].route;
        let hdr = |_: &str| -> Vec<&[u8]> { vec![] };
        let req = Request {
            method: "GET",
            host: None,
            query: None,
            header: &hdr,
            client: &|| "10.1.2.3".parse().unwrap(),
        };
        let mut seed = 12345u64;
        let mut rand = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let parts = [
            "shop",
            "item-7",
            "item-17",
            "deadbeef00",
            "view",
            "de",
            "blog",
            "2024",
            "slug-3",
            "api",
            "v12",
            "users",
            "42",
            "posts",
            "x]",
            "y3",
            "a",
            "b",
            "ab13",
            "7.css",
            "admin",
            "case5",
            "CASE5",
            "q",
            "q3|",
            "internal3",
            "admin3",
            "x3",
            ":",
            "b33c",
            "b333c",
            "d",
            "eh3.i",
            "efgh3.i",
            "jz3(l",
            "j]3(l",
            "admi3",
            "admi",
            "xa",
            "x]",
            "",
        ];
        let mut matched = 0;
        for _ in 0..20_000 {
            let mut path = String::new();
            for _ in 0..1 + rand(6) {
                path.push('/');
                path.push_str(parts[rand(parts.len())]);
            }
            let brute = routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.regex.as_ref().unwrap().is_match(&path).unwrap())
                .max_by_key(|(i, r)| Rank::of(*r, *i))
                .map(|(i, _)| i);
            let found = select_route(&c, 0, &path, &req).unwrap();
            assert_eq!(found, brute, "{path}");
            matched += found.is_some() as usize;
        }
        assert!(matched > 1000, "the paths exercise the routes: {matched}");
    }
}

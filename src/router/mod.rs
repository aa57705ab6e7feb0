//! Request routing: pick the server by listen address and Host (`hosts`), then the route by
//! host and longest path prefix.

mod hosts;
pub use hosts::{HostTable, Hosts, NamePattern};

use crate::config::{Config, Route};
use std::net::SocketAddr;

fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

/// The server for a request that arrived on `listen` with `host` (lowercase, no port): a
/// few hash probes in the compiled table (see `hosts`), whatever the number of servers.
pub fn select_server(cfg: &Config, listen: SocketAddr, host: Option<&str>) -> usize {
    cfg.hosts.lookup(listen, host)
}

/// The route whose path is the longest prefix of `path`; a route naming the host wins a tie.
pub fn select_route<'a>(
    cfg: &'a Config,
    server: usize,
    host: Option<&str>,
    path: &str,
) -> Option<&'a Route> {
    select_route_index(cfg, server, host, path).map(|i| &cfg.server[server].route[i])
}

/// `select_route`, as the index of the route among its server's routes.
pub fn select_route_index(
    cfg: &Config,
    server: usize,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let mut best: Option<(usize, &Route)> = None;
    for (i, r) in cfg.server[server].route.iter().enumerate() {
        let host_ok = match (&r.host, host) {
            (None, _) => true,
            (Some(p), Some(h)) => name_matches(p, h),
            (Some(_), None) => false,
        };
        if !host_ok || !path.starts_with(r.path.as_str()) {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, b)) => {
                r.path.len() > b.path.len()
                    || (r.path.len() == b.path.len() && b.host.is_none() && r.host.is_some())
            }
        };
        if better {
            best = Some((i, r));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;

    fn cfg() -> Config {
        let dir = std::env::temp_dir().join(format!("proxyd-router-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.toml");
        std::fs::write(
            &p,
            r#"
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

[[server]]
listen = "127.0.0.1:1"
server_name = ["b.test", "*.wild.test"]
[[server.route]]
return = 200
body = "b"
"#,
        )
        .unwrap();
        let c = crate::config::load(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        c
    }

    fn body(r: Option<&Route>) -> &str {
        match &r.unwrap().action {
            Action::Return { body, .. } => body,
            _ => panic!(),
        }
    }

    #[test]
    fn servers_and_routes() {
        let c = cfg();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(select_server(&c, a, Some("b.test")), 1);
        assert_eq!(select_server(&c, a, Some("x.wild.test")), 1);
        assert_eq!(select_server(&c, a, Some("wild.test")), 0);
        assert_eq!(select_server(&c, a, None), 0);
        assert_eq!(body(select_route(&c, 0, None, "/x")), "default");
        assert_eq!(body(select_route(&c, 0, None, "/api/x")), "api");
        assert_eq!(
            body(select_route(&c, 0, Some("a.example.com"), "/api/x")),
            "api-host"
        );
        assert_eq!(
            body(select_route(&c, 0, Some("a.example.com"), "/api/v2/x")),
            "v2"
        );
    }
}

//! Micro-benchmark of route lookup: nanoseconds per `RouteTable::lookup` on one server with 10,
//! 1,000 and 10,000 routes (half prefixes, half exact paths, plus 10 regexes and a
//! conditional route per 100), for the first prefix, the last, an exact path, a regex and a
//! path no route but "/" takes. Flat across sizes: routes are compiled into a hash table, a
//! trie and a literal index of regexes (`src/router/routes.rs`), not scanned. Then 10, 100
//! and 1,000 regex routes alone (counted Unicode classes): load time and lookup time.
//!
//!   cargo run --release --example routes

use proxyd::config;
use proxyd::router::Request;
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("proxyd-routes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}   ns per lookup",
        "routes", "prefix 0", "prefix N", "exact", "regex", "fallback"
    );
    for n in [10, 1_000, 10_000] {
        let mut text = String::from("[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nreturn = 200\n");
        for i in 0..n / 2 {
            text.push_str(&format!(
                "[[server.route]]\npath = \"/svc{i}/\"\nreturn = 200\n[[server.route]]\nexact = \"/page/{i}\"\nreturn = 200\n"
            ));
            if i % 50 == 0 {
                text.push_str(&format!(
                    "[[server.route]]\npath = \"/svc{i}/\"\nmatch = {{ method = \"POST\" }}\nreturn = 201\n"
                ));
            }
        }
        for i in 0..10 {
            text.push_str(&format!(
                "[[server.route]]\nregex = \"^/re{i}/([0-9]+)$\"\nreturn = 200\n"
            ));
        }
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        let time = |p: &str| ns_per_lookup(&cfg, p, 200_000);
        let last = format!("/svc{}/items/7", n / 2 - 1);
        let exact = format!("/page/{}", n / 4);
        println!(
            "{n:>8} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            time("/svc0/items/7"),
            time(&last),
            time(&exact),
            time("/re7/12345"),
            time("/nothing/here/at/all")
        );
    }
    println!();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}   regex routes: load ms, ns per lookup",
        "regexes", "load", "first", "last", "none"
    );
    for n in [10, 100, 1_000] {
        let mut text = String::from("[[server]]\nlisten = \"127.0.0.1:8080\"\n");
        for i in 0..n / 2 {
            text.push_str(&format!(
                "[[server.route]]\nregex = '^/shop/(?P<cat>[\\p{{L}}0-9_-]{{1,40}})/item-{i}/(?P<id>[0-9a-f]{{8,32}})(/(edit|view|buy))?$'\nreturn = 200\n[[server.route]]\nregex = '^/(?P<lang>\\w{{2}})/blog/(?P<year>\\d{{4}})/(?P<slug>[\\w-]+)-{i}$'\nreturn = 200\n"
            ));
        }
        let path = dir.join(format!("re{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let t = Instant::now();
        let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        let load = t.elapsed().as_secs_f64() * 1000.0;
        let time = |p: &str| ns_per_lookup(&cfg, p, 20_000);
        println!(
            "{n:>8} {load:>10.1} {:>10.0} {:>10.0} {:>10.0}",
            time("/shop/books/item-0/deadbeef/view"),
            time(&format!("/de/blog/2024/some-slug-{}", n / 2 - 1)),
            time("/shop/books/item-x/deadbeef")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nanoseconds per route lookup of `path` on the first server, over `rounds` lookups.
fn ns_per_lookup(cfg: &config::Config, path: &str, rounds: u32) -> f64 {
    let hdr = |_: &str| -> Vec<&[u8]> { Vec::new() };
    let req = Request {
        method: "GET",
        host: Some("example.com"),
        query: None,
        header: &hdr,
        client: &|| "127.0.0.1".parse().unwrap(),
    };
    let srv = &cfg.server[0];
    let t = Instant::now();
    let mut sum = 0;
    for _ in 0..rounds {
        sum += srv
            .routes
            .lookup(&srv.route, std::hint::black_box(path), &req)
            .unwrap()
            .unwrap_or(0);
    }
    std::hint::black_box(sum);
    t.elapsed().as_nanos() as f64 / rounds as f64
}

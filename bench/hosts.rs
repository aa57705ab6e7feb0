//! Micro-benchmark of virtual-host lookup: nanoseconds per `HostTable::lookup` with 10, 1,000
//! and 10,000 servers on one address, for the first name, the last, a wildcard and an
//! unknown Host (which any client can send). Flat across sizes: the names are compiled into
//! hash tables (`src/router/hosts.rs`), not scanned.
//!
//!   cargo run --release --example hosts

use proxyd::config;
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("proxyd-hosts-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}   ns per lookup",
        "servers", "first", "last", "wildcard", "unknown"
    );
    for n in [10, 1_000, 10_000] {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = [\"s{i}.example.com\", \"*.w{i}.example.org\"]\n[[server.route]]\nreturn = 200\n"
            ));
        }
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        let addr = "127.0.0.1:8080".parse().unwrap();
        let time = |host: &str| {
            let rounds = 200_000;
            let t = Instant::now();
            let mut sum = 0;
            for _ in 0..rounds {
                sum += cfg.hosts.lookup(addr, std::hint::black_box(Some(host)));
            }
            std::hint::black_box(sum);
            t.elapsed().as_nanos() as f64 / rounds as f64
        };
        let last = format!("s{}.example.com", n - 1);
        let wild = format!("a.b.w{}.example.org", n / 2);
        println!(
            "{n:>8} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            time("s0.example.com"),
            time(&last),
            time(&wild),
            time("unknown.example.net")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

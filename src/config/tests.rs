use super::*;
use std::io::Write;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("proxyd-cfg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const GOOD: &str = r#"
worker_processes = 2
shutdown_timeout = "10s"
include = ["conf.d/*.toml"]

[[upstream]]
name = "app"
peers = ["127.0.0.1:9000", { addr = "127.0.0.1:9001", weight = 3 }]
read_timeout = "2s"

[[server]]
listen = ["127.0.0.1:8080", "[::1]:8080"]
server_name = "example.com"

[[server.route]]
path = "/api/"
upstream = "app"

[[server.route]]
path = "/"
return = 200
body = "hi"
headers = { "Content-Type" = "text/plain" }
"#;

#[test]
fn good_config_loads_with_defaults() {
    let d = tmpdir("good");
    let p = write(&d, "main.toml", GOOD);
    write(
        &d,
        "conf.d/extra.toml",
        "[[upstream]]\nname = \"other\"\npeers = [\"localhost:81\"]\n",
    );
    let c = load(&p).unwrap();
    assert_eq!(c.worker_processes, 2);
    assert_eq!(c.upstream.len(), 2);
    assert_eq!(c.upstream[0].peers[1].weight, 3);
    assert_eq!(c.upstream[0].read_timeout, Duration::from_secs(2));
    assert_eq!(c.server[0].keepalive_timeout, Duration::from_secs(75));
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.files.len(), 2);
    assert!(c.to_toml().contains("read_timeout = \"2s\""));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn errors_are_all_reported_with_locations() {
    let d = tmpdir("bad");
    let p = write(
        &d,
        "main.toml",
        "shutdown_timeout = \"ten\"\n[[server]]\nlisten = \"nope\"\n[[server.route]]\nupstream = \"missing\"\n",
    );
    let errs = load(&p).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{text:?}");
    assert!(text[0].contains("main.toml:1:"), "{text:?}");
    assert!(text[1].contains("main.toml:3:"), "{text:?}");
    assert!(
        text[2].contains("main.toml:5:") && text[2].contains("unknown upstream"),
        "{text:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn balance_errors_point_at_their_keys() {
    let d = tmpdir("balance");
    let p = write(
        &d,
        "p.toml",
        r#"[[upstream]]
name = "a"
peers = ["127.0.0.1:1"]
balance = "fastest"
[[upstream]]
name = "b"
peers = ["127.0.0.1:1"]
balance = "hash"
[[upstream]]
name = "c"
peers = ["127.0.0.1:1"]
hash_key = "uri"
[[upstream]]
name = "d"
peers = ["127.0.0.1:1"]
balance = "hash"
hash_key = "header:"
[[upstream]]
name = "e"
peers = [{ addr = "127.0.0.1:1", backup = true }, { addr = "127.0.0.1:2", down = true }]
[[server]]
listen = "127.0.0.1:8080"
[[server.route]]
return = 200
"#,
    );
    let errs: Vec<String> = load(&p)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let has = |s: &str| errs.iter().any(|e| e.contains(s));
    assert!(has("p.toml:4:11: unknown balance \"fastest\""), "{errs:?}");
    assert!(
        has("p.toml:8:11: balance = \"hash\" needs hash_key"),
        "{errs:?}"
    );
    assert!(
        has("p.toml:12:12: \"hash_key\" needs balance = \"hash\""),
        "{errs:?}"
    );
    assert!(has("p.toml:17:12: hash_key \"header:\""), "{errs:?}");
    assert!(
        has("p.toml:20:9: upstream \"e\" has no peer that is neither"),
        "{errs:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

//! Certificates made by `openssl` at test time, and curl as a TLS client.

use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (NAME.crt, NAME.key in `dir`) that can sign client certificates.
pub fn ca(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        dir,
    );
}

/// A client certificate for `subject` (as openssl writes it: "/CN=alice/O=Example") signed
/// by the CA `ca` (see `ca`), as NAME.crt and NAME.key.
pub fn client_cert(dir: &Path, name: &str, subject: &str, ca: &str) {
    signed(dir, name, subject, ca, "extendedKeyUsage=clientAuth");
}

/// A server certificate for `host` signed by the CA `ca`, as NAME.crt and NAME.key.
pub fn server_cert(dir: &Path, name: &str, host: &str, ca: &str) {
    let kind = if host.parse::<std::net::IpAddr>().is_ok() {
        "IP"
    } else {
        "DNS"
    };
    let ext = format!("extendedKeyUsage=serverAuth\nsubjectAltName={kind}:{host}");
    signed(dir, name, &format!("/CN={host}"), ca, &ext);
}

fn signed(dir: &Path, name: &str, subject: &str, ca: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), format!("{ext}\n")).unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// An OCSP response (DER, as `out`) from the CA `ca` saying NAME.crt is good (or revoked),
/// valid for `days`.
pub fn ocsp_response(dir: &Path, name: &str, ca: &str, revoked: bool, days: u32, out: &str) {
    ocsp_for(dir, &format!("{name}.crt"), ca, revoked, days, out);
}

/// `ocsp_response` valid for `minutes` only (its nextUpdate that far from now).
pub fn ocsp_response_minutes(dir: &Path, name: &str, ca: &str, minutes: u32, out: &str) {
    let minutes = minutes.to_string();
    ocsp_valid(
        dir,
        &format!("{name}.crt"),
        ca,
        false,
        &["-nmin", &minutes],
        out,
    );
}

/// `ocsp_response` for the certificate file `cert` (a self-signed one is its own `ca`:
/// CA.crt and CA.key).
pub fn ocsp_for(dir: &Path, cert: &str, ca: &str, revoked: bool, days: u32, out: &str) {
    ocsp_valid(dir, cert, ca, revoked, &["-ndays", &days.to_string()], out);
}

/// `ocsp_for` with openssl ocsp's arguments for the validity period.
fn ocsp_valid(dir: &Path, cert: &str, ca: &str, revoked: bool, validity: &[&str], out: &str) {
    let name = cert;
    let serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", cert])
        .current_dir(dir)
        .output()
        .expect("openssl");
    let serial = String::from_utf8_lossy(&serial.stdout);
    let serial = serial.trim().trim_start_matches("serial=");
    let line = if revoked {
        format!("R\t301231000000Z\t240101000000Z\t{serial}\tunknown\t/CN={name}\n")
    } else {
        format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN={name}\n")
    };
    std::fs::write(dir.join("index.txt"), line).unwrap();
    openssl(
        &[
            "ocsp",
            "-issuer",
            &format!("{ca}.crt"),
            "-cert",
            cert,
            "-no_nonce",
            "-reqout",
            "ocsp-req.der",
        ],
        dir,
    );
    let (rsigner, rkey, ca_crt) = (
        format!("{ca}.crt"),
        format!("{ca}.key"),
        format!("{ca}.crt"),
    );
    let mut args = vec![
        "ocsp",
        "-index",
        "index.txt",
        "-rsigner",
        &rsigner,
        "-rkey",
        &rkey,
        "-CA",
        &ca_crt,
        "-reqin",
        "ocsp-req.der",
        "-respout",
        out,
    ];
    args.extend_from_slice(validity);
    openssl(&args, dir);
}

/// The SHA-256 fingerprint of a PEM certificate, lowercase hex without colons.
pub fn fingerprint(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit('=').next().unwrap_or("");
    hex.replace(':', "").to_ascii_lowercase()
}

/// A self-signed certificate for `names` (the first is the subject) with an ECDSA P-256 or
/// RSA key, as NAME.crt and NAME.key in `dir`.
pub fn cert(dir: &Path, file: &str, names: &[&str], rsa: bool) {
    let san = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{n}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    let key: &[&str] = if rsa {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    };
    let out = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "365"])
        .args(key)
        .arg("-keyout")
        .arg(dir.join(format!("{file}.key")))
        .arg("-out")
        .arg(dir.join(format!("{file}.crt")))
        .args(["-subj", &format!("/CN={}", names[0])])
        .args(["-addext", &format!("subjectAltName={san}")])
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl against proxyd's `port` on 127.0.0.1 as `host` (SNI and Host), trusting `ca`;
/// returns (exit code, body, verbose output).
pub fn curl(port: u16, ca: &Path, host: &str, path: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "-m", "10", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

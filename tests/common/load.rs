//! Clients that keep requesting while a test reloads or upgrades proxyd, half on keep-alive
//! connections and half with a new connection per request, recording every failure.

use super::client::{Body, Client};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The path client `i` asks for in its `n`th request, and whether a response body is right.
pub type PathFor = fn(usize, u64) -> String;
pub type Check = fn(&str, &str) -> bool;

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: &str, clients: usize, path_for: PathFor, check: Check) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, failed, addr) =
                    (stop.clone(), ok.clone(), failed.clone(), addr.to_string());
                std::thread::spawn(move || {
                    let keep_alive = i % 2 == 0;
                    let mut conn: Option<Client> = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let path = path_for(i, n);
                        let result = (|| -> std::io::Result<(bool, bool)> {
                            if conn.is_none() {
                                conn = Some(Client::connect(&addr)?);
                            }
                            let c = conn.as_mut().unwrap();
                            let headers: &[(&str, &str)] = if keep_alive {
                                &[]
                            } else {
                                &[("Connection", "close")]
                            };
                            c.send("GET", &path, headers, Body::None)?;
                            let r = c.recv(false)?;
                            Ok((r.status == 200 && check(&path, &r.text()), r.closes()))
                        })();
                        match result {
                            Ok((true, closes)) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                if closes || !keep_alive {
                                    conn = None;
                                }
                            }
                            Ok((false, _)) => {
                                failed
                                    .lock()
                                    .unwrap()
                                    .push(format!("client {i} {path}: bad response"));
                                conn = None;
                            }
                            Err(e) => {
                                failed
                                    .lock()
                                    .unwrap()
                                    .push(format!("client {i} {path}: {e}"));
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; returns the requests that succeeded and the failures.
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

//! Files the configuration names (the config itself and its includes, certificates and keys,
//! OCSP responses, hosts files), read bounded: a regular file only, of at most 16 MiB, opened
//! so that nothing can block the reader. Below `config`, `tls` and `dns`, which all read them,
//! so that none of them imports another for it.

use std::path::Path;

/// Largest file read.
const MAX_FILE: u64 = 16 << 20;

/// Reads a config file that must be a regular file of bounded size: a FIFO would block the
/// master forever, `/dev/zero` would eat its memory. Opened non-blocking so that even a FIFO
/// swapped in after the check cannot block the open.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    String::from_utf8(read_bounded_bytes(path)?).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        format!("not UTF-8 at line {line}, column {col}")
    })
}

/// `read_bounded` for a binary file.
pub fn read_bounded_bytes(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {} MiB", MAX_FILE >> 20));
    }
    let mut data = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    if data.len() as u64 > MAX_FILE {
        return Err(format!("larger than {} MiB", MAX_FILE >> 20));
    }
    Ok(data)
}

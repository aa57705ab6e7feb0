//! Dropping root in workers: the master keeps privileges to bind ports and open logs;
//! workers switch to the configured user and group right after fork.

use nix::unistd::{setgid, setgroups, setuid, Gid, Group, User};

pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let name = user.unwrap_or("nobody");
    let u = User::from_name(name)
        .map_err(|e| format!("getpwnam(\"{name}\") failed: {e}"))?
        .ok_or_else(|| format!("unknown user \"{name}\""))?;
    let gid: Gid = match group {
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| format!("getgrnam(\"{g}\") failed: {e}"))?
                .ok_or_else(|| format!("unknown group \"{g}\""))?
                .gid
        }
        None => u.gid,
    };
    setgroups(&[gid]).map_err(|e| format!("setgroups() failed: {e}"))?;
    setgid(gid).map_err(|e| format!("setgid({gid}) failed: {e}"))?;
    setuid(u.uid).map_err(|e| format!("setuid({}) failed: {e}", u.uid))?;
    Ok(())
}

/// Who the workers will run as (uid, gid) when the master runs as root and so drops to
/// them; None otherwise (the workers keep the master's identity) or when unknown.
pub fn worker_identity(user: Option<&str>, group: Option<&str>) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let u = User::from_name(user.unwrap_or("nobody")).ok()??;
    let gid = match group {
        Some(g) => Group::from_name(g).ok()??.gid,
        None => u.gid,
    };
    Some((u.uid.as_raw(), gid.as_raw()))
}

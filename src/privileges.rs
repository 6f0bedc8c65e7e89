//! Dropping root (`[server] user` and `group`): the server binds its listeners as root, gives
//! the data directory to the user, then becomes that user for good, before it reads any file of
//! the data directory or any byte from a client.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// Room for one passwd or group entry (glibc's own default for these calls is smaller).
const LOOKUP_BUFFER: usize = 16 * 1024;

/// The user and group to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Whether the process runs as root (and so must choose a user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `user` (and `group`, else the user's own group) up in the system's databases.
pub fn look_up(user: &str, group: Option<&str>) -> Result<Identity, String> {
    let (uid, own_gid) = user_ids(user)?;
    let gid = match group {
        Some(group) => group_id(group)?,
        None => own_gid,
    };
    Ok(Identity {
        user: user.to_owned(),
        uid,
        gid,
    })
}

fn c_name(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("{name:?} contains a NUL byte"))
}

fn user_ids(user: &str) -> Result<(libc::uid_t, libc::gid_t), String> {
    let name = c_name(user)?;
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer's length is passed with it.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    found_or_why("user", user, status, found.is_null())?;
    Ok((entry.pw_uid, entry.pw_gid))
}

fn group_id(group: &str) -> Result<libc::gid_t, String> {
    let name = c_name(group)?;
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in user_ids.
    let status = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    found_or_why("group", group, status, found.is_null())?;
    Ok(entry.gr_gid)
}

/// What a `getpwnam_r`/`getgrnam_r` call said: found, no such entry, or an error.
fn found_or_why(kind: &str, name: &str, status: libc::c_int, missing: bool) -> Result<(), String> {
    match (status, missing) {
        (0, false) => Ok(()),
        (0, true) => Err(format!("no such {kind} {name:?}")),
        (error, _) => Err(format!(
            "cannot look up {kind} {name:?}: {}",
            io::Error::from_raw_os_error(error)
        )),
    }
}

/// Creates `dir` if needed and makes it and everything in it belong to `identity`, so that a
/// data directory created by an earlier run as root keeps working.
pub fn give_data_dir(dir: &Path, identity: &Identity) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    give(dir, identity)
}

fn give(path: &Path, identity: &Identity) -> io::Result<()> {
    // lchown: a symbolic link in the data directory must not hand its target over.
    std::os::unix::fs::lchown(path, Some(identity.uid), Some(identity.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), identity)?;
        }
    }
    Ok(())
}

/// Becomes `identity` for good: supplementary groups, group, then user (in that order: after
/// setuid the others are no longer allowed). Checks that root cannot be regained.
pub fn become_user(identity: &Identity) -> Result<(), String> {
    let fail = |step: &str| format!("cannot {step}: {}", io::Error::last_os_error());
    // SAFETY: plain system calls on integers and a one-element array that outlives the call.
    unsafe {
        if libc::setgroups(1, &identity.gid) != 0 {
            return Err(fail("set the supplementary groups"));
        }
        if libc::setgid(identity.gid) != 0 {
            return Err(fail(&format!("change to group {}", identity.gid)));
        }
        if libc::setuid(identity.uid) != 0 {
            return Err(fail(&format!("change to user {}", identity.user)));
        }
        if identity.uid != 0 && libc::setuid(0) == 0 {
            return Err("dropped privileges but could become root again".to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group_are_found() {
        assert_eq!(
            look_up("root", Some("root")),
            Ok(Identity {
                user: "root".into(),
                uid: 0,
                gid: 0
            })
        );
    }

    #[test]
    fn an_unknown_user_or_group_is_named() {
        assert_eq!(
            look_up("no-such-user-portcullis", None),
            Err("no such user \"no-such-user-portcullis\"".into())
        );
        assert_eq!(
            look_up("root", Some("no-such-group-portcullis")),
            Err("no such group \"no-such-group-portcullis\"".into())
        );
    }
}

//! Where a password the connection URL leaves out comes from: a secret file named by
//! `DATABASE_PASSWORD_FILE` (as containers are given secrets), else libpq's
//! conventions, `PGPASSWORD` and then the password file (`PGPASSFILE`, or
//! `~/.pgpass`), so that an operator keeps the password out of the URL, the process
//! list and `--help` as with psql.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// libpq's default port, which a password file line names when the URL names none.
const DEFAULT_PORT: u16 = 5432;

/// Where a session's password comes from when the URL has none.
pub struct Lookup<'a> {
    /// Each host the URL names with its port, in order: `localhost` for a socket folder.
    pub hosts: Vec<(String, u16)>,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password for `lookup`: the content of `DATABASE_PASSWORD_FILE` if set, else
/// `PGPASSWORD` if set, else the first line of the password file that matches the
/// first host it can (libpq looks per host; one session setting holds one password).
/// `Ok(None)` when there is none; an error for a secret file that cannot be read, or a
/// password file that others may read, which libpq too refuses to use.
pub fn find(lookup: &Lookup) -> Result<Option<String>, String> {
    if let Some(path) = std::env::var_os("DATABASE_PASSWORD_FILE") {
        return secret_file(Path::new(&path)).map(Some);
    }
    if let Some(password) = std::env::var_os("PGPASSWORD") {
        return Ok(Some(password.to_string_lossy().into_owned()));
    }
    let Some(path) = passfile_path() else {
        return Ok(None);
    };
    let Ok(metadata) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) \
             or less",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    Ok(lookup
        .hosts
        .iter()
        .find_map(|(host, port)| matching_password(&text, host, *port, lookup)))
}

/// A file holding the password alone, as Docker and Kubernetes mount a secret: read
/// whole but for a final line break. Its permissions are not checked as a password
/// file's are: a secret mounted for a container's unprivileged user is commonly
/// readable by every user of the container, of which there is one.
fn secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read DATABASE_PASSWORD_FILE {}: {e}", path.display()))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!(
            "DATABASE_PASSWORD_FILE {} is empty",
            path.display()
        ));
    }
    Ok(password.to_string())
}

fn passfile_path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// The password of the first line `hostname:port:database:username:password` that
/// matches, where `*` matches anything and `\` escapes `:` and `\`.
fn matching_password(text: &str, host: &str, port: u16, lookup: &Lookup) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), lookup.database, lookup.user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(fields)
        .find(|fields| {
            fields.len() == 5
                && fields
                    .iter()
                    .zip(wanted)
                    .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4))
}

fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields
                .last_mut()
                .into_iter()
                .for_each(|f| f.extend(chars.next())),
            ':' => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

/// The host and port pairs of a connection setting, as a password file names them.
pub fn hosts_of(config: &postgres::Config) -> Vec<(String, u16)> {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(_) => "localhost".to_string(),
            };
            // One port for every host, or one each, as libpq reads them.
            let port = ports
                .get(i)
                .or(ports.first())
                .copied()
                .unwrap_or(DEFAULT_PORT);
            (name, port)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup() -> Lookup<'static> {
        Lookup {
            hosts: vec![("db1".into(), 5432), ("db2".into(), 6000)],
            database: "exchange",
            user: "trader",
        }
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "# comment\n\
                    db1:5433:exchange:trader:wrong-port\n\
                    db1:5432:other:trader:wrong-database\n\
                    db1:*:exchange:trader:p\\:a\\\\ss\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            matching_password(file, "db1", 5432, &lookup()).as_deref(),
            Some("p:a\\ss")
        );
        assert_eq!(
            matching_password(file, "db2", 6000, &lookup()).as_deref(),
            Some("fallback")
        );
        assert_eq!(
            matching_password("db1:5432:exchange:trader\n", "db1", 5432, &lookup()),
            None
        );
    }

    #[test]
    fn hosts_get_their_own_port_or_the_one_port() {
        let config: postgres::Config = "postgres://u@a:1,b:2/d".parse().expect("a URL");
        assert_eq!(hosts_of(&config), [("a".into(), 1), ("b".into(), 2)]);
        let config: postgres::Config = "host=a,b port=7 user=u".parse().expect("a URL");
        assert_eq!(hosts_of(&config), [("a".into(), 7), ("b".into(), 7)]);
        let config: postgres::Config = "host=/run/postgresql user=u".parse().expect("a URL");
        assert_eq!(hosts_of(&config), [("localhost".into(), 5432)]);
    }
}

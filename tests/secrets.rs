//! The database password stays secret and can stay out of the URL: `--help` names the
//! variable that holds the URL but never its value, no error repeats the password, and
//! a URL without one takes it as psql would, from `PGPASSWORD` or the password file
//! (`PGPASSFILE`, or `~/.pgpass`), against a cluster of the test's own that asks for
//! passwords (scram-sha-256).

mod common;

use common::cluster::Cluster;
use common::{output_text, Server};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const PASSWORD: &str = "Sup3r-s3cret:pw";

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::server_bin());
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("DATABASE_PASSWORD_FILE")
        .env("HOME", "/nonexistent");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run exchange-server")
}

#[test]
fn help_names_the_url_variable_but_never_shows_its_password() {
    let url = format!("postgres://exchange:{PASSWORD}@127.0.0.1:1/exchange");
    for (program, args) in [
        (common::server_bin(), vec!["--help"]),
        (common::server_bin(), vec!["migrate", "--help"]),
        (common::client_bin(), vec!["audit", "--help"]),
    ] {
        let output = Command::new(&program)
            .args(&args)
            .env("DATABASE_URL", &url)
            .output()
            .expect("run --help");
        let text = output_text(&output);
        assert!(text.contains("DATABASE_URL"), "{program} {args:?}: {text}");
        assert!(!text.contains("s3cret"), "{program} {args:?}: {text}");
    }
}

/// A cluster that asks every TCP client for a password, with role `trader` (password
/// `PASSWORD`) owning database `exchange`, migrated.
fn password_cluster() -> Cluster {
    let cluster = Cluster::start(
        "secrets",
        &["--auth-local=trust", "--auth-host=scram-sha-256"],
        &[],
    );
    // Doubled quotes: the password goes inside an SQL string.
    cluster.sql(&format!(
        "CREATE ROLE trader LOGIN PASSWORD '{}'",
        PASSWORD.replace('\'', "''")
    ));
    cluster.sql("CREATE DATABASE exchange OWNER trader");
    cluster
}

#[test]
fn a_url_without_a_password_takes_it_as_psql_would_and_no_error_shows_it() {
    let cluster = password_cluster();
    let url = format!("postgres://trader@127.0.0.1:{}/exchange", cluster.port);
    let scratch = common::postgres_scratch_dir("secrets-files");

    // No password anywhere: refused, saying why.
    let none = server(&["migrate", "--database-url", &url], &[]);
    assert!(!none.status.success());
    assert!(
        output_text(&none).contains("password"),
        "{}",
        output_text(&none)
    );

    // PGPASSWORD.
    let by_variable = server(
        &["migrate", "--database-url", &url],
        &[("PGPASSWORD", PASSWORD)],
    );
    assert!(
        by_variable.status.success(),
        "{}",
        output_text(&by_variable)
    );

    // PGPASSFILE, its colon escaped as the file format wants; other lines first.
    let passfile = scratch.join("passfile");
    let line = format!(
        "127.0.0.1:{}:exchange:trader:{}",
        cluster.port,
        PASSWORD.replace(':', "\\:")
    );
    std::fs::write(&passfile, format!("other:5432:*:*:wrong\n{line}\n")).expect("passfile");
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let passfile_env = format!("PGPASSFILE={}", passfile.display());
    let by_file = server(
        &["migrate", "--database-url", &url],
        &[("PGPASSFILE", passfile.to_str().expect("a path"))],
    );
    assert!(by_file.status.success(), "{}", output_text(&by_file));
    // The whole server, too, and the audit.
    let served = Server::start_under(&["env", &passfile_env], &url, 2, &[]);
    assert!(served.send("<create/>").is_empty());
    drop(served);
    let audit = Command::new(common::client_bin())
        .args(["audit", "--database-url", &url])
        .env("PGPASSFILE", &passfile)
        .output()
        .expect("run the audit");
    assert!(audit.status.success(), "{}", output_text(&audit));

    // DATABASE_PASSWORD_FILE, a secret as Docker mounts one: the password alone, with a
    // line break, readable by all; it wins over PGPASSWORD.
    let secret = scratch.join("secret");
    std::fs::write(&secret, format!("{PASSWORD}\n")).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let secret_path = secret.to_str().expect("a path");
    let by_secret = server(
        &["migrate", "--database-url", &url],
        &[
            ("DATABASE_PASSWORD_FILE", secret_path),
            ("PGPASSWORD", "wrong"),
        ],
    );
    assert!(by_secret.status.success(), "{}", output_text(&by_secret));
    let missing = server(
        &["migrate", "--database-url", &url],
        &[("DATABASE_PASSWORD_FILE", "/nonexistent/secret")],
    );
    assert!(!missing.status.success());
    assert!(
        output_text(&missing).contains("cannot read DATABASE_PASSWORD_FILE /nonexistent/secret"),
        "{}",
        output_text(&missing)
    );

    // ~/.pgpass.
    std::fs::copy(&passfile, scratch.join(".pgpass")).expect("copy");
    let by_home = server(
        &["migrate", "--database-url", &url],
        &[("HOME", scratch.to_str().expect("a path"))],
    );
    assert!(by_home.status.success(), "{}", output_text(&by_home));

    // A password file that others may read is refused, as libpq refuses it.
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let readable = server(
        &["migrate", "--database-url", &url],
        &[("PGPASSFILE", passfile.to_str().expect("a path"))],
    );
    assert!(!readable.status.success());
    assert!(
        output_text(&readable).contains("group or world access"),
        "{}",
        output_text(&readable)
    );

    // Errors do not repeat the password: a wrong one, and a host that refuses.
    for wrong in [
        format!(
            "postgres://trader:{PASSWORD}x@127.0.0.1:{}/exchange",
            cluster.port
        ),
        format!("postgres://trader:{PASSWORD}@127.0.0.1:1/exchange"),
    ] {
        for args in [vec!["migrate"], vec!["--port", "0"]] {
            let mut args = args.clone();
            args.extend(["--database-url", &wrong]);
            let failed = server(&args, &[]);
            assert!(!failed.status.success());
            let text = output_text(&failed);
            assert!(!text.contains("s3cret"), "{args:?}: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(scratch);
}

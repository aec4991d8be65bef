//! docker-compose.yml's database set-up, run without Docker (there is no engine on the
//! development machines): `scripts/compose-secrets` makes the two password files; a
//! cluster that asks for passwords over TCP gets the owner the postgres image would
//! make from its secret, then runs `deploy/postgres-init/` as the image runs it; the
//! schema is migrated as the owner and the server serves as the restricted role, each
//! reading its password from its secret file as the compose file has them do.

mod common;

use common::cluster::Cluster;
use common::{audit_holds, output_text, serves_a_second_without_permission_errors, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn compose() -> String {
    std::fs::read_to_string("docker-compose.yml").expect("docker-compose.yml")
}

/// Runs `scripts/compose-secrets DIR` and returns what it printed.
fn make_secrets(dir: &Path) -> String {
    let output = Command::new("scripts/compose-secrets")
        .arg(dir)
        .output()
        .expect("run scripts/compose-secrets");
    assert!(output.status.success(), "{}", output_text(&output));
    output_text(&output)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_secrets_script_makes_two_passwords_once() {
    let dir = common::postgres_scratch_dir("compose-secrets-once").join("secrets");
    let first = make_secrets(&dir);
    assert!(first.contains("made"), "{first}");
    let owner = std::fs::read_to_string(dir.join("owner_password")).expect("owner");
    let server = std::fs::read_to_string(dir.join("server_password")).expect("server");
    assert!(owner.trim().len() >= 32 && server.trim().len() >= 32);
    assert_ne!(owner, server);
    assert_eq!(mode(&dir), 0o700, "the folder is private");
    assert_eq!(mode(&dir.join("owner_password")), 0o644);
    let again = make_secrets(&dir);
    assert!(!again.contains("made"), "{again}");
    assert_eq!(
        std::fs::read_to_string(dir.join("owner_password")).expect("owner"),
        owner,
        "a second run keeps the password the database was made with"
    );
    // The compose file takes them from where the script puts them by default.
    for name in ["owner_password", "server_password"] {
        assert!(compose().contains(&format!("file: .secrets/{name}")));
    }
    assert!(std::fs::read_to_string(".gitignore")
        .expect(".gitignore")
        .lines()
        .any(|l| l == "/.secrets"));
}

#[test]
fn the_compose_database_set_up_runs_the_server_as_its_restricted_role() {
    let compose = compose();
    assert!(!compose.contains("trust"), "no trust authentication");
    assert!(
        !compose.contains("POSTGRES_PASSWORD:"),
        "no password in the environment"
    );
    assert!(
        compose.contains("cpuset: \"${EXCHANGE_CPUSET:-}\""),
        "every CPU by default"
    );

    let secrets = common::postgres_scratch_dir("compose-secrets").join("secrets");
    make_secrets(&secrets);
    let owner_secret = secrets.join("owner_password");
    let server_secret = secrets.join("server_password");
    let owner_password = std::fs::read_to_string(&owner_secret).expect("owner password");

    // What the postgres image does from its environment: a superuser named
    // POSTGRES_USER with the password of POSTGRES_PASSWORD_FILE, owning POSTGRES_DB;
    // passwords over TCP.
    assert!(compose.contains("POSTGRES_USER: exchange_owner"));
    assert!(compose.contains("POSTGRES_DB: exchange"));
    assert!(compose.contains("POSTGRES_PASSWORD_FILE: /run/secrets/owner_password"));
    let cluster = Cluster::start(
        "compose",
        &["--auth-local=trust", "--auth-host=scram-sha-256"],
        &[],
    );
    cluster.sql(&format!(
        "CREATE ROLE exchange_owner SUPERUSER LOGIN PASSWORD '{}'",
        owner_password.trim()
    ));
    cluster.sql("CREATE DATABASE exchange OWNER exchange_owner");
    // Then each script of /docker-entrypoint-initdb.d, as the postgres user.
    let init = Command::new("deploy/postgres-init/10-server-role.sh")
        .env("POSTGRES_USER", "exchange_owner")
        .env("POSTGRES_DB", "exchange")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGPASSWORD", owner_password.trim())
        .env("EXCHANGE_SERVER_PASSWORD_FILE", &server_secret)
        .output()
        .expect("run the init script");
    assert!(init.status.success(), "{}", output_text(&init));

    // migrate, as the compose file's migrate service runs it.
    assert!(compose.contains("DATABASE_URL=postgres://exchange_owner@postgres:5432/exchange"));
    assert!(compose.contains("DATABASE_PASSWORD_FILE=/run/secrets/owner_password"));
    let migrated = Command::new(common::server_bin())
        .args([
            "migrate",
            "--database-url",
            &cluster.url("exchange_owner", "exchange"),
        ])
        .env("DATABASE_PASSWORD_FILE", &owner_secret)
        .output()
        .expect("migrate");
    assert!(migrated.status.success(), "{}", output_text(&migrated));

    // The server, as the server service runs it; without its secret it is refused.
    assert!(compose.contains("DATABASE_URL=postgres://exchange@postgres:5432/exchange"));
    assert!(compose.contains("DATABASE_PASSWORD_FILE=/run/secrets/server_password"));
    let server_url = cluster.url("exchange", "exchange");
    let refused = Command::new(common::server_bin())
        .args(["--port", "0", "--database-url", &server_url])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .output()
        .expect("the server without its password");
    assert!(!refused.status.success());
    assert!(
        output_text(&refused).contains("password"),
        "{}",
        output_text(&refused)
    );

    let secret_env = format!("DATABASE_PASSWORD_FILE={}", server_secret.display());
    let server = Server::start_under(&["env", &secret_env], &server_url, 2, &[]);
    serves_a_second_without_permission_errors(&server, "COMPOSE");
    drop(server);
    let owner_url = cluster.url(
        &format!("exchange_owner:{}", owner_password.trim()),
        "exchange",
    );
    audit_holds(&owner_url);

    // The role the init script made changes no schema.
    let mut as_server = postgres::Client::connect(
        &cluster.url(
            &format!(
                "exchange:{}",
                std::fs::read_to_string(&server_secret)
                    .expect("server password")
                    .trim()
            ),
            "exchange",
        ),
        postgres::NoTls,
    )
    .expect("connect as the server's role");
    let error = as_server
        .batch_execute("DROP TABLE orders")
        .expect_err("the server's role dropped a table");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error}");
}

/// The init script grants what docs/deployment.md's section on roles shows, line for
/// line, so that the page and the compose file cannot drift apart.
#[test]
fn the_init_script_grants_what_the_deployment_page_shows() {
    let script =
        std::fs::read_to_string("deploy/postgres-init/10-server-role.sh").expect("the script");
    let doc = std::fs::read_to_string("docs/deployment.md").expect("docs/deployment.md");
    let block = doc
        .split("## Roles")
        .nth(1)
        .and_then(|section| section.split("```sql\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("an sql block in the section on roles");
    assert!(
        script.contains(block),
        "deploy/postgres-init/10-server-role.sh lacks the page's grants:\n{block}"
    );
}

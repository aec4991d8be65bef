//! TLS to PostgreSQL, against a cluster of the test's own with `ssl = on`, a certificate
//! authority and a server certificate for `localhost` that the test makes, and pg_hba
//! refusing every connection without TLS. `sslmode=require` connects (and the server
//! serves); `verify-full` with `sslrootcert` connects by the name the certificate
//! carries and is refused at an address it does not; `verify-ca` accepts that address;
//! a certificate from another authority is refused; without TLS the cluster refuses.

mod common;

use common::cluster::Cluster;
use common::{output_text, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes a certificate authority and a server certificate for `localhost` signed by
/// it into `dir`; returns the authority's certificate file.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut authority = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test authority"));
    let authority_key = KeyPair::generate().expect("a CA key");
    let authority_cert = authority.self_signed(&authority_key).expect("the CA");
    let server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let server_key = KeyPair::generate().expect("a server key");
    let issuer = Issuer::from_params(&authority, &authority_key);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .expect("the server's certificate");
    let files = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.crt")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&files.0, authority_cert.pem()).expect("ca.pem");
    std::fs::write(&files.1, server_cert.pem()).expect("server.crt");
    std::fs::write(&files.2, server_key.serialize_pem()).expect("server.key");
    // PostgreSQL refuses a key that others may read, and runs as postgres.
    std::fs::set_permissions(&files.2, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if common::netns::is_root() {
        for file in [&files.0, &files.1, &files.2] {
            common::netns::run("chown", &["postgres:", file.to_str().expect("a path")]);
        }
    }
    files
}

fn migrate(url: &str) -> Output {
    Command::new(common::server_bin())
        .args(["migrate", "--database-url", url])
        .output()
        .expect("run migrate")
}

#[test]
fn tls_modes_check_the_certificate_as_libpq_does() {
    let dir = common::postgres_scratch_dir("tls-certificates");
    let (authority, certificate, key) = certificates(&dir, "ours");
    let (other_authority, _, _) = certificates(&dir, "theirs");
    let cluster = Cluster::start(
        "tls",
        &[],
        &[
            "ssl = on",
            &format!("ssl_cert_file = '{}'", certificate.display()),
            &format!("ssl_key_file = '{}'", key.display()),
        ],
    );
    // Over TCP, TLS or nothing.
    std::fs::write(
        cluster.data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .expect("pg_hba.conf");
    cluster.sql("SELECT pg_reload_conf()");
    cluster.sql("CREATE DATABASE exchange");

    let port = cluster.port;
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/exchange?{query}");
    let root = |path: &Path| format!("sslrootcert={}", path.display());

    let refused = migrate(&url("127.0.0.1", "sslmode=disable"));
    assert!(
        !refused.status.success(),
        "without TLS: {}",
        output_text(&refused)
    );
    assert!(
        output_text(&refused).contains("no encryption"),
        "{}",
        output_text(&refused)
    );

    let required = url("127.0.0.1", "sslmode=require");
    let migrated = migrate(&required);
    assert!(
        migrated.status.success(),
        "require: {}",
        output_text(&migrated)
    );
    let server = Server::start(&required, 2, &[]);
    assert!(server.send("<create/>").is_empty());
    drop(server);

    let full = url(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&authority)),
    );
    let checked = migrate(&full);
    assert!(
        checked.status.success(),
        "verify-full: {}",
        output_text(&checked)
    );

    let wrong_name = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", root(&authority)),
    );
    let refused = migrate(&wrong_name);
    assert!(
        !refused.status.success(),
        "verify-full at an address the certificate lacks"
    );
    assert!(
        output_text(&refused).contains("not valid for name"),
        "{}",
        output_text(&refused)
    );

    let chain_only = url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", root(&authority)),
    );
    let checked = migrate(&chain_only);
    assert!(
        checked.status.success(),
        "verify-ca: {}",
        output_text(&checked)
    );

    let stranger = url(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&other_authority)),
    );
    let refused = migrate(&stranger);
    assert!(!refused.status.success(), "another authority's root");
    assert!(
        output_text(&refused).to_lowercase().contains("unknown"),
        "{}",
        output_text(&refused)
    );
    let _ = std::fs::remove_dir_all(dir);
}

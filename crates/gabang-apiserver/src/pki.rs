//! First-start credentials: a CA, a serving certificate, a bearer token and an admin
//! kubeconfig under the data dir. Later starts reuse what is there.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::ServeError;

/// What the server needs from the data dir to serve TLS and check tokens.
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub token: String,
    pub kubeconfig: PathBuf,
}

fn io_err(path: &Path, e: std::io::Error) -> ServeError {
    ServeError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Writes `data` to `path` atomically (temp file + rename) with `mode`.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ServeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(data).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn tls_err(e: rcgen::Error) -> ServeError {
    ServeError::Tls(e.to_string())
}

/// Loads the credentials under `dir`, creating whatever is missing.
pub fn ensure(dir: &Path, listen: SocketAddr) -> Result<Credentials, ServeError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let ca_crt = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let crt = dir.join("server.crt");
    let key = dir.join("server.key");
    let token_file = dir.join("admin.token");
    let kubeconfig = dir.join("admin.kubeconfig");

    if !(ca_crt.exists() && crt.exists() && key.exists() && token_file.exists()) {
        let ca_kp = KeyPair::generate().map_err(tls_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gabang-ca");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let ca_cert = ca_params.self_signed(&ca_kp).map_err(tls_err)?;

        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if let Some(h) = hostname() {
            names.push(h);
        }
        if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
            names.push(listen.ip().to_string());
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        for n in &names {
            let san = match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(tls_err)?),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gabang-apiserver");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let kp = KeyPair::generate().map_err(tls_err)?;
        let cert = params.signed_by(&kp, &ca_cert, &ca_kp).map_err(tls_err)?;

        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex_encode(&raw);

        write_atomic(&ca_key, ca_kp.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&ca_crt, ca_cert.pem().as_bytes(), 0o644)?;
        write_atomic(&key, kp.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&crt, cert.pem().as_bytes(), 0o644)?;
        write_atomic(&token_file, token.as_bytes(), 0o600)?;
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| io_err(p, e));
    let ca_pem = read(&ca_crt)?;
    let token = read(&token_file)?.trim().to_string();
    let host = if listen.ip().is_unspecified() {
        format!("127.0.0.1:{}", listen.port())
    } else {
        listen.to_string()
    };
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gabang\n  cluster:\n    server: https://{host}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: gabang\n  context:\n    cluster: gabang\n    user: admin\n    namespace: default\ncurrent-context: gabang\n",
        ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
    );
    write_atomic(&kubeconfig, kc.as_bytes(), 0o600)?;
    Ok(Credentials {
        cert_pem: read(&crt)?,
        key_pem: read(&key)?,
        ca_pem,
        token,
        kubeconfig,
    })
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

//! The development certificate: `<data dir>/tls/cert.pem` + `key.pem`, created on first start.
//!
//! ```text
//!   both files there, cert younger than RENEW_AFTER ──▶ reuse them (same bytes every start)
//!   otherwise ──▶ generate (ECDSA P-256, SANs: hostname, localhost, 127.0.0.1, ::1)
//!                 key.pem.tmp (0600) ─fsync─rename─▶ key.pem
//!                 cert.pem.tmp (0644) ─fsync─rename─▶ cert.pem     then fsync the directory
//! ```
//!
//! The key is renamed into place before the certificate, so a crash in between leaves a key
//! without a certificate, which the next start treats as "not there" and replaces. Neither file
//! is ever half written.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::{PemPair, TlsError};

/// How long a generated certificate is valid: 825 days, the longest some clients (Apple's) accept
/// for a server certificate even when the user trusts it by hand.
const VALID_DAYS: i64 = 825;
/// A generated certificate older than this (by file time) is replaced at start.
const RENEW_AFTER: Duration = Duration::from_secs(730 * 24 * 60 * 60);

/// Returns the paths of the self-signed pair in `dir`, creating or renewing it first if needed.
pub(super) fn ensure(dir: &Path, hostname: &str) -> Result<PemPair, TlsError> {
    let pair = PemPair {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if is_usable(&pair) {
        return Ok(pair);
    }
    generate(dir, &pair, hostname)?;
    tracing::info!(
        cert = %pair.cert.display(),
        hostname,
        "created a self-signed TLS certificate (configure [tls] cert and key for production)"
    );
    Ok(pair)
}

/// Both files exist and the certificate is not due for renewal.
fn is_usable(pair: &PemPair) -> bool {
    if !pair.key.is_file() {
        return false;
    }
    let Ok(modified) = fs::metadata(&pair.cert).and_then(|meta| meta.modified()) else {
        return false;
    };
    // A clock set back makes the age negative: the file is young.
    SystemTime::now()
        .duration_since(modified)
        .map_or(true, |age| age < RENEW_AFTER)
}

fn generate(dir: &Path, pair: &PemPair, hostname: &str) -> Result<(), TlsError> {
    let generate_error = |source| TlsError::Generate {
        hostname: hostname.to_owned(),
        source,
    };
    let key = KeyPair::generate().map_err(generate_error)?;
    let params = params(hostname).map_err(generate_error)?;
    let cert = params.self_signed(&key).map_err(generate_error)?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    write_atomically(&pair.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&pair.cert, cert.pem().as_bytes(), 0o644)?;
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })
}

fn params(hostname: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut names = Vec::new();
    let hostname = hostname.trim_end_matches('.');
    if let Ok(ip) = hostname.parse::<IpAddr>() {
        names.push(SanType::IpAddress(ip));
    } else if !hostname.is_empty() && !hostname.eq_ignore_ascii_case("localhost") {
        // A host name rcgen cannot encode (not ASCII) is left out; localhost still works.
        if let Ok(name) = hostname.to_ascii_lowercase().try_into() {
            names.push(SanType::DnsName(name));
        }
    }
    names.push(SanType::DnsName("localhost".try_into()?));
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if !names.contains(&SanType::IpAddress(ip)) {
            names.push(SanType::IpAddress(ip));
        }
    }
    params.subject_alt_names = names;

    let mut subject = DistinguishedName::new();
    let common_name = if hostname.is_empty() {
        "localhost"
    } else {
        hostname
    };
    subject.push(DnType::CommonName, common_name);
    subject.push(DnType::OrganizationName, "wasmail self-signed");
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let today = days_since_epoch(SystemTime::now());
    let (year, month, day) = civil_from_days(today - 1);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = civil_from_days(today + VALID_DAYS);
    params.not_after = rcgen::date_time_ymd(year, month, day);
    Ok(params)
}

/// Writes `path` through `<path>.tmp` with `mode`, fsyncs it and renames it over `path`.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let write = || -> io::Result<()> {
        // A leftover from a crash may have other permissions; `mode` applies only on creation.
        match fs::remove_file(tmp) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn days_since_epoch(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs() / 86_400).unwrap_or(i64::MAX / 2),
        Err(_) => 0,
    }
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let (year, month, day) = wasmail_types::date::civil_from_days(days);
    // In range by construction: month 1..=12, day 1..=31, year near the present.
    (
        i32::try_from(year).unwrap_or(9999),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn created_once_with_a_private_key_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        let pair = ensure(&tls, "mail.example.org").expect("create");
        let mode = fs::metadata(&pair.key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let cert = fs::read(&pair.cert).expect("cert");
        let key = fs::read(&pair.key).expect("key");
        assert!(!tls.join("key.pem.tmp").exists());

        let again = ensure(&tls, "mail.example.org").expect("reuse");
        assert_eq!(fs::read(&again.cert).expect("cert"), cert);
        assert_eq!(fs::read(&again.key).expect("key"), key);

        // A key without its certificate (a crash between the two renames) is replaced.
        fs::remove_file(&pair.cert).expect("remove");
        let renewed = ensure(&tls, "mail.example.org").expect("regenerate");
        assert_ne!(fs::read(&renewed.key).expect("key"), key);
    }

    #[test]
    fn names_cover_the_host_and_loopback() {
        let host = params("Mail.Example.org").expect("params");
        let names: Vec<String> = host
            .subject_alt_names
            .iter()
            .map(|san| format!("{san:?}"))
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names[0].contains("mail.example.org"), "{names:?}");
        assert!(names[1].contains("localhost"), "{names:?}");
        let local = params("localhost").expect("params");
        assert_eq!(local.subject_alt_names.len(), 3);
        let ip = params("127.0.0.1").expect("params");
        assert_eq!(ip.subject_alt_names.len(), 3);
    }
}

//! The fault suite (issue 12; SPEC §3, §9, §10): the real binary on loopback
//! with real certificates, under the faults a platform team tries before
//! trusting a webhook that sits on every pod start. With
//! `failurePolicy: Ignore`, every request the server loses is a pod that
//! starts uninstrumented and unvalidated, so the bar is zero.
//!
//! Bounded to about a minute on 2 cores: checks run two at a time (the test
//! harness's default on such a machine), and the one that saturates every core
//! on purpose (slow policies) runs alone, so it neither disturbs the others'
//! timings nor is disturbed by them.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_otel-admission");

/// Checks share the two cores; the one that burns them all takes this alone.
static CORES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// === certificates ===

/// A CA that stays the same across rotations, as cert-manager's does.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A serving pair in PEM, and the serial it carries.
struct Leaf {
    cert: String,
    key: String,
    serial: Vec<u8>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "otel-admission fault suite");
    dn
}

impl TestCa {
    fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::default();
        p.distinguished_name = dn("fault suite CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = now - time::Duration::days(3);
        p.not_after = now + time::Duration::days(30);
        let issuer =
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key")).expect("ca");
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for localhost and 127.0.0.1 with serial `[0x11, n]`, valid
    /// from `now + from` to `now + to`.
    fn leaf(&self, n: u8, from: time::Duration, to: time::Duration) -> Leaf {
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
        p.distinguished_name = dn("localhost");
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.not_before = now + from;
        p.not_after = now + to;
        let serial = vec![0x11, n];
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            serial,
        }
    }

    /// Valid from five minutes ago for thirty days.
    fn good(&self, n: u8) -> Leaf {
        self.leaf(n, -time::Duration::minutes(5), time::Duration::days(30))
    }
}

/// A directory laid out like a kubelet Secret volume:
/// `..<timestamp>/{tls.crt,tls.key}`, `..data -> ..<timestamp>`,
/// `tls.crt -> ..data/tls.crt`, `tls.key -> ..data/tls.key`.
struct SecretVolume {
    root: PathBuf,
    current: String,
    generation: u32,
}

impl SecretVolume {
    fn new(root: &Path, cert: &[u8], key: &[u8]) -> Self {
        std::fs::create_dir_all(root).expect("volume dir");
        let mut v = Self {
            root: root.to_owned(),
            current: String::new(),
            generation: 0,
        };
        let first = v.write_generation(cert, key);
        std::os::unix::fs::symlink(&first, root.join("..data")).expect("..data");
        std::os::unix::fs::symlink("..data/tls.crt", root.join("tls.crt")).expect("tls.crt");
        std::os::unix::fs::symlink("..data/tls.key", root.join("tls.key")).expect("tls.key");
        v.current = first;
        v
    }

    fn cert(&self) -> PathBuf {
        self.root.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.root.join("tls.key")
    }

    fn write_generation(&mut self, cert: &[u8], key: &[u8]) -> String {
        self.generation += 1;
        let g = self.generation;
        let name = format!(
            "..2026_12_01_00_{:02}_{:02}.{:09}",
            g / 60,
            g % 60,
            g * 7919
        );
        let dir = self.root.join(&name);
        std::fs::create_dir(&dir).expect("timestamped dir");
        std::fs::write(dir.join("tls.crt"), cert).expect("tls.crt");
        std::fs::write(dir.join("tls.key"), key).expect("tls.key");
        name
    }

    /// The kubelet's atomic update: a new timestamped directory, a temporary
    /// symlink renamed over `..data`, then the old directory removed.
    fn swap(&mut self, cert: &[u8], key: &[u8]) {
        let next = self.write_generation(cert, key);
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&next, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.root.join("..data")).expect("rename ..data");
        std::fs::remove_dir_all(self.root.join(&self.current)).expect("remove old generation");
        self.current = next;
    }
}

/// The serial of the certificate a fresh handshake sees.
async fn served_serial(addr: SocketAddr) -> Vec<u8> {
    let der = common::served_cert(addr).await;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("served cert parses");
    x509.raw_serial().to_vec()
}

// === the binary ===

/// One `otel-admission serve` process.
struct Instance {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

struct Serve<'a> {
    cwd: &'a Path,
    cert: PathBuf,
    key: PathBuf,
    listen: String,
    args: Vec<String>,
    log_format: &'static str,
    /// The process' `ulimit -n`, when set.
    fd_limit: Option<u32>,
}

impl<'a> Serve<'a> {
    fn new(cwd: &'a Path, cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cwd,
            cert,
            key,
            listen: "127.0.0.1:0".into(),
            args: Vec::new(),
            log_format: "json",
            fd_limit: None,
        }
    }

    fn log_format(mut self, format: &'static str) -> Self {
        self.log_format = format;
        self
    }

    fn fd_limit(mut self, n: u32) -> Self {
        self.fd_limit = Some(n);
        self
    }

    fn arg(mut self, flag: &str, value: impl AsRef<str>) -> Self {
        self.args.push(flag.to_string());
        self.args.push(value.as_ref().to_string());
        self
    }

    fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr.to_string();
        self
    }

    async fn start(&self) -> Instance {
        let mut cmd = match self.fd_limit {
            // The shell sets the limit and `exec`s: the pid stays the server's.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("serve")
            .args(["--listen", &self.listen, "--admin-listen", "127.0.0.1:0"])
            .args(["--cluster", "off", "--log-format", self.log_format])
            .arg("--tls-cert")
            .arg(&self.cert)
            .arg("--tls-key")
            .arg(&self.key);
        if !self.args.iter().any(|a| a == "--policies") {
            // An empty directory: a named one that does not exist is an error.
            let empty = self.cwd.join("no-policies");
            std::fs::create_dir_all(&empty).expect("empty policy dir");
            cmd.arg("--policies").arg(empty);
        }
        let mut child = cmd
            .args(&self.args)
            .current_dir(self.cwd)
            .env("KUBECONFIG", self.cwd.join("no-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn otel-admission");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let started = Instant::now();
        let (webhook, admin) = loop {
            let found = log.lock().unwrap().iter().find_map(|l| {
                let (webhook, admin) = match serde_json::from_str::<Value>(l) {
                    Ok(v) if v["message"] == "serving" => (
                        v["webhook"].as_str()?.to_string(),
                        v["admin"].as_str()?.to_string(),
                    ),
                    Ok(_) => return None,
                    // The text format: `... serving webhook=ADDR admin=ADDR ...`.
                    Err(_) if l.contains(": serving ") => {
                        let field = |name: &str| {
                            l.split(' ')
                                .find_map(|w| w.strip_prefix(name))
                                .map(str::to_string)
                        };
                        (field("webhook=")?, field("admin=")?)
                    }
                    Err(_) => return None,
                };
                Some((webhook.parse().ok()?, admin.parse().ok()?))
            });
            if let Some(a) = found {
                break a;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "otel-admission exited before serving ({status}): {}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no 'serving' line after 30 s: {}",
                log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let inst = Instance {
            child,
            webhook,
            admin,
            log,
        };
        let ready = common::eventually(Duration::from_secs(20), || async {
            matches!(admin_get(inst.admin, "/readyz").await, Ok((200, _)))
        })
        .await;
        assert!(ready, "not ready after 20 s: {}", inst.log_tail(30));
        inst
    }
}

impl Instance {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.webhook.port())
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM")
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit; `None` if it is still running after `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn metrics(&self) -> String {
        match admin_get(self.admin, "/metrics").await {
            Ok((200, text)) => text,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// A series' value on `/metrics`, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    fn rss_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field).unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| chain(&e))?))
}

/// A port free right now, for instances that must come back on the same
/// one. Taken below the ephemeral range, so that no client socket of a
/// concurrent check can take it while an instance restarts.
fn free_port() -> SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let start = 10_000u16;
    let span = low.saturating_sub(start).max(1);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed =
        u64::from(std::process::id()) * 7919 + NEXT.fetch_add(1, Ordering::Relaxed) * 104_729;
    for i in 0..u64::from(span) {
        let port = start + ((seed + i * 31) % u64::from(span)) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port in {start}..{low}");
}

/// A pair under `dir` (not a Secret layout) for checks that do not rotate.
fn plain_pair(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf) {
    let leaf = ca.good(1);
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, &leaf.cert).expect("tls.crt");
    std::fs::write(&k, &leaf.key).expect("tls.key");
    (c, k)
}

// === clients ===

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    /// ALPN h2 and http/1.1, as the API server offers.
    Auto,
    Http1,
    Http2,
}

fn client(ca: &TestCa, proto: Proto, keep_alive: bool) -> reqwest::Client {
    client_pem(&ca.pem(), proto, keep_alive)
}

fn client_pem(ca_pem: &str, proto: Proto, keep_alive: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10));
    b = match proto {
        Proto::Auto => b,
        Proto::Http1 => b.http1_only(),
        Proto::Http2 => b.http2_prior_knowledge(),
    };
    if !keep_alive {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("client")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

fn review_body(uid: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&common::review(uid, "CREATE", common::pod())).expect("review json"),
    )
}

enum Outcome {
    Ok,
    /// No connection: refused or the handshake did not complete. The API
    /// server retries these on another endpoint.
    NotConnected(String),
    /// The client's connection closed while the request still sat in its
    /// queue: hyper cancels it before writing a byte ("the message was never
    /// even started"), so it never reached the server. This is RFC 9113
    /// §8.7's unprocessed request, which Go's HTTP/2 transport (the API
    /// server's) retries on a new connection; our clients retry it too.
    NotSent(String),
    /// A request went out on a connection and no HTTP answer came back.
    Lost(String),
    Status(u16, String),
}

async fn post(client: &reqwest::Client, url: &str, body: Bytes) -> Outcome {
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(_) if status == 200 => Outcome::Ok,
                Ok(b) => Outcome::Status(status, String::from_utf8_lossy(&b).into_owned()),
                Err(e) => Outcome::Lost(format!("body after status {status}: {}", chain(&e))),
            }
        }
        Err(e) if e.is_connect() => Outcome::NotConnected(chain(&e)),
        Err(e) if never_sent(&e) => Outcome::NotSent(chain(&e)),
        Err(e) => Outcome::Lost(chain(&e)),
    }
}

/// Whether hyper's client gave the request back unsent: only its dispatcher
/// builds a `Canceled` error, and only for a request it never began to write.
fn never_sent(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Posts like the API server's client: a request that never left the
/// client's queue is sent again, on a new connection.
async fn post_retrying_unsent(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    t: &mut Tally,
) -> Outcome {
    for _ in 0..3 {
        match post(client, url, body.clone()).await {
            Outcome::NotSent(_) => t.not_sent += 1,
            other => return other,
        }
    }
    post(client, url, body).await
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    not_connected: u64,
    /// Requests sent again because the first attempt never left the client.
    not_sent: u64,
    lost: u64,
    bad_status: u64,
    /// Lost requests and bad statuses, the first few.
    samples: Vec<String>,
    /// The first connection failure, for context.
    not_connected_sample: Option<String>,
}

impl Tally {
    fn record(&mut self, o: Outcome, label: &str) {
        let sample = match o {
            Outcome::Ok => {
                self.ok += 1;
                return;
            }
            Outcome::NotConnected(e) => {
                self.not_connected += 1;
                self.not_connected_sample
                    .get_or_insert_with(|| format!("{label}: not connected: {e}"));
                return;
            }
            Outcome::NotSent(e) | Outcome::Lost(e) => {
                self.lost += 1;
                format!("{label}: lost: {e}")
            }
            Outcome::Status(s, b) => {
                self.bad_status += 1;
                format!("{label}: HTTP {s}: {}", b.trim())
            }
        };
        if self.samples.len() < 5 {
            self.samples.push(sample);
        }
    }

    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.not_connected += o.not_connected;
        self.not_sent += o.not_sent;
        self.lost += o.lost;
        self.bad_status += o.bad_status;
        if self.not_connected_sample.is_none() {
            self.not_connected_sample = o.not_connected_sample;
        }
        for s in o.samples {
            if self.samples.len() < 8 {
                self.samples.push(s);
            }
        }
    }

    fn failed_counting_unconnected(&self) -> u64 {
        self.not_connected + self.lost + self.bad_status
    }
}

/// One load client: its protocol, and whether it opens a new connection (a
/// new client, so a new TLS handshake) for every request.
#[derive(Clone, Debug)]
struct Spec {
    label: String,
    proto: Proto,
    fresh: bool,
}

/// Clients posting AdmissionReviews back to back until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(String, Tally)>>,
}

impl Load {
    fn start(specs: Vec<Spec>, ca: &TestCa, url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pem = ca.pem();
        let tasks = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let (stop, url, pem) = (stop.clone(), url.clone(), pem.clone());
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    let mut n = 0u64;
                    let kept = client_pem(&pem, spec.proto, true);
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let fresh;
                        let c = if spec.fresh {
                            fresh = client_pem(&pem, spec.proto, false);
                            &fresh
                        } else {
                            &kept
                        };
                        let body = review_body(&format!("load-{i}-{n}"));
                        let o = post_retrying_unsent(c, &url, body, &mut t).await;
                        if matches!(o, Outcome::NotConnected(_)) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        t.record(o, &spec.label);
                    }
                    (spec.label, t)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients; the total, and per client `label: ok/lost`.
    async fn finish(self) -> (Tally, String) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        let mut per = Vec::new();
        for t in self.tasks {
            let (label, t) = t.await.expect("load task");
            per.push(format!(
                "{label}: {} ok/{} lost/{} bad status/{} not connected/{} unsent, sent again",
                t.ok, t.lost, t.bad_status, t.not_connected, t.not_sent
            ));
            all.merge(t);
        }
        (all, per.join("; "))
    }
}

/// Both protocols, kept and fresh connections: for rotations.
fn every_kind() -> Vec<Spec> {
    let mut v = mixed(Proto::Http1);
    v.truncate(3);
    v.extend(mixed(Proto::Auto).into_iter().take(3));
    v
}

/// Keep-alive clients of `proto`, and clients that open a new connection
/// per request, so both reused connections and new handshakes are under test.
fn mixed(proto: Proto) -> Vec<Spec> {
    (0..6)
        .map(|i| {
            let fresh = i % 3 == 2;
            Spec {
                label: format!(
                    "{proto:?}/{}#{i}",
                    if fresh { "fresh" } else { "keep-alive" }
                ),
                proto,
                fresh,
            }
        })
        .collect()
}

// === raw connections ===

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn raw_connector(ca: &TestCa, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("ca der"))
        .expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn raw_tls(addr: SocketAddr, ca: &TestCa, alpn: &[&[u8]]) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let _ = tcp.set_nodelay(true);
    raw_connector(ca, alpn)
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("tls handshake")
}

fn http1_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Reads one HTTP/1.1 response: status, head, body.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Result<(u16, String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) => return Err(format!("EOF after {} bytes of response", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {} bytes of response", buf.len())),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body = buf[head_end..].to_vec();
    match len {
        Some(len) => {
            while body.len() < len {
                match s.read(&mut chunk).await {
                    Ok(0) => return Err(format!("EOF after {} of {len} body bytes", body.len())),
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("{e} after {} of {len} body bytes", body.len())),
                }
            }
        }
        None => {
            let _ = s.read_to_end(&mut body).await;
        }
    }
    Ok((status, head, body))
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// A HEADERS frame (END_HEADERS, not END_STREAM) for `POST /mutate` on stream 1.
fn h2_headers_frame() -> Vec<u8> {
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https (static table)
    block.push(0x44); // :path, literal with indexing
    block.push(7);
    block.extend_from_slice(b"/mutate");
    block.push(0x41); // :authority
    block.push(9);
    block.extend_from_slice(b"127.0.0.1");
    let len = block.len();
    let mut f = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        0x4,
        0,
        0,
        0,
        1,
    ];
    f.extend_from_slice(&block);
    f
}

/// Reads (and ignores) whatever the server sends until it closes the
/// connection; returns when that happened, or `None` after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|_| start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// === 1. certificate rotation ===

/// SPEC §10: the pair is re-read through the kubelet's `..data` swap, under
/// load, and new handshakes see it within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_rotation_through_data_swap_under_load() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let first = ca.good(1);
    let mut vol = SecretVolume::new(
        &dir.path().join("certs"),
        first.cert.as_bytes(),
        first.key.as_bytes(),
    );
    let server = Serve::new(dir.path(), vol.cert(), vol.key()).start().await;
    assert_eq!(served_serial(server.webhook).await, first.serial);

    let load = Load::start(every_kind(), &ca, server.url("/mutate"));
    let mut seen_after = Vec::new();
    for n in 2..=3u8 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let next = ca.good(n);
        vol.swap(next.cert.as_bytes(), next.key.as_bytes());
        let swapped = Instant::now();
        let mut served = Vec::new();
        while swapped.elapsed() < Duration::from_secs(3) {
            served = served_serial(server.webhook).await;
            if served == next.serial {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let took = swapped.elapsed();
        assert_eq!(
            served,
            next.serial,
            "rotation {}: the new serial {:02x?} was not served 3 s after the ..data swap (still {:02x?}); log:\n{}",
            n - 1,
            next.serial,
            served,
            server.log_tail(20)
        );
        seen_after.push(took);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (tally, per_client) = load.finish().await;
    let failed = tally.failed_counting_unconnected();
    eprintln!(
        "rotation: {} ok, {failed} failed ({per_client}); new serial served after {:?} ms",
        tally.ok,
        seen_after.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    assert!(
        tally.ok > 50,
        "the load barely ran: {} ok requests",
        tally.ok
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during 2 rotations ({per_client}); first connection failure: {:?}; samples: {:#?}",
        tally.ok + failed,
        tally.not_connected_sample,
        tally.samples
    );
    for (i, took) in seen_after.iter().enumerate() {
        assert!(
            *took <= Duration::from_secs(1),
            "rotation {}: new serial first served {} ms after the swap (limit 1000 ms)",
            i + 1,
            ms(*took)
        );
    }
}

// === 2. bad pairs ===

/// SPEC §10: expired, not yet valid, mismatched and garbage pairs are each
/// refused and counted, and the old certificate keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cert_pairs_are_refused_counted_and_the_old_one_serves() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let good = ca.good(1);
    let mut vol = SecretVolume::new(
        &dir.path().join("certs"),
        good.cert.as_bytes(),
        good.key.as_bytes(),
    );
    let server = Serve::new(dir.path(), vol.cert(), vol.key()).start().await;
    let series = "otel_admission_tls_reload_errors_total";
    let load = Load::start(every_kind(), &ca, server.url("/mutate"));

    let expired = ca.leaf(2, -time::Duration::days(2), -time::Duration::days(1));
    let not_yet = ca.leaf(3, time::Duration::hours(1), time::Duration::days(30));
    let other_key = ca.good(4);
    let mismatched = Leaf {
        cert: other_key.cert.clone(),
        key: ca.good(5).key,
        serial: other_key.serial.clone(),
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("expired", expired.cert.into(), expired.key.into()),
        (
            "mismatched key",
            mismatched.cert.into(),
            mismatched.key.into(),
        ),
        (
            "garbage",
            b"\x00\x01 not a PEM \xff\xfe".to_vec(),
            b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n".to_vec(),
        ),
        // Last: today it is accepted, and would then be the "old" pair.
        (
            "not yet valid (notBefore +1h)",
            not_yet.cert.into(),
            not_yet.key.into(),
        ),
    ];
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (name, cert, key) in cases {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.metric(series).await;
        vol.swap(&cert, &key);
        let swapped = Instant::now();
        while swapped.elapsed() < Duration::from_secs(2) && server.metric(series).await <= before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let any further reloads of the same swap happen before judging.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let after = server.metric(series).await;
        let served = served_serial(server.webhook).await;
        report.push(format!(
            "{name}: {series} {before} -> {after}, served serial {served:02x?}"
        ));
        if after != before + 1.0 {
            problems.push(format!(
                "{name}: {series} went {before} -> {after}, expected +1"
            ));
        }
        if served != good.serial {
            problems.push(format!(
                "{name}: a new handshake sees serial {served:02x?}, not the old {:02x?}",
                good.serial
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tally, per_client) = load.finish().await;
    let failed = tally.failed_counting_unconnected();
    eprintln!(
        "bad pairs: {} ok, {failed} failed ({per_client})\n{}",
        tally.ok,
        report.join("\n")
    );
    if failed > 0 {
        problems.push(format!(
            "{failed} of {} requests failed ({per_client}); first connection failure: {:?}; samples: {:#?}",
            tally.ok + failed,
            tally.not_connected_sample,
            tally.samples
        ));
    }
    assert!(
        problems.is_empty(),
        "bad pairs:\n{}\nlog:\n{}",
        problems.join("\n"),
        server.log_tail(12)
    );
}

// === 3. SIGTERM under load ===

/// Load through a SIGTERM with a 1 s shutdown delay: every request that went
/// out on an established connection gets an HTTP answer. Connections refused
/// after the listener closed are the client's failover, and fine.
async fn sigterm_under_load(proto: Proto) {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let mut server = Serve::new(dir.path(), cert, key)
        .arg("--shutdown-delay", "1s")
        .start()
        .await;
    let load = Load::start(mixed(proto), &ca, server.url("/mutate"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_term = metric_value(
        &server.metrics().await,
        "otel_admission_requests_total{endpoint=\"mutate\",result=\"allowed\"}",
    );
    server.sigterm();
    let termed = Instant::now();
    let exit = server.wait_exit(Duration::from_secs(15)).await;
    let exited_after = termed.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tally, per_client) = load.finish().await;
    let lost = tally.lost + tally.bad_status;
    eprintln!(
        "SIGTERM {proto:?}: {} answered, {} not connected (after the listener closed), {lost} lost ({per_client}); exit after {} ms; {} answered before SIGTERM",
        tally.ok,
        tally.not_connected,
        ms(exited_after),
        before_term
    );
    let exit =
        exit.unwrap_or_else(|| panic!("no exit 15 s after SIGTERM; log:\n{}", server.log_tail(20)));
    assert!(exit.success(), "exit status {exit}");
    assert!(
        tally.ok as f64 > before_term + 20.0,
        "the load did not run through the shutdown delay: {} answered in all, {before_term} before SIGTERM",
        tally.ok
    );
    assert_eq!(
        lost,
        0,
        "{proto:?}: {lost} of {} requests sent on established connections got no HTTP answer ({} lost, {} bad status; {per_client}); samples: {:#?}",
        tally.ok + lost,
        tally.lost,
        tally.bad_status,
        tally.samples
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_http1_drops_nothing() {
    sigterm_under_load(Proto::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_http2_drops_nothing() {
    sigterm_under_load(Proto::Http2).await;
}

/// Issue 12's deterministic repro: `--shutdown-delay 1s`, SIGTERM, 10 TLS
/// connections opened at +0.7 s, a POST on each at +1.2 s (after the drain
/// began): each connection was accepted before the drain, so each gets its
/// answer. Half offer no ALPN (the server must detect the version), half
/// offer http/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_serves_connections_accepted_just_before_it() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let mut server = Serve::new(dir.path(), cert, key)
        .arg("--shutdown-delay", "1s")
        .start()
        .await;
    let addr = server.webhook;
    server.sigterm();
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep_until(t0 + Duration::from_millis(700)).await;
    let ca = Arc::new(ca);
    let conns = futures::future::join_all((0..10).map(|i| {
        let ca = ca.clone();
        async move {
            let alpn: &[&[u8]] = if i % 2 == 0 { &[] } else { &[b"http/1.1"] };
            (i, raw_tls(addr, &ca, alpn).await)
        }
    }))
    .await;
    let opened = t0.elapsed();
    tokio::time::sleep_until(t0 + Duration::from_millis(1200)).await;
    let results = futures::future::join_all(conns.into_iter().map(|(i, mut s)| async move {
        let kind = if i % 2 == 0 {
            "no ALPN"
        } else {
            "ALPN http/1.1"
        };
        let body = review_body(&format!("drain-{i}"));
        if let Err(e) = s.write_all(&http1_request("/mutate", &body)).await {
            return (kind, Err(format!("write: {e}")));
        }
        let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut s)).await;
        (
            kind,
            match r {
                Ok(Ok((status, _, _))) => Ok(status),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("no response in 5 s".into()),
            },
        )
    }))
    .await;
    let _ = server.wait_exit(Duration::from_secs(15)).await;
    let ok = results.iter().filter(|(_, r)| *r == Ok(200)).count();
    let summary: Vec<String> = results.iter().map(|(k, r)| format!("{k}: {r:?}")).collect();
    eprintln!(
        "drain repro: connections open at +{} ms; {ok}/10 answered 200",
        ms(opened)
    );
    assert_eq!(
        ok,
        10,
        "{ok}/10 connections accepted at +0.7 s after SIGTERM (delay 1 s) got a 200 for a POST at +1.2 s:\n{}",
        summary.join("\n")
    );
}

// === 4. rolling restart ===

/// Two instances behind a client that, like the API server, retries on the
/// other one only when it could not connect, and sends again a request its
/// HTTP/2 connection handed back unwritten; a request that got an answer, or
/// that was written and not answered, is not retried. A, then B, are restarted three times under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_behind_a_failing_over_client_loses_nothing() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let addrs = [free_port(), free_port()];
    let serve = |addr: SocketAddr| {
        Serve::new(dir.path(), cert.clone(), key.clone())
            .listen(addr)
            .arg("--shutdown-delay", "500ms")
    };
    let mut instances = [serve(addrs[0]).start().await, serve(addrs[1]).start().await];
    let urls: Arc<Vec<String>> = Arc::new(
        addrs
            .iter()
            .map(|a| format!("https://127.0.0.1:{}/mutate", a.port()))
            .collect(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let failovers = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let proto = if i < 3 { Proto::Http1 } else { Proto::Http2 };
            let client = client(&ca, proto, true);
            let (stop, urls, failovers) = (stop.clone(), urls.clone(), failovers.clone());
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let label = format!("{proto:?}#{i}");
                    let body = review_body(&format!("roll-{i}-{n}"));
                    let o =
                        match post_retrying_unsent(&client, &urls[0], body.clone(), &mut t).await {
                            Outcome::NotConnected(a) => {
                                failovers.fetch_add(1, Ordering::Relaxed);
                                match post_retrying_unsent(&client, &urls[1], body, &mut t).await {
                                    Outcome::NotConnected(b) => Outcome::NotConnected(format!(
                                        "neither answered: A: {a}; B: {b}"
                                    )),
                                    other => other,
                                }
                            }
                            other => other,
                        };
                    t.record(o, &label);
                }
                (proto, t)
            })
        })
        .collect();

    let mut restarts = Vec::new();
    for _round in 0..3 {
        for which in 0..2 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let began = Instant::now();
            instances[which].sigterm();
            let exit = instances[which].wait_exit(Duration::from_secs(15)).await;
            assert!(
                exit.is_some_and(|s| s.success()),
                "instance {} did not exit cleanly after SIGTERM: {exit:?}; log:\n{}",
                ["A", "B"][which],
                instances[which].log_tail(20)
            );
            instances[which] = serve(addrs[which]).start().await;
            restarts.push(ms(began.elapsed()));
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let mut by_proto = Vec::new();
    let mut all = Tally::default();
    for t in tasks {
        let (proto, t) = t.await.expect("client task");
        by_proto.push((proto, t.ok, t.failed_counting_unconnected(), t.not_sent));
        all.merge(t);
    }
    let failed = all.failed_counting_unconnected();
    eprintln!(
        "rolling restart: {} admissions ok, {failed} failed, {} failovers; restarts took {restarts:?} ms; per client (proto, ok, failed, unsent and sent again): {by_proto:?}",
        all.ok,
        failovers.load(Ordering::Relaxed)
    );
    assert!(all.ok > 100, "the load barely ran: {} ok", all.ok);
    assert_eq!(
        failed,
        0,
        "{failed} of {} admissions failed over 6 restarts (per client (proto, ok, failed, unsent and sent again): {by_proto:?}); first unanswered by both: {:?}; samples: {:#?}",
        all.ok + failed,
        all.not_connected_sample,
        all.samples
    );
}

// === 5. slow policies ===

const SLOW_REGO: &str = r#"package kubernetes.admission.slow

import rego.v1

# Burns CPU until the evaluation time limit: 4e8 iterations, nothing allocated.
deny contains msg if {
	n := count([1 | some i in numbers.range(1, 20000); some j in numbers.range(1, 20000); i * j == -1])
	msg := sprintf("unreachable %d", [n])
}
"#;

/// Policies at their time limit on every core: the admin listener still
/// answers (`/healthz` p99 < 100 ms), and the deadline answers in time and is
/// counted as `result="timeout"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_policies_do_not_starve_health_and_timeouts_are_answered_and_counted() {
    let _cores = CORES.write().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).expect("policies");
    std::fs::write(pol.join("slow.rego"), SLOW_REGO).expect("slow.rego");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!("policies:\n  dir: {}\n  evalTimeout: 2s\n", pol.display()),
    )
    .expect("config");
    let deadline = Duration::from_secs(1);
    let server = Serve::new(dir.path(), cert, key)
        .arg("--config", cfg.display().to_string())
        .arg("--policies", pol.display().to_string())
        .arg("--request-timeout", "1s")
        .start()
        .await;
    let timeouts = "otel_admission_requests_total{endpoint=\"validate\",result=\"timeout\"}";
    let before = server.metric(timeouts).await;

    let stop = Arc::new(AtomicBool::new(false));
    let url = server.url("/validate");
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (client, stop, url) = (client(&ca, Proto::Auto, true), stop.clone(), url.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let start = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(review_body(&format!("slow-{i}-{n}")))
                        .timeout(Duration::from_secs(15))
                        .send()
                        .await;
                    let status = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            Ok(s)
                        }
                        Err(e) => Err(chain(&e)),
                    };
                    answers.push((start.elapsed(), status));
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let mut lat = Vec::new();
    let mut health_errors = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(6) {
        let start = Instant::now();
        match health
            .get(format!("http://{}/healthz", server.admin))
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 200 => {}
            _ => health_errors += 1,
        }
        let took = start.elapsed();
        lat.push(took);
        tokio::time::sleep(Duration::from_millis(20).saturating_sub(took)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.expect("worker"));
    }
    let after = server.metric(timeouts).await;
    lat.sort();
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        *lat.last().unwrap(),
    );
    let late: Vec<_> = answers
        .iter()
        .filter(|(d, _)| *d > deadline + Duration::from_secs(1))
        .collect();
    let unanswered: Vec<_> = answers.iter().filter(|(_, s)| s.is_err()).collect();
    let mut slowest: Vec<u128> = answers.iter().map(|(d, _)| ms(*d)).collect();
    slowest.sort_unstable();
    let statuses: std::collections::BTreeMap<String, usize> =
        answers.iter().fold(Default::default(), |mut m, (_, s)| {
            *m.entry(format!("{s:?}")).or_default() += 1;
            m
        });
    eprintln!(
        "slow policies: /healthz n={} p50={} ms p99={} ms max={} ms errors={health_errors}; /validate answers={} late(>{} ms)={} unanswered={} slowest={:?} ms statuses={statuses:?}; timeouts counted {before} -> {after}",
        lat.len(),
        ms(p50),
        ms(p99),
        ms(max),
        answers.len(),
        ms(deadline + Duration::from_secs(1)),
        late.len(),
        unanswered.len(),
        &slowest[slowest.len().saturating_sub(5)..],
    );
    let mut problems = Vec::new();
    if p99 >= Duration::from_millis(100) || health_errors > 0 {
        problems.push(format!(
            "/healthz under slow policies: p99 {} ms (limit 100), p50 {} ms, max {} ms, {health_errors} errors of {}",
            ms(p99),
            ms(p50),
            ms(max),
            lat.len()
        ));
    }
    if !late.is_empty() || !unanswered.is_empty() {
        problems.push(format!(
            "/validate with a {} ms deadline: {} of {} answered after {} ms, {} unanswered; slowest {:?} ms",
            ms(deadline),
            late.len(),
            answers.len(),
            ms(deadline + Duration::from_secs(1)),
            unanswered.len(),
            &slowest[slowest.len().saturating_sub(5)..]
        ));
    }
    if after <= before {
        problems.push(format!(
            "{timeouts} did not increase ({before} -> {after}) although every evaluation outlasts the deadline"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === 6. hostile bodies ===

/// (a) A Content-Length over the 6 MiB limit, the whole body written before
/// the response is read: the client reads the 413, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_oversized_body_written_in_full_still_reads_413() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let server = Serve::new(dir.path(), cert, key).start().await;
    let len = 7 * 1024 * 1024;
    let mut results = Vec::new();
    let alpns: [&[&[u8]]; 2] = [&[b"http/1.1"], &[]];
    for alpn in alpns {
        let mut s = raw_tls(server.webhook, &ca, alpn).await;
        let head = format!(
            "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        );
        let outcome = tokio::time::timeout(Duration::from_secs(15), async {
            let mut written = 0usize;
            let mut write_err = None;
            if let Err(e) = s.write_all(head.as_bytes()).await {
                write_err = Some(format!("writing headers: {e}"));
            }
            let chunk = vec![b' '; 64 * 1024];
            while write_err.is_none() && written < len {
                match s.write_all(&chunk).await {
                    Ok(()) => written += chunk.len(),
                    Err(e) => write_err = Some(format!("{e} after {written} body bytes")),
                }
            }
            if write_err.is_none()
                && let Err(e) = s.flush().await
            {
                write_err = Some(format!("flush: {e}"));
            }
            let resp = read_response(&mut s).await;
            (written, write_err, resp)
        })
        .await;
        results.push(match outcome {
            Err(_) => Err("no outcome in 15 s (server neither read the body nor answered)".into()),
            Ok((_, None, Ok((413, _, body)))) if !body.is_empty() => Ok(()),
            Ok((w, e, r)) => Err(format!(
                "wrote {w} of {len} body bytes (write error: {e:?}); response: {:?}",
                r.map(|(s, _, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            )),
        });
    }
    let (ok, _) = results.iter().fold(
        (0, 0),
        |(a, b), r| {
            if r.is_ok() { (a + 1, b) } else { (a, b + 1) }
        },
    );
    eprintln!("oversized body: {ok}/2 read the 413: {results:?}");
    let still = post(
        &client(&ca, Proto::Auto, false),
        &server.url("/mutate"),
        review_body("after-413"),
    )
    .await;
    assert!(matches!(still, Outcome::Ok), "server stopped serving");
    assert!(
        results.iter().all(Result::is_ok),
        "a 7 MiB body (limit 6 MiB) written in full before reading: ALPN http/1.1: {:?}; no ALPN: {:?}",
        results[0],
        results[1]
    );
}

/// A 3 MiB pod: 100,000 env vars on one container.
fn huge_review() -> Bytes {
    let env: Vec<Value> = (0..100_000)
        .map(|i| json!({"name": format!("ENV{i:05}"), "value": "x"}))
        .collect();
    let mut pod = common::pod();
    pod["spec"]["containers"][0]["env"] = Value::Array(env);
    Bytes::from(serde_json::to_vec(&common::review("huge", "CREATE", pod)).expect("json"))
}

/// (b) A 3 MiB pod is answered within the API server's 10 s, and the peak
/// RSS stays within 64 MiB of idle.
async fn huge_pod(path: &str) {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    // The shipped policy pack, so /validate has constraints to evaluate.
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let server = Serve::new(dir.path(), cert, key)
        .arg("--policies", policies)
        .start()
        .await;
    let c = client(&ca, Proto::Auto, true);
    // Warm up lazily built state with a small pod, then measure idle.
    let warm = post(&c, &server.url(path), review_body("warm")).await;
    assert!(matches!(warm, Outcome::Ok), "warm-up request failed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.rss_kib("VmRSS");
    let body = huge_review();
    let size = body.len();

    let pid = server.pid();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let start = Instant::now();
    let r = c
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let answer = match r {
        Ok(r) => {
            let s = r.status().as_u16();
            let b = r.bytes().await.map(|b| b.len());
            format!("HTTP {s}, {b:?} bytes")
        }
        Err(e) => format!("no answer: {}", chain(&e)),
    };
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sampling.store(false, Ordering::Relaxed);
    let sampled = sampler.join().expect("sampler");
    let peak = sampled.max(server.rss_kib("VmHWM"));
    let over_mib = peak.saturating_sub(idle) as f64 / 1024.0;
    eprintln!(
        "huge pod on {path}: {size} bytes, {answer} in {} ms; RSS idle {} MiB, peak {} MiB (+{over_mib:.1} MiB)",
        ms(took),
        idle / 1024,
        peak / 1024
    );
    let mut problems = Vec::new();
    if !answer.starts_with("HTTP 200") || took > Duration::from_secs(10) {
        problems.push(format!(
            "{path} of a {size}-byte pod: {answer} after {} ms (want HTTP 200 within 10000 ms)",
            ms(took)
        ));
    }
    if over_mib > 64.0 {
        problems.push(format!(
            "{path} of a {size}-byte pod: peak RSS {} MiB is {over_mib:.1} MiB above idle {} MiB (limit 64 MiB)",
            peak / 1024,
            idle / 1024
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_huge_pod_on_mutate_bounded_in_time_and_memory() {
    huge_pod("/mutate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_huge_pod_on_validate_bounded_in_time_and_memory() {
    huge_pod("/validate").await;
}

/// (c) Malformed JSON, a wrong kind and a wrong content type get 400/415
/// with a message, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_malformed_requests_get_400_or_415_with_a_message() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let server = Serve::new(dir.path(), cert, key).start().await;
    let c = client(&ca, Proto::Auto, true);
    let wrong_kind = serde_json::to_vec(&common::pod()).expect("json");
    let wrong_version = {
        let mut r = common::review("v1beta1", "CREATE", common::pod());
        r["apiVersion"] = json!("admission.k8s.io/v1beta1");
        serde_json::to_vec(&r).expect("json")
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "truncated JSON",
            "application/json",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionRev"#.to_vec(),
            400,
        ),
        (
            "not JSON",
            "application/json",
            b"\xff\xfe<xml/>".to_vec(),
            400,
        ),
        ("empty body", "application/json", Vec::new(), 400),
        (
            "a Pod, not an AdmissionReview",
            "application/json",
            wrong_kind,
            400,
        ),
        (
            "admission.k8s.io/v1beta1",
            "application/json",
            wrong_version,
            400,
        ),
        ("text/plain", "text/plain", review_body("ct").to_vec(), 415),
    ];
    let mut problems = Vec::new();
    for path in ["/mutate", "/validate"] {
        for (name, ct, body, want) in &cases {
            let r = c
                .post(server.url(path))
                .header("content-type", *ct)
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if status != *want || text.trim().is_empty() {
                        problems.push(format!(
                            "{path} {name}: HTTP {status} {text:?}, want {want} with a message"
                        ));
                    }
                }
                Err(e) => problems.push(format!("{path} {name}: no answer: {}", chain(&e))),
            }
        }
        if !matches!(
            post(&c, &server.url(path), review_body("after")).await,
            Outcome::Ok
        ) {
            problems.push(format!(
                "{path}: a valid review after the bad ones was not a 200"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// (d) A client trickling its request one byte per second is cut by the
/// header-read timeout (2 s here), and other clients are not slowed.
async fn slow_headers(alpn: &'static [u8]) {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let server = Serve::new(dir.path(), cert, key)
        .arg("--header-read-timeout", "2s")
        .start()
        .await;
    let limit = Duration::from_secs(2);
    let s = raw_tls(server.webhook, &ca, &[alpn]).await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickle: Vec<u8> = if alpn == b"h2" {
        wr.write_all(H2_PREFACE).await.expect("preface");
        wr.write_all(H2_SETTINGS).await.expect("settings");
        h2_headers_frame()
    } else {
        http1_request("/mutate", &review_body("slow"))
    };
    let writer = tokio::spawn(async move {
        for b in trickle {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let others = {
        let (c, url) = (client(&ca, Proto::Auto, false), server.url("/mutate"));
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut failed = 0;
            for i in 0..30 {
                let start = Instant::now();
                if !matches!(
                    post(&c, &url, review_body(&format!("other-{i}"))).await,
                    Outcome::Ok
                ) {
                    failed += 1;
                }
                worst = worst.max(start.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (failed, worst)
        })
    };
    let cut = closed_within(&mut rd, limit + Duration::from_secs(3)).await;
    writer.abort();
    let (failed, worst) = others.await.expect("others");
    let proto = if alpn == b"h2" { "HTTP/2" } else { "HTTP/1.1" };
    eprintln!(
        "slow headers {proto}: cut after {:?} ms; others: {failed}/30 failed, slowest {} ms",
        cut.map(ms),
        ms(worst)
    );
    let mut problems = Vec::new();
    match cut {
        Some(d) if d <= limit + Duration::from_millis(1500) => {}
        Some(d) => problems.push(format!(
            "{proto} client sending 1 byte/s: cut after {} ms, header-read timeout is {} ms (allowed up to {} ms)",
            ms(d),
            ms(limit),
            ms(limit + Duration::from_millis(1500))
        )),
        None => problems.push(format!(
            "{proto} client sending 1 byte/s: still connected after {} ms with a {} ms header-read timeout",
            ms(limit + Duration::from_secs(3)),
            ms(limit)
        )),
    }
    if failed > 0 || worst > Duration::from_secs(1) {
        problems.push(format!(
            "other clients during the slow one: {failed}/30 failed, slowest {} ms",
            ms(worst)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_headers_http1_cut_by_header_read_timeout() {
    slow_headers(b"http/1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_headers_http2_cut_by_header_read_timeout() {
    slow_headers(b"h2").await;
}

/// An HTTP/2 client that sent its preface and then no request. When
/// `responsive`, it acknowledges SETTINGS and PINGs as a pooled connection
/// in a real client does (but does not close on GOAWAY); otherwise it never
/// reads at all.
async fn idle_h2(addr: SocketAddr, ca: &TestCa, responsive: bool) -> tokio::task::JoinHandle<()> {
    let mut s = raw_tls(addr, ca, &[b"h2"]).await;
    s.write_all(H2_PREFACE).await.expect("preface");
    s.write_all(H2_SETTINGS).await.expect("settings");
    s.flush().await.expect("flush");
    tokio::spawn(async move {
        if !responsive {
            // Hold the connection open, silent, until the test ends.
            let _s = s;
            std::future::pending::<()>().await;
            return;
        }
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return;
            }
            let (kind, flags) = (head[3], head[4]);
            let reply = match (kind, flags & 1) {
                (4, 0) => vec![0, 0, 0, 4, 1, 0, 0, 0, 0],
                (6, 0) => {
                    let mut f = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    f.extend_from_slice(&payload);
                    f
                }
                _ => continue,
            };
            if s.write_all(&reply).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    })
}

/// How long after `since` the process exited; `None` if not within `wait`.
async fn exit_after(s: &mut Instance, wait: Duration, since: Instant) -> Option<Duration> {
    s.wait_exit(wait).await.map(|_| since.elapsed())
}

/// (e) Connections that never send a request (an idle HTTP/2 connection,
/// responsive or not, and a TCP connection that never sends a ClientHello)
/// do not hold the exit more than ~2 s past the drain. The header-read
/// timeout is left at its 10 s default, the grace period at its 25 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_idle_connections_do_not_hold_the_shutdown() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let delay = Duration::from_millis(500);
    let serve =
        || Serve::new(dir.path(), cert.clone(), key.clone()).arg("--shutdown-delay", "500ms");
    let (a, b, c) = (serve(), serve(), serve());
    let (mut s1, mut s2, mut s3) = tokio::join!(a.start(), b.start(), c.start());
    let h2_responsive = idle_h2(s1.webhook, &ca, true).await;
    let h2_silent = idle_h2(s2.webhook, &ca, false).await;
    let tcp = tokio::net::TcpStream::connect(s3.webhook)
        .await
        .expect("tcp");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let limit = delay + Duration::from_millis(2500);
    let wait = Duration::from_secs(12);
    for s in [&s1, &s2, &s3] {
        s.sigterm();
    }
    let termed = Instant::now();
    let (e1, e2, e3) = tokio::join!(
        exit_after(&mut s1, wait, termed),
        exit_after(&mut s2, wait, termed),
        exit_after(&mut s3, wait, termed)
    );
    h2_responsive.abort();
    h2_silent.abort();
    drop(tcp);
    let cases = [
        ("an idle HTTP/2 connection that answers PINGs", e1),
        ("an idle HTTP/2 connection that never reads", e2),
        ("a TCP connection that never sent a ClientHello", e3),
    ];
    let show = |e: Option<Duration>| {
        e.map_or(format!("> {} ms (still running)", ms(wait)), |d| {
            format!("{} ms", ms(d))
        })
    };
    eprintln!(
        "idle at shutdown (delay {} ms): {}",
        ms(delay),
        cases
            .iter()
            .map(|(w, e)| format!("{w}: exit {}", show(*e)))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let problems: Vec<String> = cases
        .iter()
        .filter(|(_, e)| e.is_none_or(|d| d > limit))
        .map(|(what, e)| {
            format!(
                "with {what}, the process exited {} after SIGTERM (shutdown delay {} ms; allowed {} ms)",
                show(*e),
                ms(delay),
                ms(limit)
            )
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === 7. strangers' connections (issue 27) ===

/// This process' (soft, hard) limits on open files (`/proc/self/limits`).
fn own_fd_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let mut words = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|w| {
            if w == "unlimited" {
                Some(u64::MAX)
            } else {
                w.parse().ok()
            }
        });
    let soft = words.next().flatten().unwrap_or(1024);
    (soft, words.next().flatten().unwrap_or(soft))
}

/// This process' soft limit on open files, raised to the hard limit first
/// (with util-linux's `prlimit`, when there is one) where it is low.
fn own_fd_limit() -> u64 {
    let (soft, hard) = own_fd_limits();
    if soft < 8192 && hard > soft {
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    own_fd_limits().0
}

/// `n` TCP connections to `addr` that never send a byte, 256 being opened
/// at a time; those that could not connect within 3 s are left out.
async fn silent_connections(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    use futures::StreamExt as _;
    futures::stream::iter(0..n)
        .map(|_| async move {
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await
        })
        .buffer_unordered(256)
        .filter_map(|r| async move { r.ok().and_then(Result::ok) })
        .collect()
        .await
}

/// How many of `conns` the server has not closed by `deadline`.
async fn still_open(conns: Vec<tokio::net::TcpStream>, deadline: Instant) -> usize {
    let left = deadline.saturating_duration_since(Instant::now());
    let waits = conns.into_iter().map(|mut c| async move {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(left, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        usize::from(closed.is_err())
    });
    futures::future::join_all(waits).await.into_iter().sum()
}

/// Issue 27: at `ulimit -n 512`, thousands of TCP connections that never
/// send a byte, on each port at once, used to take every descriptor: the
/// admin port never closed them, so `accept` failed on both listeners and
/// `/mutate` and `/healthz` went unanswered for good. Now each listener has
/// its own cap within the limit, a full one closes its oldest silent
/// connection to make room, and the admin port cuts silent and idle
/// keep-alive connections at the header-read timeout (2 s here). Fresh
/// `/healthz` and `/mutate` (a real AdmissionReview over TLS) connections
/// made throughout are all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_silent_connections_leave_mutate_and_health_answering() {
    // Alone: thousands of connections opened as fast as the cores allow.
    let _cores = CORES.write().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let hrt = Duration::from_secs(2);
    let server = Serve::new(dir.path(), cert, key)
        .arg("--header-read-timeout", "2s")
        .fd_limit(512)
        .start()
        .await;
    // Each port gets thousands, as far as this process' own limit allows.
    let per_port = 3000.min((own_fd_limit().saturating_sub(400) / 2) as usize);
    assert!(
        per_port >= 600,
        "this process may open only {} files",
        own_fd_limit()
    );

    let probing = Arc::new(AtomicBool::new(true));
    let probes = {
        let (probing, pem, url, admin) = (
            probing.clone(),
            ca.pem(),
            server.url("/mutate"),
            server.admin,
        );
        tokio::spawn(async move {
            let (mut n, mut failures, mut slowest) = (0u32, Vec::new(), Duration::ZERO);
            while probing.load(Ordering::Relaxed) || n < 4 {
                n += 1;
                let start = Instant::now();
                match admin_get(admin, "/healthz").await {
                    Ok((200, _)) => {}
                    other => failures.push(format!("/healthz #{n}: {other:?}")),
                }
                let fresh = client_pem(&pem, Proto::Auto, false);
                match post(&fresh, &url, review_body(&format!("probe-{n}"))).await {
                    Outcome::Ok => {}
                    Outcome::NotConnected(e) | Outcome::NotSent(e) | Outcome::Lost(e) => {
                        failures.push(format!("/mutate #{n}: {e}"))
                    }
                    Outcome::Status(s, b) => failures.push(format!("/mutate #{n}: HTTP {s} {b}")),
                }
                slowest = slowest.max(start.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (n, failures, slowest)
        })
    };
    let flood_start = Instant::now();
    let (hooks, admins) = tokio::join!(
        silent_connections(server.webhook, per_port),
        silent_connections(server.admin, per_port)
    );
    let flooded = Instant::now();
    // A keep-alive admin client, answered, then left idle.
    let mut keep_alive = None;
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = tokio::net::TcpStream::connect(server.admin)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let status = read_response(&mut c).await.map(|(s, _, _)| s);
        keep_alive = Some(c);
        status
    })
    .await
    .unwrap_or_else(|_| Err("no answer in 5 s".into()));
    let idle_since = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    probing.store(false, Ordering::Relaxed);
    let (probed, failures, slowest) = probes.await.expect("probes");

    // The flood is let go. (Some of it never reached the server: while the
    // accept queue was full the kernel dropped the handshakes' last ACKs, and
    // those clients hold connections the server has not seen yet.)
    let (hooks_n, admins_n) = (hooks.len(), admins.len());
    drop((hooks, admins));
    // Fresh silent connections on the admin port: each closed by the
    // header-read timeout (they used to stay open for good).
    let batch = silent_connections(server.admin, 20).await;
    let batch_n = batch.len();
    let waiting_since = Instant::now();
    let limit = waiting_since + hrt + Duration::from_millis(1500);
    let (batch_open, idle_cut) = tokio::join!(still_open(batch, limit), async {
        match keep_alive.as_mut() {
            Some(c) => closed_within(c, hrt + Duration::from_millis(1500)).await,
            None => None,
        }
    });
    // How long the keep-alive connection stayed open after its answer.
    let idle_cut = idle_cut.map(|d| waiting_since - idle_since + d);
    let shed = |l: &str, r: &str| {
        format!("otel_admission_connections_shed_total{{listener=\"{l}\",reason=\"{r}\"}}")
    };
    let metrics = server.metrics().await;
    let (hook_evicted, admin_evicted) = (
        metric_value(&metrics, &shed("webhook", "evicted")),
        metric_value(&metrics, &shed("admin", "evicted")),
    );
    let log = server.log.lock().unwrap().clone();
    let caps = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "serving")
        .map(|v| {
            (
                v["webhook_max_connections"].clone(),
                v["admin_max_connections"].clone(),
            )
        });
    let accept_failures = log.iter().filter(|l| l.contains("accept failed")).count();
    eprintln!(
        "silent connections at ulimit -n 512 (caps {caps:?}): {hooks_n} to the TLS port, {admins_n} to the admin port, opened in {} ms; \
         {probed} probes each of /healthz and /mutate, {} failed, slowest pair {} ms; \
         evicted: {hook_evicted} webhook, {admin_evicted} admin; {batch_open} of {batch_n} silent admin connections still open {} ms later; \
         idle keep-alive cut after {:?} ms; {accept_failures} failed accepts",
        ms(flooded - flood_start),
        failures.len(),
        ms(slowest),
        ms(limit - waiting_since),
        idle_cut.map(ms),
    );
    let mut problems = Vec::new();
    if !failures.is_empty() {
        problems.push(format!(
            "{} of {} probe requests failed during the flood: {:#?}",
            failures.len(),
            2 * probed,
            &failures[..failures.len().min(6)]
        ));
    }
    if batch_open > 0 || batch_n < 20 {
        problems.push(format!(
            "{batch_open} of {batch_n} silent admin connections still open {} ms after they were made (header-read timeout {} ms)",
            ms(limit - waiting_since),
            ms(hrt)
        ));
    }
    if answered != Ok(200) {
        problems.push(format!(
            "keep-alive GET /healthz after the flood: {answered:?}"
        ));
    }
    match idle_cut {
        Some(d) if d >= hrt / 2 && d <= hrt + Duration::from_millis(1500) => {}
        other => problems.push(format!(
            "an idle keep-alive admin connection should be closed after the header-read timeout ({} ms) of idleness: closed after {:?} ms",
            ms(hrt),
            other.map(ms)
        )),
    }
    if hook_evicted == 0.0 || admin_evicted == 0.0 {
        problems.push(format!(
            "expected evictions counted on both listeners: webhook {hook_evicted}, admin {admin_evicted}"
        ));
    }
    if caps != Some((json!(392), json!(56))) {
        problems.push(format!(
            "the caps at 512 descriptors should be 392 (TLS) and 56 (admin): {caps:?}"
        ));
    }
    if accept_failures > 0 {
        problems.push(format!(
            "{accept_failures} accepts failed (out of descriptors): {}",
            log.iter()
                .find(|l| l.contains("accept failed"))
                .cloned()
                .unwrap_or_default()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === 8. forged log lines (issue 27) ===

/// Quotes request content in its message, so that policy-violation lines
/// carry it too.
const ECHO_REGO: &str = r#"package kubernetes.admission.echo

import rego.v1

deny contains msg if {
	r := input.request
	msg := sprintf("echo uid=%v ns=%v name=%v user=%v kind=%v image=%v", [
		r.uid,
		object.get(r, "namespace", ""),
		object.get(r, "name", ""),
		object.get(r, ["userInfo", "username"], ""),
		object.get(r, ["kind", "kind"], ""),
		object.get(r, ["object", "spec", "containers", 0, "image"], ""),
	])
}
"#;

/// The characters that end, rewrite or hide a line.
const LINE_BREAKERS: [char; 6] = ['\n', '\r', '\t', '\u{1b}', '\0', '\u{2028}'];

/// A value that, written raw, ends its line with `c` and starts a forged one
/// in each format, dated 1999.
fn forged(c: char, i: usize) -> String {
    format!(
        "v{i}{c}1999-12-31T23:59:59.999999Z ERROR otel_admission::server::webhook: forged uid=forged{c}\
         {{\"timestamp\":\"1999-12-31T23:59:59.999999Z\",\"level\":\"ERROR\",\"message\":\"forged\"}}{c}[2J"
    )
}

/// Every request-controlled field that reaches a log line: one review per
/// field and character, with the field set to [`forged`] and a plain uid
/// elsewhere. Returns (label, uid, review).
fn forging_reviews() -> Vec<(String, String, Value)> {
    let fields = [
        "uid",
        "namespace",
        "name",
        "kind",
        "user",
        "operation",
        "annotation",
        "image",
    ];
    let mut out = Vec::new();
    for (ci, c) in LINE_BREAKERS.into_iter().enumerate() {
        for (fi, field) in fields.into_iter().enumerate() {
            let i = ci * fields.len() + fi;
            let bad = forged(c, i);
            let uid = if field == "uid" {
                bad.clone()
            } else {
                format!("plain-{i}")
            };
            let mut pod = common::pod();
            let mut review = common::review(&uid, "CREATE", Value::Null);
            let r = &mut review["request"];
            match field {
                "namespace" => r["namespace"] = json!(bad),
                "name" => {
                    r["name"] = json!(bad);
                    pod["metadata"]["name"] = json!(bad);
                }
                "kind" => r["kind"]["kind"] = json!(bad),
                "user" => r["userInfo"]["username"] = json!(bad),
                "operation" => r["operation"] = json!(format!("CREATE{bad}")),
                // Names an Instrumentation that does not exist: a skip whose
                // detail quotes the annotation.
                "annotation" => {
                    pod["metadata"]["annotations"] =
                        json!({"instrumentation.opentelemetry.io/inject-java": bad})
                }
                "image" => pod["spec"]["containers"][0]["image"] = json!(bad),
                _ => {}
            }
            r["object"] = pod;
            out.push((format!("{field} with {c:?}"), uid, review));
        }
    }
    out
}

/// The value of `name=` in a text log line, unescaped.
fn text_field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[at..];
    let Some(inner) = rest.strip_prefix('"') else {
        return Some(rest.split(' ').next().unwrap_or_default().to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let code = u32::from_str_radix(hex.strip_prefix('{')?, 16).ok()?;
                    out.push(char::from_u32(code)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
}

/// A character that may not appear raw in a log line.
fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Issue 27: a newline in a request's `uid` (or namespace, name, kind,
/// operation, or anything a policy message quotes) forged lines of the text
/// log. For each of `\n`, `\r`, `\t`, ESC, NUL and U+2028 in each field, on
/// `/mutate` and `/validate`, in both formats: every line is one event that
/// starts as the logger writes it, holds no raw control or line-separator
/// character, and gives back the uid sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_control_characters_forge_no_log_line() {
    let _cores = CORES.read().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new();
    let (cert, key) = plain_pair(&ca, dir.path());
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).expect("policies");
    std::fs::write(pol.join("echo.rego"), ECHO_REGO).expect("echo.rego");
    let serve = |format| {
        Serve::new(dir.path(), cert.clone(), key.clone())
            .arg("--policies", pol.display().to_string())
            .log_format(format)
    };
    let (text_cfg, json_cfg) = (serve("text"), serve("json"));
    let (text, json_server) = tokio::join!(text_cfg.start(), json_cfg.start());
    let reviews = forging_reviews();
    let c = client(&ca, Proto::Auto, true);
    let mut sent = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for server in [&text, &json_server] {
        for (label, uid, review) in &reviews {
            for path in ["/mutate", "/validate"] {
                let body = Bytes::from(serde_json::to_vec(review).expect("json"));
                let want = if label.starts_with("operation") {
                    400
                } else {
                    200
                };
                match post(&c, &server.url(path), body).await {
                    Outcome::Ok if want == 200 => {}
                    Outcome::Status(400, _) if want == 400 => {}
                    Outcome::Ok => problems.push(format!("{path} {label}: 200, want {want}")),
                    Outcome::Status(s, b) => {
                        problems.push(format!("{path} {label}: HTTP {s} {b}, want {want}"))
                    }
                    Outcome::NotConnected(e) | Outcome::NotSent(e) | Outcome::Lost(e) => {
                        problems.push(format!("{path} {label}: {e}"))
                    }
                }
                if want == 200 {
                    sent.insert(uid.clone());
                }
            }
        }
    }
    let per_server = reviews.len() * 2;
    let admissions =
        |l: &str| l.contains(": admission ") || l.contains("\"message\":\"admission\"");
    let rejections = |l: &str| l.contains("rejected request");
    for server in [&text, &json_server] {
        let settled = common::eventually(Duration::from_secs(5), || async {
            let log = server.log.lock().unwrap();
            log.iter()
                .filter(|l| admissions(l) || rejections(l))
                .count()
                >= per_server
        })
        .await;
        if !settled {
            problems.push(format!(
                "not every request was logged within 5 s: {}",
                server.log_tail(5)
            ));
        }
    }
    let prefix = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z +(TRACE|DEBUG|INFO|WARN|ERROR) [a-z_:]+: ",
    )
    .expect("regex");
    let mut seen = [(0usize, 0usize, 0usize); 2];
    for (n, (format, server)) in [("text", &text), ("json", &json_server)]
        .into_iter()
        .enumerate()
    {
        let log = server.log.lock().unwrap().clone();
        let mut uids = std::collections::BTreeSet::new();
        let mut events = 0;
        for line in &log {
            let event: Option<Value> = serde_json::from_str(line).ok();
            let well_formed = match (format, &event) {
                ("text", _) => prefix.is_match(line) && !line.starts_with("1999"),
                (_, Some(v)) => {
                    v["level"].is_string()
                        && v["timestamp"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("1999"))
                }
                _ => false,
            };
            if !well_formed || line.chars().any(breaks_lines) {
                problems.push(format!(
                    "{format}: a line that is not one event as the logger writes it: {line:?}"
                ));
                continue;
            }
            if admissions(line) || rejections(line) {
                events += 1;
            }
            if admissions(line) {
                let uid = match &event {
                    Some(v) => v["uid"].as_str().map(str::to_string),
                    None => text_field(line, "uid"),
                };
                uids.extend(uid);
            }
            let message = event
                .as_ref()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| line.to_string());
            if line.contains("forged") {
                if message.contains("policy violation") {
                    seen[n].0 += 1;
                } else if message.contains("rejected request") {
                    seen[n].1 += 1;
                } else if message.contains("injection") {
                    seen[n].2 += 1;
                }
            }
        }
        if events != per_server {
            problems.push(format!(
                "{format}: {events} admission and rejection lines for {per_server} requests"
            ));
        }
        let want: std::collections::BTreeSet<String> = sent.clone();
        if uids != want {
            problems.push(format!(
                "{format}: the uids read back differ from those sent: missing {:?}, unexpected {:?}",
                want.difference(&uids).take(3).collect::<Vec<_>>(),
                uids.difference(&want).take(3).collect::<Vec<_>>()
            ));
        }
        // Each path that quotes the request was taken, for each character.
        let (violations, rejected, skipped) = seen[n];
        let k = LINE_BREAKERS.len();
        if violations < 6 * k || rejected < 2 * k || skipped < k {
            problems.push(format!(
                "{format}: lines quoting a forged value: {violations} policy violations (want {}: uid, namespace, name, user, kind, image), {rejected} rejected requests (want {}), {skipped} injection skips (want {k}+)",
                6 * k,
                2 * k
            ));
        }
    }
    eprintln!(
        "forged values: {} reviews on 2 endpoints in 2 formats; (violations, rejections, skips) quoting them per format: {seen:?}",
        reviews.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(12)].join("\n")
    );
}

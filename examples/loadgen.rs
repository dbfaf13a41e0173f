//! Load generator for the admission server: keep-alive TLS connections,
//! a realistic mix of AdmissionReviews, latency percentiles and server RSS.
//!
//! ```sh
//! cargo run --release -- serve --config examples/bench-config.yaml &
//! cargo run --release --example loadgen -- --ca certs/dev/ca.crt \
//!     --endpoint mutate --mix typical --concurrency 32 --duration 10s --server-pid $!
//! ```
//!
//! Each worker owns one HTTP/1.1 keep-alive connection and sends requests
//! back to back, or paced to `--rate` in total. It stops after `--requests`
//! or `--duration`, whichever comes first.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the TLS listener.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// CA certificate that signed the server's certificate.
    #[arg(long, default_value = "certs/dev/ca.crt")]
    ca: PathBuf,
    #[arg(long, value_enum, default_value = "mutate")]
    endpoint: Endpoint,
    #[arg(long, value_enum, default_value = "all")]
    mix: Mix,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = u64::MAX)]
    requests: u64,
    /// Stop after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Total requests per second; unpaced when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Sample this process's RSS from /proc during the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Reset the server's peak RSS (`VmHWM`) before the run, so the
    /// reported peak is this run's (Linux `clear_refs`).
    #[arg(long)]
    reset_peak: bool,
    /// Write every latency, in microseconds, one per line, to this file:
    /// the load report merges the slices of an interleaved run.
    #[arg(long)]
    latencies: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Endpoint {
    Mutate,
    Validate,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mix {
    /// A typical Deployment pod, opted into Python.
    Typical,
    /// Typical, Istio multi-container, 1,000 env vars, already injected, not selected.
    All,
    /// Every request a distinct pod (a rollout wave).
    Distinct,
    /// The 1,000-env-var pod only.
    Env1000,
}

fn typical_pod(i: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": format!("checkout-{i:x}-"),
            "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2", "pod-template-hash": format!("{i:x}")},
            "annotations": {"instrumentation.opentelemetry.io/inject-python": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("checkout-{i:x}"), "uid": format!("uid-{i}"), "controller": true}]
        },
        "spec": {"containers": [{
            "name": "checkout", "image": "registry.example/shop/checkout:1.4.2",
            "command": ["gunicorn", "-b", "0.0.0.0:8000", "checkout.wsgi"],
            "ports": [{"name": "http", "containerPort": 8000}],
            "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "checkout.settings"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        }]}
    })
}

fn istio_pod(i: u64) -> Value {
    let mut p = typical_pod(i);
    p["metadata"]["annotations"] = json!({"instrumentation.opentelemetry.io/inject-java": "true", "sidecar.istio.io/status": "{}"});
    let app = p["spec"]["containers"][0].clone();
    p["spec"]["containers"] = json!([
        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0", "args": ["proxy", "sidecar"]},
        app,
        {"name": "log-shipper", "image": "fluent/fluent-bit:3.1.0"}
    ]);
    p["spec"]["initContainers"] =
        json!([{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.27.0"}]);
    p
}

fn env1000_pod(i: u64) -> Value {
    let mut p = typical_pod(i);
    let env: Vec<Value> = (0..1000)
        .map(|n| json!({"name": format!("APP_SETTING_{n}"), "value": format!("value-{n}")}))
        .collect();
    p["spec"]["containers"][0]["env"] = Value::Array(env);
    p
}

fn injected_pod(i: u64) -> Value {
    let mut p = typical_pod(i);
    p["metadata"]["annotations"]["otel-admission.io/status"] = json!("{\"v\":1}");
    p
}

fn unselected_pod(i: u64) -> Value {
    let mut p = typical_pod(i);
    p["metadata"]["annotations"] = json!({});
    p
}

fn review(uid: u64, pod: Value) -> Bytes {
    let ns = pod["metadata"]["namespace"].clone();
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": format!("load-{uid}"),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": ns, "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod, "dryRun": false
            }
        }))
        .expect("json"),
    )
}

/// Pre-built bodies for the fixed mixes; distinct pods are built per request.
fn body_for(mix: Mix, fixed: &[Bytes], n: u64) -> Bytes {
    match mix {
        Mix::Distinct => review(n, typical_pod(n)),
        _ => fixed[(n % fixed.len() as u64) as usize].clone(),
    }
}

/// The answer's envelope, as much as the check reads: the uid, borrowed;
/// the rest (a patch of some KiB for a mutation) skipped, not built into a
/// `Value`, so the client's share of the two cores does not grow with the
/// answer (issue 16).
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    response: AnswerResponse<'a>,
}

#[derive(serde::Deserialize)]
struct AnswerResponse<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command, which is in parentheses and may hold spaces.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = std::fs::read(&args.ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let uri: hyper::Uri = args.url.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(443);

    let fixed: Vec<Bytes> = match args.mix {
        Mix::Typical | Mix::Distinct => vec![review(0, typical_pod(0))],
        Mix::Env1000 => vec![review(0, env1000_pod(0))],
        Mix::All => vec![
            review(0, typical_pod(0)),
            review(1, istio_pod(1)),
            review(2, env1000_pod(2)),
            review(3, injected_pod(3)),
            review(4, unselected_pod(4)),
        ],
    };
    let fixed = Arc::new(fixed);
    if let (true, Some(pid)) = (args.reset_peak, args.server_pid) {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    }
    let server_cpu_before = args.server_pid.and_then(|p| cpu_seconds(&p.to_string()));
    let client_cpu_before = cpu_seconds("self");
    let rss_before = args.server_pid.and_then(|p| rss_kib(p, "VmRSS:"));
    let peak_rss = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampler = args.server_pid.map(|pid| {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid, "VmRSS:") {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + args.duration;
    let per_worker_interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (connector, host, fixed, issued, errors) = (
            connector.clone(),
            host.clone(),
            fixed.clone(),
            issued.clone(),
            errors.clone(),
        );
        let (mix, endpoint, limit) = (args.mix, args.endpoint, args.requests);
        workers.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())?;
            let stream = connector.connect(name, tcp).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut next = Instant::now()
                + per_worker_interval.map_or(Duration::ZERO, |i| i.mul_f64(w as f64 / 16.0));
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= limit || Instant::now() >= deadline {
                    break;
                }
                if let Some(i) = per_worker_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += i;
                }
                let path = match endpoint {
                    Endpoint::Mutate => "/mutate",
                    Endpoint::Validate => "/validate",
                    Endpoint::Both if n % 2 == 0 => "/mutate",
                    Endpoint::Both => "/validate",
                };
                let req = hyper::Request::post(path)
                    .header("host", host.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body_for(mix, &fixed, n)))?;
                let t = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        status == 200
                            && body.is_ok_and(|b| {
                                serde_json::from_slice::<Answer<'_>>(&b)
                                    .is_ok_and(|a| !a.response.uid.is_empty())
                            })
                    }
                    Err(_) => false,
                };
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    for w in workers {
        match w.await? {
            Ok(l) => all.extend(l),
            Err(e) => {
                eprintln!("worker failed: {e:#}");
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = args
        .server_pid
        .and_then(|p| cpu_seconds(&p.to_string()))
        .zip(server_cpu_before)
        .map(|(a, b)| a - b);
    let client_cpu = cpu_seconds("self")
        .zip(client_cpu_before)
        .map(|(a, b)| a - b);
    if let Some(path) = &args.latencies {
        let mut text = String::with_capacity(all.len() * 6);
        for l in &all {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        std::fs::write(path, text)?;
    }
    let n = all.len();
    let per_request = |cpu: Option<f64>| {
        cpu.filter(|_| n > 0)
            .map(|c| (c / n as f64 * 1e7).round() / 10.0)
    };
    if let Some(s) = sampler {
        s.abort();
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    let rss_after = args.server_pid.and_then(|p| rss_kib(p, "VmRSS:"));
    let hwm = args.server_pid.and_then(|p| rss_kib(p, "VmHWM:"));
    let report = json!({
        "endpoint": format!("{:?}", args.endpoint).to_lowercase(),
        "mix": format!("{:?}", args.mix).to_lowercase(),
        "concurrency": args.concurrency,
        "requests": all.len(),
        "errors": errors.load(Ordering::Relaxed),
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "throughput_rps": (all.len() as f64 / elapsed).round(),
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
        "max_ms": all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        "server_rss_before_kib": rss_before, "server_rss_peak_kib": peak_rss.load(Ordering::Relaxed),
        "server_rss_after_kib": rss_after, "server_vmhwm_kib": hwm,
        "server_cpu_us_per_request": per_request(server_cpu),
        "client_cpu_us_per_request": per_request(client_cpu),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

//! The shipped binary, as a newcomer runs it: `otel-admission serve` with no
//! arguments in an empty directory, the README's request, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_otel-admission");

fn listen_addrs(line: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v["message"] != "serving" {
        return None;
    }
    Some((
        v["webhook"].as_str()?.to_string(),
        v["admin"].as_str()?.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_arguments_then_sigterm() {
    let cwd = tempfile::tempdir().expect("tmp");
    // Ports 0 so parallel CI runs never collide; everything else is default.
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd.path())
        .env("OTEL_ADMISSION_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_ADMIN_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_LOG_FORMAT", "json")
        .env("KUBECONFIG", cwd.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let (webhook, admin) = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server logs 'serving'");
        log.push(line.clone());
        if let Some(a) = listen_addrs(&line) {
            break a;
        }
    };
    let ca = std::fs::read(cwd.path().join("certs/dev/ca.crt")).expect("dev CA generated");
    assert!(cwd.path().join("certs/dev/tls.key").exists());

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca"))
        .build()
        .expect("client");
    let port = webhook.rsplit(':').next().expect("port");
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/admission-review.json"
    ))
    .expect("example");
    let r = client
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(v["response"]["allowed"], true);
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("running from the config file alone"), "{log}");
    assert!(
        log.contains("\"message\":\"admission\""),
        "one line per request: {log}"
    );
}

#[test]
fn certs_command_writes_files_and_prints_the_ca_bundle() {
    use base64::Engine as _;
    let out = tempfile::tempdir().expect("tmp");
    let o = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(out.path())
        .args(["--dns", "otel-admission.otel-admission.svc"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bundle = String::from_utf8(o.stdout).expect("utf8");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("base64 caBundle");
    assert_eq!(
        pem,
        std::fs::read(out.path().join("ca.crt")).expect("ca.crt")
    );
    for f in ["ca.key", "tls.crt", "tls.key"] {
        assert!(out.path().join(f).exists(), "{f}");
    }
    let bad = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(out.path())
        .args(["--dns", "not a name"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--dns"));
}

#[test]
fn a_bad_config_stops_start_up_with_the_field_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "rules:\n  - name: r\n    inject: {languages: [cobol]}\n",
    )
    .expect("w");
    let o = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rules[0].inject.languages[0]"), "{err}");
}

mod common;

/// `--cluster on` with a kubeconfig: readiness waits for the caches to sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_on_with_a_kubeconfig_syncs_before_ready() {
    use common::apiserver::{FakeApiServer, NAMESPACES, namespace};
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", serde_json::json!({})));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {}}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\ncurrent-context: fake\nusers:\n- name: u\n  user: {{}}\n",
            api.url
        ),
    )
    .expect("kubeconfig");
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--cluster",
            "on",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
        ])
        .arg(admin.to_string())
        .current_dir(dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ready = common::eventually(Duration::from_secs(20), || async move {
        match reqwest::get(format!("http://{admin}/readyz")).await {
            Ok(r) => r.status().as_u16() == 200,
            Err(_) => false,
        }
    })
    .await;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .map(|r| r.text());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "ready after the initial sync");
    let text = metrics.expect("metrics").await.expect("text");
    assert!(
        text.contains("otel_admission_cluster_cache_ready 1"),
        "{text}"
    );
    assert!(
        text.contains("otel_admission_cluster_cache_objects{kind=\"namespace\"} 1"),
        "{text}"
    );
}

#[test]
fn cluster_on_without_a_cluster_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = Command::new(BIN)
        .args(["serve", "--cluster", "on"])
        .current_dir(dir.path())
        .env("KUBECONFIG", dir.path().join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cluster on"));
}

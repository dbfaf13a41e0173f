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
    // Issue 28: which build is running, for dashboards to join on.
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let build_info = format!(
        "otel_admission_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        head_commit()
    );
    assert!(metrics.contains(&build_info), "{build_info} in {metrics}");

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

/// The commit build.rs stamped, as `git` sees the checkout now (`unknown`
/// without git, as build.rs falls back).
fn head_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run")
}

/// Issue 28: `version` and `--version` say which build this is: version,
/// git commit and build date, the same line from both.
#[test]
fn version_prints_the_version_commit_and_build_date() {
    let sub = run(&["version"]);
    assert!(sub.status.success(), "{sub:?}");
    let flag = run(&["--version"]);
    assert!(flag.status.success(), "{flag:?}");
    let line = String::from_utf8(sub.stdout).expect("utf8");
    assert_eq!(line, String::from_utf8(flag.stdout).expect("utf8"));
    let want = format!(
        "otel-admission {} (commit {}, built ",
        env!("CARGO_PKG_VERSION"),
        head_commit()
    );
    assert!(line.starts_with(&want), "{line:?} does not start {want:?}");
    let date = line[want.len()..].trim_end().trim_end_matches(')');
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && [4, 2, 2] == [parts[0].len(), parts[1].len(), parts[2].len()]
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
        "build date {date:?} is not YYYY-MM-DD"
    );
}

/// Issue 28: `completion <shell>` for each shell clap_complete knows; the
/// bash script completes every subcommand, nested ones included.
#[test]
fn completion_prints_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = run(&["completion", shell]);
        assert!(o.status.success(), "{shell}: {o:?}");
        assert!(o.stdout.len() > 1000, "{shell}: a script, not a stub");
    }
    let bash = String::from_utf8(run(&["completion", "bash"]).stdout).expect("utf8");
    assert!(bash.contains("complete -F _otel__admission"), "{bash}");
    for sub in [
        "serve",
        "certs",
        "crd",
        "policy",
        "inject",
        "explain",
        "rollout",
        "version",
        "completion",
        "eval",
        "bundle",
        "plan",
        "apply",
    ] {
        assert!(
            bash.contains(&format!("__subcmd__{sub}\"")),
            "bash completion does not complete {sub}"
        );
    }
    let bad = run(&["completion", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 28: `policy eval -o json` is one JSON document with every
/// violation the text format prints, each with its file, document, object,
/// policy, action and message, and a summary; the exit status is the
/// text format's.
#[test]
fn policy_eval_json_lists_every_violation_and_a_summary() {
    let args = [
        "policy",
        "eval",
        "-f",
        "examples/deployment.yaml",
        "--policies",
        "policies",
    ];
    let text = run(&args);
    let json = run(&[&args[..], &["-o", "json"]].concat());
    assert_eq!(text.status.code(), Some(1), "the example is denied");
    assert_eq!(json.status.code(), text.status.code());
    let lines: Vec<String> = String::from_utf8(text.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect();
    let v: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    let violations = v["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), lines.len());
    assert!(!violations.is_empty());
    // Each violation is the text format's line, field by field.
    for (row, line) in violations.iter().zip(&lines) {
        let rebuilt = format!(
            "{}: document {} {}/{}: {} [{}] {}",
            row["file"].as_str().expect("file"),
            row["document"].as_u64().expect("document"),
            row["kind"].as_str().expect("kind"),
            row["name"].as_str().expect("name"),
            row["action"].as_str().expect("action"),
            row["policy"].as_str().expect("policy"),
            row["message"].as_str().expect("message"),
        );
        assert_eq!(&rebuilt, line);
    }
    let s = &v["summary"];
    assert_eq!(s["documents"], 1);
    assert_eq!(s["violations"].as_u64(), Some(lines.len() as u64));
    let count = |a: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(": {a} [")))
            .count()
    };
    assert_eq!(s["deny"].as_u64(), Some(count("deny") as u64));
    assert_eq!(s["warn"].as_u64(), Some(count("warn") as u64));
    assert_eq!(s["denied"], true);
    assert_eq!(s["errors"], 0);
}

/// Issue 28: one variable, one meaning. `OTEL_ADMISSION_OUTPUT` (rollout's
/// and policy eval's format) and `OTEL_ADMISSION_NAMESPACE` (rollout's
/// filter) are not inject's: it used to write a file named `json`, or fail
/// with `cannot read shop`. Its own are `_OUTPUT_FILE` and `_NAMESPACE_FILE`.
#[test]
fn inject_reads_only_its_own_environment_variables() {
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deployment.yaml");
    let o = Command::new(BIN)
        .args(["inject", "-f", manifest])
        .current_dir(dir.path())
        .env("OTEL_ADMISSION_OUTPUT", "json")
        .env("OTEL_ADMISSION_NAMESPACE", "shop")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("kind: Deployment"));
    assert!(!dir.path().join("json").exists(), "no file named json");

    let ns = dir.path().join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
    )
    .expect("w");
    let out = dir.path().join("out.yaml");
    let o = Command::new(BIN)
        .args(["inject", "-f", manifest])
        .current_dir(dir.path())
        .env("OTEL_ADMISSION_OUTPUT_FILE", &out)
        .env("OTEL_ADMISSION_NAMESPACE_FILE", &ns)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "written to the file instead");
    let written = std::fs::read_to_string(&out).expect("out.yaml");
    assert!(written.contains("kind: Deployment"), "{written}");
}

/// Issue 28: each cause once. Error types that write their source into
/// their own message made `{:#}` print "No such file or directory (os error
/// 2): No such file or directory (os error 2)".
#[test]
fn errors_print_each_cause_once() {
    for args in [
        &["inject", "-f", "/nonexistent"][..],
        &[
            "inject",
            "-f",
            "examples/deployment.yaml",
            "--config",
            "/nonexistent",
        ],
        &["serve", "--config", "/nonexistent"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.matches("os error 2").count(),
            1,
            "{args:?}: the OS error exactly once in {err:?}"
        );
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("/nonexistent"), "{err}");
    }
    // A directory named but missing is said in words, once.
    let o = run(&["policy", "test", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: policy test /nonexistent: no such directory\n"
    );
}

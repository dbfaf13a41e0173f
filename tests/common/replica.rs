//! A real `otel-admission serve` process against the fake API server, as
//! the rollout and memory tests run it.

use std::process::Command;

use super::apiserver::FakeApiServer;

/// A kubeconfig pointing at the fake API server.
pub fn kubeconfig_for(api: &FakeApiServer, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {}}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\ncurrent-context: fake\nusers:\n- name: u\n  user: {{}}\n",
            api.url
        ),
    )
    .expect("kubeconfig");
    path
}

/// One `serve` process with its own config; killed when dropped.
pub struct Replica {
    pub child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub fn start(bin: &str, kubeconfig: &std::path::Path, config: &str) -> Self {
        Self::start_with_admin(bin, kubeconfig, config, "127.0.0.1:0")
    }

    pub fn start_with_admin(
        bin: &str,
        kubeconfig: &std::path::Path,
        config: &str,
        admin: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("config");
        let child = Command::new(bin)
            .args([
                "serve",
                "--cluster",
                "on",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                admin,
                "--config",
            ])
            .arg(&path)
            .current_dir(dir.path())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "otel-admission")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        Self { child, _dir: dir }
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak and current RSS of a child process, in KiB, from `/proc`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// A free local address for a replica's admin listener.
pub fn free_admin() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// Waits up to `secs` for the admin listener's `/readyz` to answer 200.
pub async fn wait_ready(admin: &str, secs: u64) -> bool {
    let client = reqwest::Client::new();
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs() < secs {
        let ok = client
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    false
}

/// The value of the first `/metrics` line starting with `series`.
pub async fn metric(admin: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls `series` for up to `secs` until it reads `want`; the last value read.
pub async fn until_metric(admin: &str, series: &str, want: f64, secs: u64) -> Option<f64> {
    let t0 = std::time::Instant::now();
    let mut seen = None;
    while t0.elapsed().as_secs() < secs {
        seen = metric(admin, series).await;
        if seen == Some(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    seen
}

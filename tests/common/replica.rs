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

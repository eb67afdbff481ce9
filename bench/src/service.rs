//! The service under test: the real `countersign` binary, started as its
//! own process exactly as an operator would (`serve --listen 127.0.0.1:0`),
//! so the figures include everything a deployment pays for. Its resident
//! memory is read from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the binary, database and policy are.
#[derive(Clone, Debug)]
pub struct Setup {
    pub bin: PathBuf,
    pub db: PathBuf,
    pub policy: PathBuf,
    /// Extra environment, e.g. the Slack settings pointing at the fake API.
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// Runs a CLI command against the bench database and returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "countersign {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Creates an API key (`keys create`) and returns its token.
    pub async fn key(
        &self,
        principal: &str,
        owner: Option<&str>,
        scopes: &str,
    ) -> anyhow::Result<String> {
        let mut args = vec!["keys", "create", "--principal", principal];
        if let Some(o) = owner {
            args.extend(["--owner", o]);
        }
        args.extend(["--scopes", scopes]);
        self.cli(&args).await
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--db").arg(&self.db);
        // The service's own defaults decide the log level, not the shell's.
        c.env_remove("RUST_LOG");
        // The load comes from a few keys at thousands of requests per
        // second, and scenario g holds 10,000 long-polls at once: neither
        // the per-key rate limit nor the default connection cap may shape it.
        c.env("COUNTERSIGN_RATE_LIMIT", "0");
        c.env("COUNTERSIGN_MAX_CONNECTIONS", "20000");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl Service {
    /// Starts `countersign serve` on a free port and waits until it listens.
    pub async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let mut child = setup
            .command()
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--policy")
            .arg(&setup.policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", setup.bin.display()))?;
        let pid = child.id().context("the service has a pid")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "countersign listening"
                {
                    let addr = v["addr"].as_str().context("the log line has an addr")?;
                    return Ok::<_, anyhow::Error>(addr.parse::<SocketAddr>()?);
                }
                eprintln!("  service: {line}");
            }
            bail!("the service exited before listening")
        })
        .await
        .context("the service did not listen within 60 s")??;
        // Keep draining stderr so the service never blocks on a full pipe;
        // warnings and errors are shown, they may explain a bad figure.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                    eprintln!("  service: {line}");
                }
            }
        });
        Ok(Self { child, addr, pid })
    }

    /// Resident set size in bytes (`VmRSS` in `/proc/PID/status`).
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid)
    }

    /// SIGTERM, then wait for the clean shutdown.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(self.pid);
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

fn terminate(pid: u32) {
    // No libc dependency for one signal: the kill(1) utility does it.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS has a value")?
        .parse()?;
    Ok(kb * 1024)
}

/// The `countersign` binary next to this one (the workspace builds both
/// into one target directory: `bash bench/run.sh`).
pub fn sibling_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().unwrap_or(Path::new("."));
    let bin = dir.join("countersign");
    if !bin.exists() {
        bail!(
            "{} not found: build with `cargo build --release -p countersign -p countersign-bench` or pass --bin",
            bin.display()
        );
    }
    Ok(bin)
}

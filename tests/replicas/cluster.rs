//! N replicas of `countersign serve` on one fresh PostgreSQL database.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::postgres_support::TestDb;
use crate::helpers::{ChildGuard, start_binary_with};

pub struct Replica {
    pub child: ChildGuard,
    pub base: String,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates the usual export request with `token`; its id (asserting 201).
    pub async fn create(&self, client: &reqwest::Client, token: &str) -> String {
        let res = client
            .post(self.url("/v1/approvals"))
            .bearer_auth(token)
            .json(&crate::helpers::export_request())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", self.base);
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub replicas: Vec<Replica>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// `n` replicas with `env` set for each, or `None` without a server.
    pub async fn start(test: &str, n: usize, env: &[(&str, &str)]) -> Option<Cluster> {
        countersign::startup::install_crypto_provider();
        let db = TestDb::create(test).await?;
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            dir,
            db,
            replicas: vec![],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // The shared keys exist before any replica starts, as an operator
        // provisions them (each replica would otherwise make its own).
        countersign::store::audit::Signer::load_or_create(
            &cluster.dir.path().join("audit-key.pem"),
        )
        .unwrap();
        cluster.cli(&["migrate"]);
        for _ in 0..n {
            cluster.add();
        }
        Some(cluster)
    }

    /// Starts one more replica and returns its index.
    pub fn add(&mut self) -> usize {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (child, base) = start_binary_with(self.dir.path(), &["--db", &self.db.url], &env);
        self.replicas.push(Replica { child, base });
        self.replicas.len() - 1
    }

    /// Runs the CLI against the shared database; its stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        cli_in(self.dir.path(), &self.db.url, args)
    }

    pub fn key(&self, principal: &str, owner: Option<&str>, scopes: &str) -> String {
        let mut args = vec![
            "keys",
            "create",
            "--principal",
            principal,
            "--scopes",
            scopes,
        ];
        if let Some(o) = owner {
            args.extend(["--owner", o]);
        }
        self.cli(&args)
    }

    /// The deploy bot's key (acting for Olivia), as every test's agent.
    pub fn agent(&self) -> String {
        self.key(
            "agent:deploy-bot",
            Some("user:olivia@example.com"),
            "request,read",
        )
    }

    /// `audit verify` as an auditor runs it: the report, asserting exit 0.
    pub fn verified(&self) -> Value {
        let out = self.cli_output(&["audit", "verify"]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("not a report: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{report}");
        report
    }

    /// Every event's seq, from `audit export`, in file order.
    pub fn exported_seqs(&self) -> Vec<i64> {
        self.cli(&["audit", "export"])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["seq"].as_i64())
            .collect()
    }
}

fn cli_in(dir: &Path, db: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("COUNTERSIGN_CONFIG")
        .env_remove("COUNTERSIGN_DB")
        .output()
        .unwrap()
}

/// Seq numbers 1..=n, each once, in order: one chain without gaps.
pub fn assert_gapless(seqs: &[i64]) {
    assert!(!seqs.is_empty(), "the trail is empty");
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as i64 + 1, "seq {} is followed by {s}", i);
    }
}

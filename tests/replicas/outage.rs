//! Replicas losing the database, and the database losing a replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, assert_gapless};
use crate::fake_slack::FakeSlack;
use crate::helpers::export_request;

/// What the load saw: acknowledged ids, how many 503s (each with
/// `Retry-After`), and anything else (which must stay empty).
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
}

/// `workers` clients per replica creating requests until `stop`.
fn load(
    cluster: &Cluster,
    agent: &str,
    workers: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut tasks = vec![];
    for r in &cluster.replicas {
        for _ in 0..workers {
            let (client, url, agent, stop, seen) = (
                client.clone(),
                r.url("/v1/approvals"),
                agent.to_string(),
                stop.clone(),
                seen.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let res = client
                        .post(&url)
                        .bearer_auth(&agent)
                        .json(&export_request())
                        .send()
                        .await;
                    let seen_now = |f: &dyn Fn(&mut Seen)| f(&mut seen.lock().unwrap());
                    match res {
                        Ok(res) if res.status() == 201 => {
                            let v: Value = res.json().await.unwrap();
                            let id = v["id"].as_str().unwrap().to_string();
                            seen_now(&|s| s.acknowledged.push(id.clone()));
                        }
                        Ok(res) if res.status() == 503 => {
                            let retry = res.headers().get("retry-after").is_some();
                            let body = res.text().await.unwrap_or_default();
                            if retry {
                                seen_now(&|s| s.unavailable += 1);
                            } else {
                                seen_now(&|s| {
                                    s.other.push(format!("503 without Retry-After: {body}"))
                                });
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(res) => {
                            let line = format!(
                                "{}: {}",
                                res.status(),
                                res.text().await.unwrap_or_default()
                            );
                            seen_now(&|s| s.other.push(line.clone()));
                        }
                        Err(e) => {
                            let line = format!("transport: {e}");
                            seen_now(&|s| s.other.push(line.clone()));
                        }
                    }
                }
            }));
        }
    }
    tasks
}

async fn readyz(client: &reqwest::Client, cluster: &Cluster) -> Vec<u16> {
    let mut out = vec![];
    for r in &cluster.replicas {
        let s = match client.get(r.url("/readyz")).send().await {
            Ok(res) => res.status().as_u16(),
            Err(_) => 0,
        };
        out.push(s);
    }
    out
}

/// Polls until every replica's `/readyz` answers `want` (30 s at most).
async fn until_ready_is(client: &reqwest::Client, cluster: &Cluster, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = readyz(client, cluster).await;
        if got.iter().all(|s| *s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster (/etc/postgresql)")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .expect("a PostgreSQL version under /etc/postgresql");
    let out = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .output()
        .expect("pg_ctlcluster runs");
    assert!(
        out.status.success(),
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the server again if a test stopped it and then failed.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                "pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n 1) main start",
            ])
            .status();
    }
}

#[tokio::test]
async fn postgres_stopped_under_load_means_503s_then_full_recovery_with_nothing_acknowledged_lost()
{
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_outage", 3, &[]).await else {
        return;
    };
    let _restart = RestartOnDrop;
    let agent = cluster.key(
        "agent:loader",
        Some("user:owner@example.com"),
        "request,read",
    );
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let tasks = load(&cluster, &agent, 4, stop.clone(), seen.clone());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = seen.lock().unwrap().acknowledged.len();
    assert!(before > 0, "nothing was created before the outage");

    pg_ctl("stop");
    // Every replica notices: not ready, and writes answered 503.
    until_ready_is(&client, &cluster, 503).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = seen.lock().unwrap().acknowledged.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        seen.lock().unwrap().acknowledged.len(),
        during,
        "a create was acknowledged while the database was down"
    );
    pg_ctl("start");

    // Each replica recovers by itself.
    until_ready_is(&client, &cluster, 200).await;
    let recovered = seen.lock().unwrap().acknowledged.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().acknowledged.len() < recovered + 30 {
        assert!(Instant::now() < deadline, "creates did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.other.is_empty(),
        "answers other than 201 and 503: {:?}",
        &seen.other[..seen.other.len().min(5)]
    );
    assert!(seen.unavailable > 0, "no 503 while the database was down");
    eprintln!(
        "{} created, {} answered 503 during the outage",
        seen.acknowledged.len(),
        seen.unavailable
    );
    for id in &seen.acknowledged {
        let res = client
            .get(cluster.replicas[0].url(&format!("/v1/approvals/{id}")))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged {id} is gone");
    }
    assert_gapless(&cluster.exported_seqs());
    cluster.verified();
}

#[tokio::test]
async fn a_replica_killed_mid_delivery_leaves_its_claimed_rows_to_the_others_once_its_lease_ends() {
    let _one = crate::SERIAL.lock().await;
    countersign::startup::install_crypto_provider();
    let fake = FakeSlack::start().await;
    let api_url = fake.api_url();
    let env = [
        ("COUNTERSIGN_SLACK_BOT_TOKEN", "xoxb-replicas-test"),
        (
            "COUNTERSIGN_SLACK_SIGNING_SECRET",
            "8f742231b10e8888abcd99yyyzzz85a5",
        ),
        ("COUNTERSIGN_SLACK_CHANNEL", "C0APPROVALS"),
        ("COUNTERSIGN_SLACK_API_URL", api_url.as_str()),
        ("COUNTERSIGN_OUTBOX_LEASE", "5s"),
    ];
    let Some(mut cluster) = Cluster::start("replicas_sigkill", 3, &env).await else {
        return;
    };
    let agent = cluster.key(
        "agent:loader",
        Some("user:owner@example.com"),
        "request,read",
    );
    let client = reqwest::Client::new();

    // Posts hang for a while, so each replica is mid-delivery of the rows
    // it claimed when one of them dies.
    fake.delay("chat.postMessage", Duration::from_secs(2));
    let mut created = vec![];
    for i in 0..30 {
        let r = &cluster.replicas[i % 3];
        created.push(r.create(&client, &agent).await);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.replicas[0].kill();
    let killed_at = Instant::now();
    fake.delay("chat.postMessage", Duration::ZERO);

    // Every request gets its message, the dead replica's ones too.
    let posted_for = |fake: &FakeSlack| -> HashMap<String, Vec<Instant>> {
        let mut by: HashMap<String, Vec<Instant>> = HashMap::new();
        for c in fake.successes("chat.postMessage") {
            let text = c.body.to_string();
            if let Some(id) = created.iter().find(|id| text.contains(id.as_str())) {
                by.entry(id.clone()).or_default().push(c.at);
            }
        }
        by
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while posted_for(&fake).len() < created.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} requests were posted",
            posted_for(&fake).len(),
            created.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any duplicate delivery show itself before counting.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let posted = posted_for(&fake);
    for id in &created {
        let after_kill = posted[id].iter().filter(|at| **at > killed_at).count();
        assert!(
            after_kill <= 1,
            "{id} was posted {after_kill} times after the kill"
        );
    }
    // The survivors' own posts arrived before the kill (only their answers
    // were late); a post arriving well after it is a row the dead replica
    // had claimed, delivered by a survivor once the lease ran out.
    let redelivered = posted
        .values()
        .filter(|ats| {
            ats.iter()
                .any(|at| *at > killed_at + Duration::from_secs(2))
        })
        .count();
    eprintln!("{redelivered} request(s) posted by the survivors after the dead replica's lease");
    assert!(
        redelivered > 0,
        "the killed replica had claimed nothing: the test proved nothing"
    );

    // The service records one delivery per request, and the chain verifies.
    let lines = cluster.cli(&["audit", "export"]);
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for l in lines.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["kind"] == "slack.posted" {
            *recorded
                .entry(v["request_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for id in &created {
        assert_eq!(recorded.get(id), Some(&1), "{id}: slack.posted events");
    }
    cluster.verified();
}

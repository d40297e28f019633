//! Several server instances on one PostgreSQL: what one instance changes,
//! the others stop using within a bounded time (issue: caching and
//! scale-out). Invalidations travel through Redis pub/sub when Redis is
//! configured, through PostgreSQL LISTEN/NOTIFY otherwise; rate limits are
//! shared through Redis. A private Redis started here is stopped to show
//! that an outage degrades caching and limits without stopping service, that
//! revocations are then checked against the database (fail closed), and
//! that recovery needs nobody.
//!
//! Propagation times are printed and asserted against a generous bound
//! (loopback target: 100 ms); they are figures, not benchmarks.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clarity_core::testing::service_var;
use clarity_tests::Server;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "two instances share one truth";
/// Generous bound for propagation on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(3);

/// Drops the test's PostgreSQL schema at the end.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.url)
            .args([
                "-qAtc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .status();
    }
}

/// A private Redis on a free loopback port, stopped when dropped.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = PrivateRedis {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required for the Redis outage test (Debian: redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two instances, A and B, on one schema and one keyring.
struct Pair {
    a: Server,
    b: Server,
    client: Client,
    admin: String,
    _data: tempfile::TempDir,
    _schema: Schema,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

async fn call(
    client: &Client,
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn login(client: &Client, server: &Server, email: &str) -> String {
    let response = client
        .post(server.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK, "login {email}");
    let body: Value = response.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

impl Pair {
    /// Starts A, sets up the first admin through it, then starts B.
    async fn start(env: &[(&str, &str)]) -> Option<Pair> {
        let url = service_var("CLARITY_TEST_POSTGRES_URL", "PostgreSQL")?;
        let schema = Schema {
            url: url.clone(),
            name: format!("so_{}", uuid::Uuid::new_v4().simple()),
        };
        let data = tempfile::tempdir().expect("tempdir");
        let mut all: Vec<(&str, &str)> = vec![
            ("CLARITY_STORE_BACKEND", "postgres"),
            ("CLARITY_STORE_POSTGRES_URL", &url),
            ("CLARITY_STORE_POSTGRES_SCHEMA", &schema.name),
            ("CLARITY_STORE_POOL_SIZE", "4"),
            // Logins of the test users come from one address.
            ("CLARITY_RATE_LIMIT_AUTH_BURST", "1000"),
        ];
        all.extend_from_slice(env);
        let a = Server::start(data.path(), &all);
        let code = a
            .stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix("setup code: "))
            .expect("setup code")
            .to_string();
        let client = Client::new();
        let response = client
            .post(a.url("/v1/setup"))
            .json(
                &json!({"setup_code": code, "email": "admin@scale.example", "password": PASSWORD}),
            )
            .send()
            .await
            .expect("setup");
        assert_eq!(response.status(), StatusCode::CREATED);
        let admin = login(&client, &a, "admin@scale.example").await;
        let b = Server::start(data.path(), &all);
        Some(Pair {
            a,
            b,
            client,
            admin,
            _data: data,
            _schema: schema,
        })
    }

    /// A new user with `roles`, logged in on A; returns (id, token).
    async fn user(&self, roles: &[&str]) -> (String, String) {
        let email = format!("u{}@scale.example", uuid::Uuid::new_v4().simple());
        let reply = call(
            &self.client,
            &self.a,
            "POST",
            "/v1/users",
            &self.admin,
            Some(json!({"email": email, "password": PASSWORD, "roles": roles})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let id = reply.body["id"].as_str().expect("id").to_string();
        (id, login(&self.client, &self.a, &email).await)
    }

    /// A patient with the clinician `member` on its care team, and one record.
    async fn patient_of(&self, owner: &str, member: &str) -> (String, String) {
        let reply = call(
            &self.client,
            &self.a,
            "POST",
            "/v1/patients",
            owner,
            Some(json!({
                "mrn": format!("SO-{}", uuid::Uuid::new_v4().simple()),
                "given_name": "Scale", "family_name": "Out",
                "birth_date": "1980-02-02", "sex": "unknown"
            })),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let patient = reply.body["id"].as_str().expect("id").to_string();
        let path = format!("/v1/patients/{patient}/care-team");
        let reply = call(
            &self.client,
            &self.a,
            "POST",
            &path,
            &self.admin,
            Some(json!({"user_id": member, "relationship": "attending"})),
        )
        .await;
        assert!(reply.status.is_success(), "{}", reply.body);
        let path = format!("/v1/patients/{patient}/records");
        let reply = call(
            &self.client,
            &self.a,
            "POST",
            &path,
            owner,
            Some(json!({"kind": "note", "data": {"text": "first"}})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let record = reply.body["id"].as_str().expect("id").to_string();
        (patient, record)
    }
}

/// Polls `check` on B until it holds; returns how long that took.
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            let took = start.elapsed();
            println!("propagation: {what}: {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < BOUND,
            "{what}: the other instance still used the old state after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Logout, role removal, care-team removal, record update and erasure on A
/// are seen by B, which had all of it cached.
async fn changes_on_a_reach_b(pair: &Pair) {
    let (c, client) = (&pair.client, &pair.client);
    let (owner_id, owner) = pair.user(&["clinician"]).await;
    let (member_id, member) = pair.user(&["clinician"]).await;
    let _ = owner_id;
    let (patient, record) = pair.patient_of(&owner, &member_id).await;
    let patient_path = format!("/v1/patients/{patient}");
    let record_path = format!("/v1/records/{record}");

    // B caches the session, the user, the membership, the rows.
    for _ in 0..3 {
        for path in [&patient_path, &record_path] {
            let reply = call(c, &pair.b, "GET", path, &member, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        }
    }

    // Record update on A: B returns the new version.
    let reply = client
        .put(pair.a.url(&record_path))
        .bearer_auth(&owner)
        .header("if-match", "\"1\"")
        .json(&json!({"data": {"text": "second"}}))
        .send()
        .await
        .expect("update");
    assert_eq!(reply.status(), StatusCode::OK);
    until("record update", || async {
        let reply = call(c, &pair.b, "GET", &record_path, &member, None).await;
        reply.body["version"] == 2 && reply.body["data"]["text"] == "second"
    })
    .await;

    // Care-team removal on A: B hides the patient from the former member.
    let path = format!("/v1/patients/{patient}/care-team/{member_id}");
    let reply = call(c, &pair.a, "DELETE", &path, &pair.admin, None).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    until("care-team removal", || async {
        call(c, &pair.b, "GET", &patient_path, &member, None)
            .await
            .status
            == StatusCode::NOT_FOUND
    })
    .await;

    // Role removal on A: B refuses the user's token.
    let user_path = format!("/v1/users/{member_id}");
    let current = call(c, &pair.a, "GET", &user_path, &pair.admin, None).await;
    let version = current.body["version"].as_i64().expect("version");
    let reply = client
        .patch(pair.a.url(&user_path))
        .bearer_auth(&pair.admin)
        .header("if-match", format!("\"{version}\""))
        .json(&json!({"roles": ["nurse"]}))
        .send()
        .await
        .expect("patch");
    assert_eq!(reply.status(), StatusCode::OK);
    until("role removal", || async {
        call(c, &pair.b, "GET", "/v1/me", &member, None)
            .await
            .status
            == StatusCode::UNAUTHORIZED
    })
    .await;

    // Logout on A: B refuses the token.
    let reply = call(c, &pair.b, "GET", &patient_path, &owner, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = call(c, &pair.a, "POST", "/v1/auth/logout", &owner, None).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    until("logout", || async {
        call(c, &pair.b, "GET", "/v1/me", &owner, None).await.status == StatusCode::UNAUTHORIZED
    })
    .await;

    // Erasure on A: B cannot read the patient or its record.
    let (_, owner) = pair.user(&["clinician"]).await;
    let (other_id, other) = pair.user(&["clinician"]).await;
    let (patient, record) = pair.patient_of(&owner, &other_id).await;
    let patient_path = format!("/v1/patients/{patient}");
    let record_path = format!("/v1/records/{record}");
    for path in [&patient_path, &record_path] {
        assert_eq!(
            call(c, &pair.b, "GET", path, &other, None).await.status,
            StatusCode::OK
        );
    }
    let reply = call(c, &pair.a, "DELETE", &patient_path, &pair.admin, None).await;
    assert!(
        reply.status.is_success(),
        "erase: {} {}",
        reply.status,
        reply.body
    );
    until("erasure", || async {
        call(c, &pair.b, "GET", &patient_path, &other, None)
            .await
            .status
            == StatusCode::NOT_FOUND
            && call(c, &pair.b, "GET", &record_path, &other, None)
                .await
                .status
                == StatusCode::NOT_FOUND
    })
    .await;
}

async fn ready(client: &Client, server: &Server) -> Value {
    let response = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    response.json().await.expect("json")
}

// S-AC-5: logout and role change end tokens on every instance; S-AC-3: a removed care-team member loses access there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_carries_invalidations_between_instances() {
    let Some(pair) = Pair::start(&[]).await else {
        return;
    };
    let state = ready(&pair.client, &pair.b).await;
    assert_eq!(
        state["cache"]["invalidation_channel"], "postgres",
        "{state}"
    );
    assert_eq!(state["status"], "ready", "{state}");
    changes_on_a_reach_b(&pair).await;
}

// S-AC-5: logout and role change end tokens on every instance; S-AC-3: a removed care-team member loses access there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_carries_invalidations_between_instances() {
    let Some(redis) = service_var("CLARITY_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let Some(pair) = Pair::start(&[
        ("CLARITY_CACHE_REDIS_URL", &redis),
        ("CLARITY_CACHE_REDIS_PREFIX", &prefix),
    ])
    .await
    else {
        return;
    };
    let state = ready(&pair.client, &pair.b).await;
    assert_eq!(state["cache"]["invalidation_channel"], "redis", "{state}");
    assert_eq!(state["cache"]["rate_limiter"], "redis", "{state}");
    changes_on_a_reach_b(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_through_redis() {
    let Some(redis) = service_var("CLARITY_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let Some(pair) = Pair::start(&[
        ("CLARITY_CACHE_REDIS_URL", &redis),
        ("CLARITY_CACHE_REDIS_PREFIX", &prefix),
        ("CLARITY_RATE_LIMIT_READ_PER_SEC", "1"),
        ("CLARITY_RATE_LIMIT_READ_BURST", "40"),
    ])
    .await
    else {
        return;
    };
    // One account's reads, alternating between A and B: one shared budget.
    let (_, reader) = pair.user(&["auditor"]).await;
    let mut allowed = 0;
    let mut limited = None;
    for i in 0..80 {
        let server = if i % 2 == 0 { &pair.a } else { &pair.b };
        let reply = pair
            .client
            .get(server.url("/v1/me"))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("read");
        match reply.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited.get_or_insert(reply.headers().get("retry-after").cloned());
            }
            other => panic!("unexpected {other}"),
        }
    }
    println!("shared rate limit: {allowed} of 80 reads allowed across two instances");
    // A burst of 40 plus what refills (1/s) while the loop runs; two
    // separate limits would have allowed 80.
    assert!((40..=45).contains(&allowed), "{allowed} reads allowed");
    let retry_after = limited.flatten().expect("a 429 with Retry-After");
    assert!(
        retry_after
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
}

// S-AC-5 (logout and role change end tokens on every instance), S-AC-7 (fail closed without the channel)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_caching_fails_closed_and_recovers() {
    if service_var("CLARITY_TEST_POSTGRES_URL", "PostgreSQL").is_none() {
        return;
    }
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let Some(pair) = Pair::start(&[
        ("CLARITY_CACHE_REDIS_URL", &url),
        ("CLARITY_RATE_LIMIT_READ_PER_SEC", "1"),
        ("CLARITY_RATE_LIMIT_READ_BURST", "30"),
    ])
    .await
    else {
        return;
    };
    let c = &pair.client;
    for server in [&pair.a, &pair.b] {
        let state = ready(c, server).await;
        assert_eq!(state["status"], "ready", "{state}");
    }
    let (_, reader) = pair.user(&["auditor"]).await;
    // B caches the reader's session.
    assert_eq!(
        call(c, &pair.b, "GET", "/v1/me", &reader, None)
            .await
            .status,
        StatusCode::OK
    );

    redis.stop();
    until("outage noticed", || async {
        ready(c, &pair.b).await["status"] == "degraded"
    })
    .await;
    let state = ready(c, &pair.b).await;
    assert_eq!(state["checks"]["cache"], "degraded", "{state}");
    assert_eq!(state["cache"]["invalidation_channel_up"], false, "{state}");

    // Service goes on: logins, reads.
    let (_, other) = pair.user(&["auditor"]).await;
    assert_eq!(
        call(c, &pair.b, "GET", "/v1/me", &other, None).await.status,
        StatusCode::OK
    );

    // Fail closed: no channel, so B checks revocations in the database;
    // a logout on A is refused on B at once.
    let reply = call(c, &pair.a, "POST", "/v1/auth/logout", &reader, None).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    assert_eq!(
        call(c, &pair.b, "GET", "/v1/me", &reader, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "a revoked session was accepted during the outage"
    );

    // Rate limits still hold, per instance.
    let mut limited = false;
    for _ in 0..40 {
        let status = call(c, &pair.b, "GET", "/v1/me", &other, None).await.status;
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "local rate limits apply while Redis is down");
    let metrics = pair.b.metrics().await;
    assert!(
        metrics.contains("clarity_cache_invalidation_channel_up 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clarity_rate_limiter_healthy 0"),
        "{metrics}"
    );

    // Recovery needs nobody.
    redis.restart();
    until("recovery", || async {
        ready(c, &pair.a).await["status"] == "ready" && ready(c, &pair.b).await["status"] == "ready"
    })
    .await;
    let (_, fresh) = pair.user(&["auditor"]).await;
    assert_eq!(
        call(c, &pair.b, "GET", "/v1/me", &fresh, None).await.status,
        StatusCode::OK
    );
    let reply = call(c, &pair.a, "POST", "/v1/auth/logout", &fresh, None).await;
    assert!(reply.status.is_success());
    until("logout after recovery", || async {
        call(c, &pair.b, "GET", "/v1/me", &fresh, None).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[test]
fn redis_server_binary_is_present_for_the_outage_test() {
    // The outage test starts its own Redis; say so plainly when it cannot.
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join("redis-server").exists())
    });
    if !found && clarity_core::testing::in_ci() {
        panic!("redis-server is not installed: CI runs the Redis outage test");
    }
}

//! A store that refuses a write. PostgreSQL is made to fail one kind of write
//! with a trigger that raises an error (a real failure of the real store);
//! the request that needed it fails cleanly — an OpenAI-shaped `503` that
//! names nothing internal — and nothing of it is left behind, in the store
//! or in the actors' memory. Once the store takes writes again, the same
//! request succeeds.

use crate::helpers::*;
use crate::postgres::{pg_url, schema, serve_config};
use crate::upstream::FakeLlm;
use gatehouse::config::Config;
use gatehouse_actors::store::PgStore;
use serde_json::{json, Value};
use std::sync::Arc;

/// A gateway on a fresh schema, with admin `admin` signed in on `admin`
/// (a cookie client), and a direct connection to the database for faults.
struct Faulty {
    url: String,
    schema: String,
    store: Arc<PgStore>,
    db: tokio_postgres::Client,
    admin: reqwest::Client,
    _gh: gatehouse::Gatehouse,
}

impl Faulty {
    async fn start() -> Faulty {
        Self::start_with(Config::defaults()).await
    }

    async fn start_with(config: Config) -> Faulty {
        let schema = schema("gh_fault");
        let store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
        let (gh, url) = serve_config(config, store.clone()).await;
        let cli = gatehouse::accounts::Actor::cli();
        gatehouse::accounts::add_user(&gh.data(), &cli, "admin", PW, true, false)
            .await
            .unwrap();
        let (db, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        actix_rt::spawn(conn);
        let admin = client();
        let res = admin
            .post(format!("{url}/auth/login"))
            .json(&json!({"username": "admin", "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        Faulty {
            url,
            schema,
            store,
            db,
            admin,
            _gh: gh,
        }
    }

    /// From now on every `op` (INSERT, UPDATE, DELETE) on `table` fails.
    async fn fail(&self, op: &str, table: &str) {
        let s = &self.schema;
        self.db
            .batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION {s}.injected_fault() RETURNS trigger \
                   LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
                 CREATE TRIGGER injected_fault BEFORE {op} ON {s}.{table} \
                   FOR EACH ROW EXECUTE FUNCTION {s}.injected_fault();"
            ))
            .await
            .unwrap();
    }

    async fn heal(&self, table: &str) {
        self.db
            .batch_execute(&format!(
                "DROP TRIGGER injected_fault ON {}.{table}",
                self.schema
            ))
            .await
            .unwrap();
    }

    /// `GET path` as the admin: the JSON answer.
    async fn admin_get(&self, path: &str) -> Value {
        let res = self
            .admin
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    }

    async fn finish(self) {
        self.store.drop_schema().await.unwrap();
    }
}

/// The failure the client sees: a clean, OpenAI-shaped 503 that says
/// nothing of the database, the SQL or the fault.
async fn assert_clean_503(what: &str, res: reqwest::Response) {
    let status = res.status().as_u16();
    let cookie = res.headers().get("set-cookie").cloned();
    let text = res.text().await.unwrap();
    assert_eq!(status, 503, "{what}: {text}");
    assert!(cookie.is_none(), "{what} set a cookie on failure");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["error"]["code"], "service_unavailable",
        "{what}: {text}"
    );
    assert!(body["error"]["message"].is_string());
    for leak in ["injected", "trigger", "postgres", "SQL", "gh_"] {
        assert!(!text.contains(leak), "{what} answer names {leak:?}: {text}");
    }
}

#[actix_web::test]
async fn a_user_whose_insert_fails_does_not_exist() {
    let f = Faulty::start().await;
    let add = || {
        f.admin
            .post(format!("{}/admin/api/users", f.url))
            .json(&json!({"username": "bob", "password": PW}))
    };
    f.fail("INSERT", "users").await;
    assert_clean_503("user add", add().send().await.unwrap()).await;
    let users: Value = f.admin_get("/admin/api/users").await;
    let names: Vec<&str> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin"]);
    let bob = client();
    let login = || {
        bob.post(format!("{}/auth/login", f.url))
            .json(&json!({"username": "bob", "password": PW}))
    };
    assert_eq!(login().send().await.unwrap().status(), 401);

    f.heal("users").await;
    assert_eq!(add().send().await.unwrap().status(), 201);
    assert_eq!(login().send().await.unwrap().status(), 200);
    f.finish().await;
}

#[actix_web::test]
async fn a_sign_in_whose_session_insert_fails_gives_no_session() {
    let f = Faulty::start().await;
    gatehouse::accounts::add_user(
        &f._gh.data(),
        &gatehouse::accounts::Actor::cli(),
        "bob",
        PW,
        false,
        false,
    )
    .await
    .unwrap();
    let bob = client();
    let login = || {
        bob.post(format!("{}/auth/login", f.url))
            .json(&json!({"username": "bob", "password": PW}))
    };
    f.fail("INSERT", "sessions").await;
    assert_clean_503("sign-in", login().send().await.unwrap()).await;
    assert_eq!(
        bob.get(format!("{}/auth/session", f.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let listed: Value = f.admin_get("/admin/api/sessions?user=bob").await;
    assert_eq!(listed["data"], json!([]), "a session that was never stored");

    f.heal("sessions").await;
    assert_eq!(login().send().await.unwrap().status(), 200);
    assert_eq!(
        bob.get(format!("{}/auth/session", f.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    f.finish().await;
}

async fn tokens(f: &Faulty) -> Vec<Value> {
    let list: Value = f.admin_get("/api/tokens").await;
    list["data"].as_array().unwrap().clone()
}

async fn models_status(url: &str, token: &str) -> u16 {
    client()
        .get(format!("{url}/v1/models"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn a_token_whose_insert_fails_is_not_issued() {
    let f = Faulty::start().await;
    let issue = || {
        f.admin
            .post(format!("{}/api/tokens", f.url))
            .json(&json!({"name": "ci"}))
    };
    f.fail("INSERT", "api_tokens").await;
    assert_clean_503("token issue", issue().send().await.unwrap()).await;
    assert_eq!(tokens(&f).await, Vec::<Value>::new());

    f.heal("api_tokens").await;
    let res = issue().send().await.unwrap();
    assert_eq!(res.status(), 201);
    let t: Value = res.json().await.unwrap();
    assert_eq!(
        models_status(&f.url, t["token"].as_str().unwrap()).await,
        200
    );
    assert_eq!(tokens(&f).await.len(), 1);
    f.finish().await;
}

#[actix_web::test]
async fn a_revocation_whose_update_fails_leaves_the_token_as_it_was() {
    let f = Faulty::start().await;
    let t: Value = f
        .admin
        .post(format!("{}/api/tokens", f.url))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, token) = (t["id"].as_str().unwrap(), t["token"].as_str().unwrap());
    let revoke = || f.admin.delete(format!("{}/api/tokens/{id}", f.url));

    f.fail("UPDATE", "api_tokens").await;
    assert_clean_503("revocation", revoke().send().await.unwrap()).await;
    // Not revoked in the store, so not revoked anywhere: the admin was told
    // it failed and will try again; the token is listed and works as before.
    assert_eq!(tokens(&f).await[0]["status"], "active");
    assert_eq!(models_status(&f.url, token).await, 200);

    f.heal("api_tokens").await;
    assert_eq!(revoke().send().await.unwrap().status(), 204);
    assert_eq!(models_status(&f.url, token).await, 401);
    assert_eq!(tokens(&f).await[0]["status"], "revoked");
    f.finish().await;
}

#[actix_web::test]
async fn a_password_change_whose_update_fails_keeps_the_old_password() {
    let f = Faulty::start().await;
    let new = "another-long-password";
    f.fail("UPDATE", "users").await;
    let res = f
        .admin
        .post(format!("{}/account/api/password", f.url))
        .json(&json!({"current": PW, "new": new}))
        .send()
        .await
        .unwrap();
    assert_clean_503("password change", res).await;
    f.heal("users").await;
    let login = |pw: &str| {
        client()
            .post(format!("{}/auth/login", f.url))
            .json(&json!({"username": "admin", "password": pw}))
            .send()
    };
    assert_eq!(login(new).await.unwrap().status(), 401);
    assert_eq!(login(PW).await.unwrap().status(), 200);
    f.finish().await;
}

#[actix_web::test]
async fn a_task_whose_insert_fails_leaves_its_idempotency_key_free() {
    let fake = FakeLlm::openai(&["m1"]);
    let config = config_from_toml(&format!(
        "[providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\"]\nlocal = true\n",
        fake.url
    ))
    .unwrap();
    let f = Faulty::start_with(config).await;
    let body = json!({
        "kind": "chat.completion",
        "input": {"model": "oa/m1", "messages": [{"role": "user", "content": "hi"}]},
        "requires_approval": true,
    });
    let create = || {
        f.admin
            .post(format!("{}/v1/tasks", f.url))
            .header("idempotency-key", "k1")
            .json(&body)
    };
    for table in ["tasks", "idempotency_keys"] {
        f.fail("INSERT", table).await;
        assert_clean_503(&format!("task ({table})"), create().send().await.unwrap()).await;
        f.heal(table).await;
        let list: Value = f.admin_get("/v1/tasks").await;
        assert_eq!(list["data"], json!([]), "a task left behind ({table})");
    }
    let res = create().send().await.unwrap();
    assert_eq!(res.status(), 202, "the key must be free again");
    assert!(res.headers().get("idempotent-replayed").is_none());
    let res = create().send().await.unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    f.finish().await;
}

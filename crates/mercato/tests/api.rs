//! Black-box API tests: one server per test, driven over HTTP, checked against
//! the public contract.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().unwrap_or_else(|| panic!("no items array in {v}"))
}

fn cart_line<'a>(cart: &'a Value, sku: &str) -> Option<&'a Value> {
    items(cart).iter().find(|l| l["sku"] == json!(sku))
}

// ---------------------------------------------------------------- ops

#[tokio::test]
async fn ops_endpoints_and_request_ids() {
    let srv = TestServer::start(0);

    let r = srv.get_root("/healthz").await;
    assert_eq!(r.status, 200, "healthz: {}", r.text);
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()), "healthz has no x-request-id");

    let r = srv.get_root("/readyz").await;
    assert_eq!(r.status, 200, "readyz: {}", r.text);

    // a couple of requests so the counter has something in it
    srv.get("/categories", None).await.expect(200);
    let r = srv.get_root("/metrics").await;
    assert_eq!(r.status, 200, "metrics: {}", r.text);
    assert!(r.text.contains("http_requests_total"), "metrics lacks http_requests_total:\n{}", r.text);

    let r = srv.get("/openapi.json", None).await;
    assert_eq!(r.status, 200, "openapi: {}", r.text);
    let version = r.body["openapi"].as_str().unwrap_or_else(|| panic!("no openapi version: {}", r.text));
    assert!(version.starts_with('3'), "openapi version {version}");
    let paths = r.body["paths"].as_object().expect("openapi paths object");
    assert!(
        paths.contains_key("/api/v1/orders"),
        "openapi paths lack /api/v1/orders: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(
        paths.contains_key("/api/v1/products/{id}"),
        "openapi paths lack /api/v1/products/{{id}}: {:?}",
        paths.keys().collect::<Vec<_>>()
    );

    let r = srv.get_root("/docs").await;
    assert_eq!(r.status, 200, "docs: {}", r.text);
    assert!(r.content_type().starts_with("text/html"), "docs content type {}", r.content_type());

    // every response carries x-request-id, including errors; an incoming one is echoed
    let r = send(srv.client.get(srv.api("/products/999999999")).header("x-request-id", "qa-req-42")).await;
    assert_problem(&r, 404, "not-found");
    assert_eq!(r.header("x-request-id").as_deref(), Some("qa-req-42"));
    let r = send(srv.client.get(srv.url("/healthz")).header("x-request-id", "qa-req-43")).await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("qa-req-43"));
    let r = srv.get("/auth/me", None).await;
    assert_problem(&r, 401, "unauthorized");
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()), "401 has no x-request-id");
    // generated ids differ between requests
    let a = srv.get_root("/healthz").await.header("x-request-id");
    let b = srv.get_root("/healthz").await.header("x-request-id");
    assert_ne!(a, b, "generated request ids should differ");

    // an unknown API route is a 404 problem too
    let r = srv.get("/definitely-not-a-route", None).await;
    assert_problem(&r, 404, "not-found");
}

#[tokio::test]
async fn framework_level_errors_are_problem_json() {
    let srv = TestServer::start(0);
    let mut failures = Vec::new();
    let mut check = |what: &str, r: &Resp, status: u16| {
        let ct = r.content_type();
        if r.status != status
            || !ct.starts_with("application/problem+json")
            || !r.body["code"].is_string()
            || r.body["status"] != json!(status)
        {
            failures.push(format!("{what}: expected {status} problem+json, got {} '{ct}' {}", r.status, r.text));
        }
    };
    let r = srv.delete("/categories", None).await;
    check("DELETE /categories (method not allowed)", &r, 405);
    let r = srv.get("/no/such/route", None).await;
    check("GET unknown route", &r, 404);
    let r = srv.get("/products/{bad id}", None).await;
    check("GET /products/<unencoded braces>", &r, 404);
    // Last: the server answers 413 without reading the body and then closes
    // the connection, and the client may already have picked that pooled
    // connection for a next request (a CI run failed with IncompleteMessage).
    let big =
        format!(r#"{{"email":"big@example.com","password":"long-enough-pw","name":"{}"}}"#, "x".repeat(400 * 1024));
    let r = srv.raw(Method::POST, "/auth/register", None, &big, Some("application/json")).await;
    check("400 KiB body", &r, 413);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn register_validation_and_no_email_enumeration() {
    let srv = TestServer::start(0);
    let email = format!("{}@example.com", unique_str("reg"));

    let r =
        srv.post("/auth/register", None, json!({"email": email, "password": "first-password", "name": "Alice"})).await;
    assert_eq!(r.status, 201, "register: {}", r.text);
    assert_eq!(r.body["email"], json!(email));
    assert_eq!(r.body["name"], json!("Alice"));
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none(), "leaks password: {}", r.text);

    // a second registration answers exactly the same way
    let r2 =
        srv.post("/auth/register", None, json!({"email": email, "password": "second-password", "name": "Alice"})).await;
    assert_eq!(r2.status, 201, "duplicate register must look like a success: {}", r2.text);
    assert_eq!(r2.body, r.body, "duplicate registration must answer the same shape");
    // ...and must not take over the account
    srv.login(&email, "first-password").await.expect(200);
    assert_problem(&srv.login(&email, "second-password").await, 401, "unauthorized");

    // validation
    for (body, what) in [
        (json!({"email": "not-an-email", "password": "long-enough-pw", "name": "X"}), "invalid email"),
        (json!({"email": "a@example.com", "password": "short77", "name": "X"}), "7-char password"),
        (json!({"email": "b@example.com", "password": "long-enough-pw", "name": ""}), "empty name"),
    ] {
        let r = srv.post("/auth/register", None, body).await;
        assert_eq!(r.status, 422, "{what}: {}", r.text);
        assert_problem(&r, 422, "validation");
    }
    // exactly 8 characters is enough
    let r = srv
        .post(
            "/auth/register",
            None,
            json!({"email": format!("{}@example.com", unique_str("eight")), "password": "12345678", "name": "E"}),
        )
        .await;
    assert_eq!(r.status, 201, "8-char password: {}", r.text);

    // malformed bodies
    let r = srv.raw(Method::POST, "/auth/register", None, "{not json", Some("application/json")).await;
    assert_problem(&r, 400, "malformed-body");
    // well-formed JSON of the wrong shape is an invalid value, not a malformed body
    let r = srv.post("/auth/register", None, json!({"email": 12345, "password": "long-enough-pw", "name": "X"})).await;
    assert_problem(&r, 422, "validation");
}

#[tokio::test]
async fn json_body_without_json_content_type_is_unsupported_media_type() {
    // Contract: a body that is not declared as JSON is 415 unsupported-media-type;
    // invalid JSON is 400 malformed-body; JSON of the wrong shape is 422 validation.
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 10).await;
    let body = r#"{"email":"c@example.com","password":"long-enough-pw","name":"X"}"#;
    let cart_body = format!(r#"{{"sku":"{sku}","quantity":1}}"#);
    let mut failures = Vec::new();
    for (path, body, ct) in [
        ("/auth/register", body, None),
        ("/auth/register", body, Some("text/plain")),
        ("/cart/items", cart_body.as_str(), None),
    ] {
        let r = srv.raw(Method::POST, path, None, body, ct).await;
        if !(r.status == 415
            && r.body["code"] == json!("unsupported-media-type")
            && r.content_type().starts_with("application/problem+json"))
        {
            failures.push(format!(
                "POST {path} content-type {ct:?}: expected 415 unsupported-media-type, got {} {}",
                r.status, r.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // nothing was created by the rejected requests
    assert_problem(&srv.login("c@example.com", "long-enough-pw").await, 401, "unauthorized");
}

#[tokio::test]
async fn login_me_logout_and_bad_tokens() {
    let srv = TestServer::start(0);
    let email = format!("{}@example.com", unique_str("login"));
    srv.register(&email).await.expect(201);

    let r = srv.login(&email, PASSWORD).await;
    assert_eq!(r.status, 200, "login: {}", r.text);
    let token = r.body["access_token"].as_str().expect("access_token").to_string();
    assert!(!token.is_empty());
    assert_eq!(r.body["token_type"], json!("Bearer"));
    let expires_in =
        r.body["expires_in"].as_i64().unwrap_or_else(|| panic!("expires_in is not an integer: {}", r.text));
    assert!(expires_in > 0, "expires_in {expires_in}");
    let cust = &r.body["customer"];
    let cust_id = id_of(&cust["id"]);
    assert_eq!(cust["email"], json!(email));
    assert_eq!(cust["name"], json!("Test Customer"));
    assert_eq!(cust["role"], json!("customer"));

    // wrong password and unknown email are indistinguishable
    let wrong = srv.login(&email, "wrong-password-1").await;
    assert_problem(&wrong, 401, "unauthorized");
    let unknown = srv.login(&format!("{}@example.com", unique_str("nobody")), "wrong-password-1").await;
    assert_problem(&unknown, 401, "unauthorized");
    assert_eq!(wrong.body["detail"], unknown.body["detail"], "detail reveals whether the email exists");
    assert_eq!(wrong.body["title"], unknown.body["title"]);

    // /auth/me
    let me = srv.get("/auth/me", Some(&token)).await;
    assert_eq!(me.status, 200, "me: {}", me.text);
    assert_eq!(id_of(&me.body["id"]), cust_id);
    assert_eq!(me.body["email"], json!(email));
    assert_eq!(me.body["name"], json!("Test Customer"));
    assert_eq!(me.body["role"], json!("customer"));

    assert_problem(&srv.get("/auth/me", None).await, 401, "unauthorized");
    let garbage = srv.get("/auth/me", Some("this-is-not-a-token")).await;
    assert_problem_status(&garbage, 401);
    let r = send(srv.client.get(srv.api("/auth/me")).header("authorization", "Basic Zm9vOmJhcg==")).await;
    assert_problem_status(&r, 401);

    // logout revokes exactly that token
    let (other_token, _) = srv.login_customer(&email).await;
    let r = srv.post_empty("/auth/logout", Some(&token)).await;
    assert_eq!(r.status, 204, "logout: {}", r.text);
    assert!(r.text.is_empty(), "204 with a body: {}", r.text);
    assert!(r.header("x-request-id").is_some(), "204 without x-request-id");
    assert_problem_status(&srv.get("/auth/me", Some(&token)).await, 401);
    srv.get("/auth/me", Some(&other_token)).await.expect(200);
    assert_problem(&srv.post_empty("/auth/logout", None).await, 401, "unauthorized");

    // admin
    let r = srv.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "admin login: {}", r.text);
    assert_eq!(r.body["customer"]["role"], json!("admin"));
    let admin = r.body["access_token"].as_str().unwrap().to_string();
    let me = srv.get("/auth/me", Some(&admin)).await;
    assert_eq!(me.body["role"], json!("admin"), "{}", me.text);
}

/// Median wall time of a request, in microseconds.
fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::test]
async fn response_times_do_not_reveal_which_emails_exist() {
    let srv = TestServer::start(0);
    let n = 7;
    let mut existing = Vec::new();
    for _ in 0..n {
        let email = format!("{}@example.com", unique_str("timing"));
        srv.register(&email).await.expect(201);
        existing.push(email);
    }
    // interleaved, one failure per account so the rate limiter stays out of it
    let (mut wrong_pw, mut unknown, mut dup_reg, mut new_reg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for email in &existing {
        let t = std::time::Instant::now();
        assert_problem(&srv.login(email, "wrong-password-9").await, 401, "unauthorized");
        wrong_pw.push(t.elapsed().as_micros());
        let t = std::time::Instant::now();
        assert_problem(
            &srv.login(&format!("{}@example.com", unique_str("ghost")), "wrong-password-9").await,
            401,
            "unauthorized",
        );
        unknown.push(t.elapsed().as_micros());
        let t = std::time::Instant::now();
        srv.register(email).await.expect(201);
        dup_reg.push(t.elapsed().as_micros());
        let t = std::time::Instant::now();
        srv.register(&format!("{}@example.com", unique_str("fresh"))).await.expect(201);
        new_reg.push(t.elapsed().as_micros());
    }
    let (w, u, d, f) = (median(wrong_pw), median(unknown), median(dup_reg), median(new_reg));
    eprintln!("median µs: login wrong password {w}, login unknown email {u}, duplicate register {d}, new register {f}");
    // a password hash costs tens of milliseconds; skipping it is visible from far away
    assert!(
        u * 4 >= w && w * 4 >= u,
        "login time reveals whether the email exists: wrong password {w} µs, unknown email {u} µs"
    );
    assert!(
        d * 4 >= f && f * 4 >= d,
        "registration time reveals whether the email exists: existing {d} µs, new {f} µs"
    );
}

#[tokio::test]
async fn expired_token_is_rejected_with_token_expired() {
    let srv = TestServer::start_with(0, &[("MERCATO_AUTH_TOKEN_TTL_SECS", "1")]);
    let email = format!("{}@example.com", unique_str("ttl"));
    srv.register(&email).await.expect(201);
    let r = srv.login(&email, PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["expires_in"], json!(1), "expires_in should reflect the TTL");
    let token = r.body["access_token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_problem(&srv.get("/auth/me", Some(&token)).await, 401, "token-expired");
}

#[tokio::test]
async fn login_rate_limit_per_account() {
    let srv = TestServer::start(0);
    let victim = format!("{}@example.com", unique_str("victim"));
    let bystander = format!("{}@example.com", unique_str("bystander"));
    srv.register(&victim).await.expect(201);
    srv.register(&bystander).await.expect(201);

    for i in 0..5 {
        let r = srv.login(&victim, "wrong-password-x").await;
        assert_eq!(r.status, 401, "failed attempt {} should be 401: {}", i + 1, r.text);
        assert_problem(&r, 401, "unauthorized");
    }
    // the 6th attempt is refused, even with the right password
    let r = srv.login(&victim, PASSWORD).await;
    assert_problem(&r, 429, "rate-limited");
    let retry = r.header("retry-after").unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers));
    let secs: u64 = retry.trim().parse().unwrap_or_else(|_| panic!("Retry-After '{retry}' is not seconds"));
    assert!(secs > 0, "Retry-After {secs}");
    assert_problem(&srv.login(&victim, "wrong-password-x").await, 429, "rate-limited");

    // another account is not affected
    srv.login(&bystander, PASSWORD).await.expect(200);
}

/// 200 wrong passwords at once for one account from one client: at most
/// the configured 5 reach the password hash (the server counts them), the
/// rest are 429 with Retry-After. The flood slows its client only: the
/// account's owner signs in at once from another client, and so does the
/// admin after the same flood against the admin's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_are_counted_before_hashing_and_lock_no_one_out() {
    let srv = std::sync::Arc::new(TestServer::start_with(0, &[("MERCATO_HTTP_TRUSTED_PROXIES", "127.0.0.1/32, ::1")]));
    let victim = format!("{}@example.com", unique_str("flood"));
    srv.register(&victim).await.expect(201);
    let series = "auth_password_verifications_total";
    let attacker = "203.0.113.7";
    let flood = |email: String| {
        let srv = srv.clone();
        async move {
            let began = std::time::Instant::now();
            let before = srv.metric(series).await;
            let statuses = futures_util::future::join_all((0..200).map(|i| {
                let rb = srv
                    .rb(Method::POST, "/auth/login", None)
                    .header("x-forwarded-for", attacker)
                    .json(&json!({"email": email, "password": format!("wrong-{i}")}));
                async move { send(rb).await.status }
            }))
            .await;
            let verified = srv.metric(series).await - before;
            (statuses, verified, began.elapsed())
        }
    };
    for email in [victim.clone(), ADMIN_EMAIL.to_string()] {
        let (statuses, verified, took) = flood(email.clone()).await;
        let wrong = statuses.iter().filter(|s| **s == 401).count();
        let throttled = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(wrong + throttled, 200, "{email}: answers other than 401 and 429: {statuses:?}");
        // Waits of 1 s, 2 s, 4 s... after the first 5: a slow burst may
        // rightly let one more through per wait that ran out during it.
        let extra = (took.as_secs_f64() + 1.0).log2().floor() as usize;
        assert!(wrong >= 1 && wrong <= 5 + extra, "{email}: {wrong} wrong passwords answered in {took:?}");
        assert_eq!(verified as usize, wrong, "{email}: passwords verified");
        let r = srv
            .rb(Method::POST, "/auth/login", None)
            .header("x-forwarded-for", attacker)
            .json(&json!({"email": email, "password": PASSWORD}));
        assert_problem(&send(r).await, 429, "rate-limited");
    }
    // The owner, from another client: signed in at once.
    let r = srv
        .rb(Method::POST, "/auth/login", None)
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({"email": victim, "password": PASSWORD}));
    send(r).await.expect(200);
    // The admin, from the shop's own network.
    srv.admin_token().await;
    // A key no address can be does not reach the store or the throttle.
    let long = format!("{}@example.com", "x".repeat(300));
    assert_problem(&srv.login(&long, PASSWORD).await, 401, "unauthorized");
}

/// A flood of sign-ups does not starve logins of password hashing: sign-ups
/// hold at most half of the server's hashing slots, so a login sent while
/// fifty of them wait is answered before they are (sharing one queue, it
/// waited behind them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_sign_ups_does_not_starve_logins() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let srv = std::sync::Arc::new(TestServer::start(0));
    let email = format!("{}@example.com", unique_str("patient"));
    srv.register(&email).await.expect(201);
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let (srv, done) = (srv.clone(), done.clone());
            tokio::spawn(async move {
                let r = srv.register(&format!("{}-{i}@example.com", unique_str("flood"))).await;
                done.fetch_add(1, Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    // Half of the flood waiting to be hashed (the server's gauge), then a login.
    let queued =
        poll_until(Duration::from_secs(30), || async { srv.metric("auth_signups_hashing").await >= 50.0 }).await;
    assert!(queued, "the sign-ups never queued for hashing");
    let at_login = done.load(Ordering::SeqCst);
    let r = srv.login(&email, PASSWORD).await;
    let overtaken = done.load(Ordering::SeqCst) - at_login;
    r.expect(200);
    for f in flood {
        assert_eq!(f.await.unwrap(), 201);
    }
    assert!(overtaken < 20, "the login waited for {overtaken} sign-ups queued before it");
}

#[tokio::test]
async fn admin_endpoints_require_admin() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let customer = srv.new_customer().await;
    let sku = srv.quick_sku(&admin, 1000, 5).await;
    let cat = id_of(&srv.create_category(&admin, &unique_str("Adm"), None).await["id"]);

    let product_body = json!({"name": "Nope", "category_id": cat, "variants": [{"sku": "NOPE-1", "price": {"amount": 1, "currency": "USD"}}]});
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/admin/categories".into(), Some(json!({"name": "Nope"}))),
        (Method::POST, "/admin/products".into(), Some(product_body)),
        (Method::PATCH, format!("/admin/variants/{sku}"), Some(json!({"weight_grams": 1}))),
        (Method::PUT, format!("/admin/inventory/{sku}"), Some(json!({"available": 1000}))),
        (Method::POST, format!("/admin/inventory/{sku}/adjustments"), Some(json!({"delta": 10, "reason": "x"}))),
        (Method::GET, format!("/admin/inventory/{sku}"), None),
        (Method::GET, "/admin/orders".into(), None),
    ];
    for (method, path, body) in &cases {
        for (token, status, code) in [(Some(customer.as_str()), 403, "forbidden"), (None, 401, "unauthorized")] {
            let mut rb = srv.rb(method.clone(), path, token);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let r = send(rb).await;
            assert_eq!(r.status, status, "{method} {path} with token={}: {}", token.is_some(), r.text);
            assert_problem(&r, status, code);
        }
    }
    // nothing changed
    let (available, _, _) = srv.stock(&admin, &sku).await;
    assert_eq!(available, 5);
    let r = srv.get("/products?limit=100", None).await;
    assert!(!r.text.contains("NOPE-1") && !r.text.contains("\"Nope\""), "forbidden writes happened: {}", r.text);
}

// ---------------------------------------------------------------- catalog

#[tokio::test]
async fn catalog_categories_listing_filters_sorting_pagination() {
    let srv = TestServer::start(5);
    let admin = srv.admin_token().await;

    let root = srv.create_category(&admin, "QA Apparel", None).await;
    let root_id = id_of(&root["id"]);
    assert_eq!(root["name"], json!("QA Apparel"));
    assert!(root["slug"].as_str().is_some_and(|s| !s.is_empty()), "category slug: {root}");
    assert!(root["parent_id"].is_null(), "root parent_id: {root}");
    let child = srv.create_category(&admin, "QA Shirts", Some(&root_id)).await;
    let child_id = id_of(&child["id"]);
    assert_eq!(child["parent_id"], json!(root_id));
    let r = srv.post("/admin/categories", Some(&admin), json!({"name": "QA Books", "slug": "qa-books"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["slug"], json!("qa-books"));
    let books_id = id_of(&r.body["id"]);

    // the tree
    let r = srv.get("/categories", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tree = items(&r.body);
    let node =
        tree.iter().find(|c| c["id"] == json!(root_id)).unwrap_or_else(|| panic!("root missing from tree: {}", r.text));
    assert_eq!(node["name"], json!("QA Apparel"));
    let kids = node["children"].as_array().expect("children array");
    assert!(
        kids.iter().any(|c| c["id"] == json!(child_id) && c["parent_id"] == json!(root_id)),
        "child not under root: {node}"
    );
    assert!(!tree.iter().any(|c| c["id"] == json!(child_id)), "child category listed at the top level: {}", r.text);

    // products: 3 in the child category, 1 in the root, 2 books, 1 draft
    let mut apparel_ids = Vec::new();
    for (name, price) in [("QA Shirt Red", 1500), ("QA Shirt Blue", 900), ("QA Shirt Green", 3100)] {
        let p = srv.create_product(&admin, &child_id, name, &[(&unique_str("SH").to_uppercase(), price, 10)]).await;
        apparel_ids.push(id_of(&p["id"]));
    }
    let p = srv.create_product(&admin, &root_id, "QA Apron", &[(&unique_str("AP").to_uppercase(), 2000, 10)]).await;
    apparel_ids.push(id_of(&p["id"]));
    for (name, price) in [("QA Book A", 500), ("QA Book B", 700)] {
        srv.create_product(&admin, &books_id, name, &[(&unique_str("BK").to_uppercase(), price, 10)]).await;
    }
    let r = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "QA Draft Shirt", "category_id": child_id,
                   "variants": [{"sku": unique_str("DR").to_uppercase(), "price": {"amount": 100, "currency": "USD"}, "stock": 3}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], json!("draft"), "default status is draft");
    let draft_id = id_of(&r.body["id"]);

    // category by slug includes subcategories; drafts are never listed
    let slug = root["slug"].as_str().unwrap();
    let listed = srv.collect_all(&format!("/products?category={slug}"), None).await;
    let ids: Vec<String> = listed.iter().map(|p| id_of(&p["id"])).collect();
    let mut expected = apparel_ids.clone();
    expected.sort();
    let mut got = ids.clone();
    got.sort();
    assert_eq!(got, expected, "category={slug} should list exactly the 4 apparel products");
    assert!(!ids.contains(&draft_id));
    // by id too
    let by_id: Vec<String> =
        srv.collect_all(&format!("/products?category={root_id}"), None).await.iter().map(|p| id_of(&p["id"])).collect();
    let mut by_id_sorted = by_id.clone();
    by_id_sorted.sort();
    assert_eq!(by_id_sorted, expected, "category by id");
    // the child category alone
    assert_eq!(srv.collect_all(&format!("/products?category={child_id}"), None).await.len(), 3);

    // item shape
    let item = &listed[0];
    for key in ["id", "slug", "name", "price", "category_id"] {
        assert!(item.get(key).is_some(), "list item lacks {key}: {item}");
    }
    assert_eq!(item["price"]["currency"], json!("USD"));
    assert!(item["price"]["amount"].is_i64());

    // sorting
    let prices = |v: &Vec<Value>| v.iter().map(|p| amount(&p["price"])).collect::<Vec<_>>();
    let asc = srv.get(&format!("/products?category={root_id}&sort=price_asc"), None).await;
    assert_eq!(prices(items(&asc.body)), vec![900, 1500, 2000, 3100], "{}", asc.text);
    let desc = srv.get(&format!("/products?category={root_id}&sort=price_desc"), None).await;
    assert_eq!(prices(items(&desc.body)), vec![3100, 2000, 1500, 900], "{}", desc.text);
    let by_name = srv.get(&format!("/products?category={root_id}&sort=name"), None).await;
    let names: Vec<&str> = items(&by_name.body).iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["QA Apron", "QA Shirt Blue", "QA Shirt Green", "QA Shirt Red"]);
    let newest = srv.get(&format!("/products?category={root_id}&sort=newest"), None).await;
    let newest_ids: Vec<String> = items(&newest.body).iter().map(|p| id_of(&p["id"])).collect();
    let mut rev = apparel_ids.clone();
    rev.reverse();
    assert_eq!(newest_ids, rev, "newest first");
    assert_problem(&srv.get("/products?sort=bogus", None).await, 422, "validation");

    // price filters (inclusive bounds)
    let f = srv.get(&format!("/products?category={root_id}&min_price=1000&max_price=2000&sort=price_asc"), None).await;
    assert_eq!(prices(items(&f.body)), vec![1500, 2000], "{}", f.text);

    // pagination: limit=2 walks every product exactly once
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/products?category={root_id}&sort=price_asc&limit=2&cursor={}", urlencode(c)),
            None => format!("/products?category={root_id}&sort=price_asc&limit=2"),
        };
        let r = srv.get(&path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let page = items(&r.body);
        assert!(page.len() <= 2);
        for p in page {
            assert!(seen.insert(id_of(&p["id"])), "product listed twice across pages: {p}");
        }
        pages += 1;
        match &r.body["next_cursor"] {
            Value::Null => break,
            Value::String(c) => cursor = Some(c.clone()),
            other => panic!("bad next_cursor {other}"),
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(pages, 2, "4 products at limit 2 is 2 pages");

    // default limit 20 and max 100: 5 seeded + 6 published = 11 total
    let all = srv.get("/products", None).await;
    assert_eq!(all.status, 200);
    let n = items(&all.body).len();
    assert!(n <= 20, "default limit is 20, got {n}");
    srv.get("/products?limit=100", None).await.expect(200);
    assert_problem(&srv.get("/products?limit=0", None).await, 422, "validation");
    assert_problem(&srv.get("/products?limit=101", None).await, 422, "validation");
    assert_problem(&srv.get("/products?cursor=garbage!!cursor", None).await, 422, "validation");
    assert_problem(&srv.get("/products?cursor=bm90LWEtY3Vyc29y", None).await, 422, "validation");
}

#[tokio::test]
async fn catalog_default_page_size_is_20() {
    let srv = TestServer::start(25);
    let r = srv.get("/products", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(items(&r.body).len(), 20, "default limit");
    assert!(r.body["next_cursor"].is_string(), "25 products: a next page exists");
    let all = srv.collect_all("/products", None).await;
    assert_eq!(all.len(), 25);
}

#[tokio::test]
async fn product_detail_etag_and_visibility() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("Detail"), None).await;
    let cat_id = id_of(&cat["id"]);
    let sku_a = unique_str("DA").to_uppercase();
    let sku_b = unique_str("DB").to_uppercase();
    let p = srv.create_product(&admin, &cat_id, "QA Detail Lamp", &[(&sku_a, 2599, 7), (&sku_b, 2999, 0)]).await;
    let id = id_of(&p["id"]);
    let slug = p["slug"].as_str().expect("slug").to_string();
    assert!(!slug.is_empty());
    assert_eq!(p["status"], json!("published"));

    let r = srv.get(&format!("/products/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.body;
    assert_eq!(id_of(&d["id"]), id);
    assert_eq!(d["slug"], json!(slug));
    assert_eq!(d["name"], json!("QA Detail Lamp"));
    assert_eq!(d["description"], json!("QA Detail Lamp description"));
    assert_eq!(d["status"], json!("published"));
    assert_eq!(id_of(&d["category"]["id"]), cat_id);
    assert_eq!(d["category"]["slug"], cat["slug"]);
    assert_eq!(d["category"]["name"], cat["name"]);
    assert!(d.get("price").is_some(), "detail lacks price: {d}");
    assert!(d["created_at"].is_string() && d["updated_at"].is_string(), "timestamps: {d}");
    let variants = d["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 2);
    let va = variants.iter().find(|v| v["sku"] == json!(sku_a)).expect("variant a");
    assert_eq!(va["price"], json!({"amount": 2599, "currency": "USD"}));
    assert_eq!(va["options"], json!({"size": "S0"}));
    assert_eq!(va["weight_grams"], json!(250));
    assert!(va.get("available").is_some(), "variant lacks available: {va}");
    let vb = variants.iter().find(|v| v["sku"] == json!(sku_b)).expect("variant b");
    // out-of-stock variant is not more available than the stocked one
    match (&va["available"], &vb["available"]) {
        (Value::Bool(a), Value::Bool(b)) => assert!(*a && !*b, "available flags: {va} {vb}"),
        (Value::Number(a), Value::Number(b)) => assert_eq!((a.as_i64(), b.as_i64()), (Some(7), Some(0))),
        other => panic!("unexpected `available` values {other:?}"),
    }

    // by slug: the same product
    let rs = srv.get(&format!("/products/{slug}"), None).await;
    assert_eq!(rs.status, 200, "{}", rs.text);
    assert_eq!(id_of(&rs.body["id"]), id);

    // ETag / Cache-Control / 304
    let etag = r.header("etag").unwrap_or_else(|| panic!("no ETag: {:?}", r.headers));
    assert!(r.header("cache-control").is_some(), "no Cache-Control: {:?}", r.headers);
    let r304 = send(srv.rb(Method::GET, &format!("/products/{id}"), None).header("if-none-match", &etag)).await;
    assert_eq!(r304.status, 304, "If-None-Match with the current ETag: {}", r304.text);
    assert!(r304.text.is_empty(), "304 with a body: {}", r304.text);
    assert!(r304.header("x-request-id").is_some(), "304 without x-request-id");
    let r200 =
        send(srv.rb(Method::GET, &format!("/products/{id}"), None).header("if-none-match", "\"something-else\"")).await;
    assert_eq!(r200.status, 200);

    // changes are visible immediately and change the ETag
    let r = srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"name": "QA Detail Lamp II"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], json!("QA Detail Lamp II"));
    let after = send(srv.rb(Method::GET, &format!("/products/{id}"), None).header("if-none-match", &etag)).await;
    assert_eq!(after.status, 200, "old ETag must not match after a change: {}", after.text);
    assert_eq!(after.body["name"], json!("QA Detail Lamp II"));
    assert_ne!(after.header("etag"), Some(etag.clone()));
    let by_slug = srv.get(&format!("/products/{slug}"), None).await;
    assert_eq!(by_slug.body["name"], json!("QA Detail Lamp II"), "slug lookup is stale");

    let r = srv
        .patch(
            &format!("/admin/variants/{sku_a}"),
            Some(&admin),
            json!({"price": {"amount": 2199, "currency": "USD"}, "weight_grams": 300}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sku"], json!(sku_a));
    assert_eq!(r.body["price"], json!({"amount": 2199, "currency": "USD"}));
    let d = srv.get(&format!("/products/{id}"), None).await.body;
    let va = d["variants"].as_array().unwrap().iter().find(|v| v["sku"] == json!(sku_a)).unwrap().clone();
    assert_eq!(va["price"]["amount"], json!(2199), "variant price change not visible: {d}");
    assert_eq!(va["weight_grams"], json!(300));
    assert_problem(
        &srv.patch("/admin/variants/NO-SUCH-SKU", Some(&admin), json!({"weight_grams": 1})).await,
        404,
        "not-found",
    );
    assert_problem(
        &srv.patch(
            &format!("/admin/variants/{sku_a}"),
            Some(&admin),
            json!({"price": {"amount": 100, "currency": "EUR"}}),
        )
        .await,
        422,
        "validation",
    );

    // draft and archived products are invisible
    let r = srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"status": "draft"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_problem(&srv.get(&format!("/products/{id}"), None).await, 404, "not-found");
    assert_problem(&srv.get(&format!("/products/{slug}"), None).await, 404, "not-found");
    srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"status": "published"})).await.expect(200);
    srv.get(&format!("/products/{id}"), None).await.expect(200);
    srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"status": "archived"})).await.expect(200);
    assert_problem(&srv.get(&format!("/products/{id}"), None).await, 404, "not-found");
    let listed = srv.collect_all("/products", None).await;
    assert!(!listed.iter().any(|p| p["id"] == json!(id)), "archived product still listed");

    assert_problem(&srv.get("/products/987654321", None).await, 404, "not-found");
    assert_problem(&srv.get("/products/no-such-slug", None).await, 404, "not-found");
    assert_problem(&srv.patch("/admin/products/987654321", Some(&admin), json!({"name": "x"})).await, 404, "not-found");
    // an unknown status value: a validation error, or a schema (malformed-body) error
    let r = srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"status": "bogus"})).await;
    match r.status {
        400 => assert_problem(&r, 400, "malformed-body"),
        _ => assert_problem(&r, 422, "validation"),
    }
}

#[tokio::test]
async fn detail_reflects_category_and_stock_changes_immediately() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let cat_a = srv.create_category(&admin, &unique_str("CatA"), None).await;
    let cat_b = srv.create_category(&admin, &unique_str("CatB"), None).await;
    let sku = unique_str("AV").to_uppercase();
    let p = srv.create_product(&admin, &id_of(&cat_a["id"]), "QA Availability", &[(&sku, 1000, 5)]).await;
    let id = id_of(&p["id"]);
    let before = srv.get(&format!("/products/{id}"), None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let available_before = before.body["variants"][0]["available"].clone();
    assert!(available_before == json!(true) || available_before == json!(5), "in stock: {}", before.text);

    let r = srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"category_id": cat_b["id"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = srv.get(&format!("/products/{id}"), None).await.body;
    assert_eq!(d["category"]["id"], cat_b["id"], "category change not visible: {d}");
    assert_eq!(d["category"]["slug"], cat_b["slug"]);

    srv.put(&format!("/admin/inventory/{sku}"), Some(&admin), json!({"available": 0})).await.expect(200);
    let d = srv.get(&format!("/products/{id}"), None).await.body;
    let available = d["variants"][0]["available"].clone();
    assert!(
        available == json!(false) || available == json!(0),
        "stock set to 0 but the detail still says {available}: {d}"
    );
}

/// A product page missing every cache is one read of the database (product,
/// variants and stock together), and a burst of requests for it shares that
/// read instead of each making its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_for_a_cold_product_page_make_one_database_read() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("Cold"), None).await;
    let sku = unique_str("COLD").to_uppercase();
    let name = unique_str("QA Cold Page");
    let p = srv.create_product(&admin, &id_of(&cat["id"]), &name, &[(&sku, 1000, 7)]).await;
    let slug = p["slug"].as_str().expect("slug").to_string();
    // The creation's events must be delivered before the restart: a relay
    // delivering them during the burst would (rightly) invalidate the product.
    let indexed = poll_until(Duration::from_secs(10), || async {
        srv.get(&format!("/search?q={}", urlencode(&name)), None).await.body["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["slug"] == json!(slug)))
    })
    .await;
    assert!(indexed, "the product's events were never delivered");
    // A restart empties every cache: the first request is cold.
    let srv = std::sync::Arc::new(srv.restart());
    srv.get("/categories", None).await.expect(200);
    let product_loads = srv.metric("mercato_cache_loads_total{cache=\"product\"}").await;
    let stock_loads = srv.metric("mercato_cache_loads_total{cache=\"stock\"}").await;
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (srv, path) = (srv.clone(), format!("/products/{slug}"));
            tokio::spawn(async move { srv.get(&path, None).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let available = r.body["variants"][0]["available"].clone();
        assert!(available == json!(7) || available == json!(true), "{}", r.text);
    }
    let loads = srv.metric("mercato_cache_loads_total{cache=\"product\"}").await - product_loads;
    assert_eq!(loads, 1.0, "product reads for one cold page");
    // The first read brings the stock along; a request that looks before that
    // read has kept it may read the stock once more.
    let stock = srv.metric("mercato_cache_loads_total{cache=\"stock\"}").await - stock_loads;
    assert!(stock <= 1.0, "{stock} separate stock reads");
}

#[tokio::test]
async fn category_filter_includes_nested_subcategories_and_cursors_are_stable() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let root = srv.create_category(&admin, &unique_str("Root"), None).await;
    let root_id = id_of(&root["id"]);
    let child = srv.create_category(&admin, &unique_str("Child"), Some(&root_id)).await;
    let grandchild = srv.create_category(&admin, &unique_str("Grandchild"), Some(&id_of(&child["id"]))).await;
    let tree = srv.get("/categories", None).await;
    let node = items(&tree.body).iter().find(|c| c["id"] == root["id"]).cloned().expect("root in tree");
    assert_eq!(node["children"][0]["id"], child["id"], "{node}");
    assert_eq!(node["children"][0]["children"][0]["id"], grandchild["id"], "grandchild in tree: {node}");

    let deep = srv
        .create_product(&admin, &id_of(&grandchild["id"]), "QA Deep", &[(&unique_str("DP").to_uppercase(), 100, 1)])
        .await;
    let listed = srv.collect_all(&format!("/products?category={root_id}"), None).await;
    assert!(listed.iter().any(|p| p["id"] == deep["id"]), "category filter misses grand-children: {listed:?}");
    let by_slug = srv.collect_all(&format!("/products?category={}", root["slug"].as_str().unwrap()), None).await;
    assert!(by_slug.iter().any(|p| p["id"] == deep["id"]));

    // cursor pagination (newest first) does not repeat or skip when newer products arrive
    let cat_id = id_of(&srv.create_category(&admin, &unique_str("Paged"), None).await["id"]);
    let mut created = Vec::new();
    for i in 0..5 {
        let p = srv
            .create_product(
                &admin,
                &cat_id,
                &format!("QA Paged {i}"),
                &[(&unique_str("PG").to_uppercase(), 100 + i, 1)],
            )
            .await;
        created.push(id_of(&p["id"]));
    }
    let page1 = srv.get(&format!("/products?category={cat_id}&sort=newest&limit=2"), None).await;
    assert_eq!(page1.status, 200, "{}", page1.text);
    let cursor = page1.body["next_cursor"].as_str().expect("next_cursor").to_string();
    for i in 5..7 {
        srv.create_product(
            &admin,
            &cat_id,
            &format!("QA Paged {i}"),
            &[(&unique_str("PG").to_uppercase(), 100 + i, 1)],
        )
        .await;
    }
    let page2 =
        srv.get(&format!("/products?category={cat_id}&sort=newest&limit=2&cursor={}", urlencode(&cursor)), None).await;
    assert_eq!(page2.status, 200, "{}", page2.text);
    let got: Vec<String> = items(&page1.body).iter().chain(items(&page2.body)).map(|p| id_of(&p["id"])).collect();
    let want: Vec<String> = created.iter().rev().take(4).cloned().collect();
    assert_eq!(got, want, "pages 1+2 of newest-first, with newer products added in between");
}

#[tokio::test]
async fn orders_keep_their_prices_when_the_catalog_changes() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1200, 10).await;
    let alice = srv.new_customer().await;
    let order = srv.order_one(&alice, &sku, 2).await;
    let id = id_of(&order["id"]);
    assert_eq!(amount(&order["total"]), 2400 + 499);
    srv.patch(&format!("/admin/variants/{sku}"), Some(&admin), json!({"price": {"amount": 9900, "currency": "USD"}}))
        .await
        .expect(200);
    let o = srv.get(&format!("/orders/{id}"), Some(&alice)).await.body;
    assert_eq!(amount(&o["total"]), 2899, "an existing order was repriced: {o}");
    assert_eq!(amount(&o["subtotal"]), 2400);
    let r = srv.pay(&alice, &id, CARD_OK).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(amount(&r.body["amount"]), 2899, "payment charged the new price");
}

#[tokio::test]
async fn carts_show_price_and_publication_changes_at_once() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1200, 10).await;
    let alice = srv.new_customer().await;
    let cart = srv.add_to_cart(&alice, &sku, 2).await.expect(200).clone();
    assert_eq!(amount(&cart["totals"]["subtotal"]), 2400, "{cart}");
    srv.patch(&format!("/admin/variants/{sku}"), Some(&admin), json!({"price": {"amount": 1500, "currency": "USD"}}))
        .await
        .expect(200);
    // The cart is priced from the same cache as product pages; the write
    // invalidated it, so the very next view has the new price.
    let cart = srv.get("/cart", Some(&alice)).await;
    assert_eq!(amount(&cart.body["totals"]["subtotal"]), 3000, "cart kept the old price: {}", cart.text);
    let order = srv.place_order(&alice, &unique_str("k")).await;
    assert_eq!(order.status, 201, "{}", order.text);
    assert_eq!(amount(&order.body["subtotal"]), 3000, "checkout priced from a stale price");
}

#[tokio::test]
async fn admin_product_creation_rules() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let cat_id = id_of(&srv.create_category(&admin, &unique_str("Rules"), None).await["id"]);
    let sku = unique_str("RULE").to_uppercase();

    let r = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "QA Rule Mug", "slug": "qa-rule-mug", "category_id": cat_id, "status": "published",
                   "variants": [{"sku": sku, "price": {"amount": 1200, "currency": "USD"}, "options": {"color": "white"}, "weight_grams": 400, "stock": 4}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["slug"], json!("qa-rule-mug"));
    assert_eq!(r.body["status"], json!("published"));
    assert_eq!(r.body["variants"][0]["sku"], json!(sku));
    assert_eq!(r.body["variants"][0]["options"], json!({"color": "white"}));
    let (available, reserved, sold) = srv.stock(&admin, &sku).await;
    assert_eq!((available, reserved, sold), (4, 0, 0), "initial stock from `stock`");

    let variant = |s: &str| json!([{"sku": s, "price": {"amount": 100, "currency": "USD"}}]);
    // duplicate SKU
    let r = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "Dup SKU", "category_id": cat_id, "variants": variant(&sku)}),
        )
        .await;
    assert_problem(&r, 409, "conflict");
    // duplicate slug
    let r = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "Dup slug", "slug": "qa-rule-mug", "category_id": cat_id, "variants": variant(&unique_str("X"))}),
        )
        .await;
    assert_problem(&r, 409, "conflict");
    // wrong currency
    let r = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "Euro", "category_id": cat_id, "variants": [{"sku": unique_str("EU"), "price": {"amount": 100, "currency": "EUR"}}]}),
        )
        .await;
    assert_problem(&r, 422, "validation");
    // no variants
    let r = srv
        .post("/admin/products", Some(&admin), json!({"name": "Empty", "category_id": cat_id, "variants": []}))
        .await;
    assert_problem(&r, 422, "validation");
    // malformed
    let r = srv.raw(Method::POST, "/admin/products", Some(&admin), "{\"name\": ", Some("application/json")).await;
    assert_problem(&r, 400, "malformed-body");
    // slug generated when absent and unique even for the same name
    let a = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "Same Name", "category_id": cat_id, "variants": variant(&unique_str("SA"))}),
        )
        .await;
    let b = srv
        .post(
            "/admin/products",
            Some(&admin),
            json!({"name": "Same Name", "category_id": cat_id, "variants": variant(&unique_str("SB"))}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(b.status, 201, "a second product with the same name (no slug given): {}", b.text);
    assert!(a.body["slug"].as_str().is_some_and(|s| !s.is_empty()));
    assert_ne!(a.body["slug"], b.body["slug"]);
    // none of the failed attempts left anything behind
    let r = srv.get(&format!("/products?category={cat_id}&limit=100"), None).await;
    assert_eq!(items(&r.body).len(), 1, "only the published mug is listed: {}", r.text);
}

// ---------------------------------------------------------------- inventory

#[tokio::test]
async fn inventory_admin_set_adjust_and_history() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 500, 0).await;

    let r = srv
        .put(&format!("/admin/inventory/{sku}"), Some(&admin), json!({"available": 10, "reason": "initial count"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sku"], json!(sku));
    assert_eq!(
        (r.body["available"].clone(), r.body["reserved"].clone(), r.body["sold"].clone()),
        (json!(10), json!(0), json!(0))
    );

    assert_problem(
        &srv.put("/admin/inventory/NO-SUCH-SKU", Some(&admin), json!({"available": 1})).await,
        404,
        "not-found",
    );
    assert_problem(&srv.get("/admin/inventory/NO-SUCH-SKU", Some(&admin)).await, 404, "not-found");
    assert_problem(
        &srv.put(&format!("/admin/inventory/{sku}"), Some(&admin), json!({"available": -1})).await,
        422,
        "validation",
    );
    assert_problem(
        &srv.put(&format!("/admin/inventory/{sku}"), Some(&admin), json!({"available": "ten"})).await,
        422,
        "validation",
    );

    let r = srv
        .post(&format!("/admin/inventory/{sku}/adjustments"), Some(&admin), json!({"delta": 5, "reason": "restock"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["available"], json!(15));
    let r = srv
        .post(&format!("/admin/inventory/{sku}/adjustments"), Some(&admin), json!({"delta": -3, "reason": "damaged"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["available"], json!(12));

    let r = srv
        .post(&format!("/admin/inventory/{sku}/adjustments"), Some(&admin), json!({"delta": -13, "reason": "too much"}))
        .await;
    assert!(r.status == 409 || r.status == 422, "negative result must be refused: {} {}", r.status, r.text);
    assert_problem_status(&r, r.status);
    if r.status == 409 {
        assert_eq!(r.body["code"], json!("conflict"));
    } else {
        assert_eq!(r.body["code"], json!("validation"));
    }
    assert_problem(
        &srv.post("/admin/inventory/NO-SUCH-SKU/adjustments", Some(&admin), json!({"delta": 1, "reason": "x"})).await,
        404,
        "not-found",
    );

    let inv = srv.inventory(&admin, &sku).await;
    assert_eq!(inv["available"], json!(12), "refused adjustment changed stock: {inv}");
    assert_eq!(inv["reserved"], json!(0));
    assert_eq!(inv["sold"], json!(0));
    let adj = inv["adjustments"].as_array().unwrap_or_else(|| panic!("no adjustments: {inv}"));
    let pairs: Vec<(i64, i64)> =
        adj.iter().map(|a| (a["delta"].as_i64().unwrap(), a["available_after"].as_i64().unwrap())).collect();
    assert!(pairs.contains(&(5, 15)), "restock adjustment missing: {inv}");
    assert!(pairs.contains(&(-3, 12)), "damage adjustment missing: {inv}");
    assert!(!pairs.iter().any(|(d, _)| *d == -13), "refused adjustment recorded: {inv}");
    let restock = adj.iter().find(|a| a["delta"] == json!(5)).unwrap();
    assert_eq!(restock["reason"], json!("restock"));
    assert!(restock["created_at"].is_string());

    // the public detail reflects stock
    srv.put(&format!("/admin/inventory/{sku}"), Some(&admin), json!({"available": 0})).await.expect(200);
    let customer = srv.new_customer().await;
    assert_problem(&srv.add_to_cart(&customer, &sku, 1).await, 409, "out-of-stock");
}

// ---------------------------------------------------------------- cart

#[tokio::test]
async fn guest_cart_lines_errors_and_shipping() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1250, 20).await;
    let sku2 = srv.quick_sku(&admin, 4000, 3).await;

    // a new guest has an empty cart
    let r = srv.get("/cart", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(items(&r.body).is_empty());
    assert_eq!(amount(&r.body["totals"]["subtotal"]), 0);

    let r = srv.post("/cart/items", None, json!({"sku": sku, "quantity": 2})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cart_token =
        r.header("x-cart-token").unwrap_or_else(|| panic!("first guest write has no X-Cart-Token: {:?}", r.headers));
    let guest = |rb: reqwest::RequestBuilder| rb.header("x-cart-token", cart_token.clone());

    let r = send(guest(srv.rb(Method::POST, "/cart/items", None)).json(&json!({"sku": sku, "quantity": 1}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let line = cart_line(&r.body, &sku).unwrap_or_else(|| panic!("line missing: {}", r.text));
    assert_eq!(line["quantity"], json!(3), "adding an existing SKU adds to it");
    assert_eq!(items(&r.body).len(), 1);
    assert_eq!(line["unit_price"], json!({"amount": 1250, "currency": "USD"}));
    assert_eq!(amount(&line["line_total"]), 3750);
    assert!(line["product_id"].is_string() && line["name"].is_string(), "line shape: {line}");
    assert!(line.get("options").is_some(), "line lacks options: {line}");
    let t = &r.body["totals"];
    assert_eq!(amount(&t["subtotal"]), 3750);
    assert_eq!(amount(&t["discount"]), 0);
    assert_eq!(amount(&t["shipping"]), 499, "standard shipping under 50.00");
    assert_eq!(amount(&t["tax"]), 0);
    assert_eq!(amount(&t["total"]), 3750 + 499);
    assert_eq!(t["total"]["currency"], json!("USD"), "totals are money objects: {t}");

    // GET with the token returns it
    let r = send(guest(srv.rb(Method::GET, "/cart", None))).await;
    assert_eq!(cart_line(&r.body, &sku).unwrap()["quantity"], json!(3));
    // without the token, or with another token: not this cart
    let r = srv.get("/cart", None).await;
    assert!(items(&r.body).is_empty(), "a tokenless guest sees another cart: {}", r.text);
    let r = send(srv.rb(Method::GET, "/cart", None).header("x-cart-token", "forged-token-123")).await;
    assert!(
        r.status == 200 && items(&r.body).is_empty() || r.status >= 400,
        "a forged cart token sees a cart: {}",
        r.text
    );
    if r.status >= 400 {
        assert_problem_status(&r, r.status);
    }

    // errors
    let post = |body: Value| send(guest(srv.rb(Method::POST, "/cart/items", None)).json(&body));
    assert_problem(&post(json!({"sku": "NO-SUCH-SKU", "quantity": 1})).await, 404, "not-found");
    assert_problem(&post(json!({"sku": sku, "quantity": 0})).await, 422, "validation");
    assert_problem(&post(json!({"sku": sku, "quantity": -2})).await, 422, "validation");
    assert_problem(&post(json!({"sku": sku, "quantity": 101})).await, 422, "validation");
    assert_problem(&post(json!({"sku": sku, "quantity": 1_000_000})).await, 422, "validation");
    assert_problem(&post(json!({"sku": sku2, "quantity": 4})).await, 409, "out-of-stock");
    assert_problem(&post(json!({"sku": sku, "quantity": "two"})).await, 422, "validation");
    let r =
        send(guest(srv.rb(Method::POST, "/cart/items", None)).header("content-type", "application/json").body("{oops"))
            .await;
    assert_problem(&r, 400, "malformed-body");
    // 3 already in the cart + 18 more > 20 in stock
    assert_problem(&post(json!({"sku": sku, "quantity": 18})).await, 409, "out-of-stock");
    let r = send(guest(srv.rb(Method::GET, "/cart", None))).await;
    assert_eq!(items(&r.body).len(), 1, "failed adds changed the cart: {}", r.text);
    assert_eq!(cart_line(&r.body, &sku).unwrap()["quantity"], json!(3));

    // update, shipping threshold, express
    let r = send(guest(srv.rb(Method::PUT, &format!("/cart/items/{sku}"), None)).json(&json!({"quantity": 4}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cart_line(&r.body, &sku).unwrap()["quantity"], json!(4));
    assert_eq!(amount(&r.body["totals"]["subtotal"]), 5000);
    assert_eq!(amount(&r.body["totals"]["shipping"]), 0, "free standard shipping at 50.00");
    assert_eq!(amount(&r.body["totals"]["total"]), 5000);
    let r = send(guest(srv.rb(Method::PUT, &format!("/cart/items/{sku}"), None)).json(&json!({"quantity": 0}))).await;
    assert!(r.status == 422 || (r.status == 200 && cart_line(&r.body, &sku).is_none()), "PUT quantity 0: {}", r.text);
    if r.status == 200 {
        // removed: put it back
        send(guest(srv.rb(Method::POST, "/cart/items", None)).json(&json!({"sku": sku, "quantity": 4})))
            .await
            .expect(200);
    } else {
        assert_problem(&r, 422, "validation");
    }
    assert_problem(
        &send(guest(srv.rb(Method::PUT, &format!("/cart/items/{sku}"), None)).json(&json!({"quantity": 101}))).await,
        422,
        "validation",
    );
    assert_problem(
        &send(guest(srv.rb(Method::PUT, &format!("/cart/items/{sku}"), None)).json(&json!({"quantity": 21}))).await,
        409,
        "out-of-stock",
    );
    let r = send(guest(srv.rb(Method::PUT, "/cart/shipping-method", None)).json(&json!({"code": "express"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(guest(srv.rb(Method::GET, "/cart", None))).await;
    assert_eq!(amount(&r.body["totals"]["shipping"]), 1499, "express is never free: {}", r.text);
    assert_eq!(amount(&r.body["totals"]["total"]), 5000 + 1499);
    assert_problem(
        &send(guest(srv.rb(Method::PUT, "/cart/shipping-method", None)).json(&json!({"code": "teleport"}))).await,
        422,
        "validation",
    );
    send(guest(srv.rb(Method::PUT, "/cart/shipping-method", None)).json(&json!({"code": "standard"})))
        .await
        .expect(200);

    // delete
    send(guest(srv.rb(Method::POST, "/cart/items", None)).json(&json!({"sku": sku2, "quantity": 1}))).await.expect(200);
    let r = send(guest(srv.rb(Method::DELETE, &format!("/cart/items/{sku}"), None))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(cart_line(&r.body, &sku).is_none());
    assert_eq!(cart_line(&r.body, &sku2).unwrap()["quantity"], json!(1));
    assert_eq!(amount(&r.body["totals"]["subtotal"]), 4000);
    assert_eq!(amount(&r.body["totals"]["shipping"]), 499);
    assert_eq!(amount(&r.body["totals"]["total"]), 4499);
}

#[tokio::test]
async fn carts_are_private() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 800, 50).await;
    let alice = srv.new_customer().await;
    let bob = srv.new_customer().await;

    let r = srv.add_to_cart(&alice, &sku, 2).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let alice_cart_token = r.header("x-cart-token");

    let r = srv.get("/cart", Some(&bob)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(items(&r.body).is_empty(), "bob sees alice's cart: {}", r.text);
    let r = srv.get("/cart", None).await;
    assert!(items(&r.body).is_empty(), "a guest sees a customer's cart: {}", r.text);
    if let Some(t) = &alice_cart_token {
        // even if a customer response leaked a cart token, it must not open her cart
        let r = send(srv.rb(Method::GET, "/cart", None).header("x-cart-token", t)).await;
        assert!(
            r.status >= 400 || items(&r.body).is_empty(),
            "alice's cart token opens her cart as a guest: {}",
            r.text
        );
        let r = send(srv.rb(Method::GET, "/cart", Some(&bob)).header("x-cart-token", t)).await;
        assert!(r.status >= 400 || cart_line(&r.body, &sku).is_none(), "bob + alice's cart token: {}", r.text);
    }
    // bob's writes do not touch alice's cart
    srv.add_to_cart(&bob, &sku, 5).await.expect(200);
    let r = srv.delete(&format!("/cart/items/{sku}"), Some(&bob)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(cart_line(&r.body, &sku).is_none());
    let r = srv.get("/cart", Some(&alice)).await;
    assert_eq!(
        cart_line(&r.body, &sku).unwrap_or_else(|| panic!("alice lost her line: {}", r.text))["quantity"],
        json!(2)
    );
    let r = srv.get("/cart", Some(&bob)).await;
    assert!(items(&r.body).is_empty(), "{}", r.text);
}

#[tokio::test]
async fn guest_cart_merges_into_customer_cart_at_login() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku_a = srv.quick_sku(&admin, 1000, 50).await;
    let sku_b = srv.quick_sku(&admin, 300, 50).await;
    let email = format!("{}@example.com", unique_str("merge"));
    let customer = srv.register_and_login(&email).await;
    srv.add_to_cart(&customer, &sku_a, 1).await.expect(200);

    let r = srv.post("/cart/items", None, json!({"sku": sku_a, "quantity": 2})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let guest_token = r.header("x-cart-token").expect("X-Cart-Token");
    send(
        srv.rb(Method::POST, "/cart/items", None)
            .header("x-cart-token", &guest_token)
            .json(&json!({"sku": sku_b, "quantity": 1})),
    )
    .await
    .expect(200);

    let r = send(
        srv.rb(Method::POST, "/auth/login", None)
            .header("x-cart-token", &guest_token)
            .json(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "login with X-Cart-Token: {}", r.text);
    let token = r.body["access_token"].as_str().unwrap().to_string();

    let cart = srv.get("/cart", Some(&token)).await;
    assert_eq!(cart.status, 200, "{}", cart.text);
    assert_eq!(items(&cart.body).len(), 2, "merged cart: {}", cart.text);
    assert_eq!(
        cart_line(&cart.body, &sku_a).unwrap()["quantity"],
        json!(3),
        "quantities of one SKU add up: {}",
        cart.text
    );
    assert_eq!(cart_line(&cart.body, &sku_b).unwrap()["quantity"], json!(1));
    assert_eq!(amount(&cart.body["totals"]["subtotal"]), 3300);
    // the older token sees the same customer cart
    let old = srv.get("/cart", Some(&customer)).await;
    assert_eq!(cart_line(&old.body, &sku_a).unwrap()["quantity"], json!(3));

    // the guest token no longer opens anything of the customer's
    let r = send(srv.rb(Method::GET, "/cart", None).header("x-cart-token", &guest_token)).await;
    assert!(r.status >= 400 || items(&r.body).is_empty(), "guest token still shows items after the merge: {}", r.text);

    // merging again with the spent token adds nothing
    let r = send(
        srv.rb(Method::POST, "/auth/login", None)
            .header("x-cart-token", &guest_token)
            .json(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cart = srv.get("/cart", Some(&token)).await;
    assert_eq!(cart_line(&cart.body, &sku_a).unwrap()["quantity"], json!(3), "merged twice: {}", cart.text);
}

#[tokio::test]
async fn totals_with_tax_rate_and_order_amounts() {
    let srv = TestServer::start_with(0, &[("MERCATO_SHOP_TAX_RATE_BP", "825")]);
    let admin = srv.admin_token().await;
    let cheap = srv.quick_sku(&admin, 501, 10).await;
    let pricey = srv.quick_sku(&admin, 2500, 10).await;
    let customer = srv.new_customer().await;

    // (501 + 499) * 8.25% = 82.5 -> 83 (half away from zero)
    let r = srv.add_to_cart(&customer, &cheap, 1).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = &r.body["totals"];
    assert_eq!(
        (
            amount(&t["subtotal"]),
            amount(&t["discount"]),
            amount(&t["shipping"]),
            amount(&t["tax"]),
            amount(&t["total"])
        ),
        (501, 0, 499, 83, 1083),
        "totals: {t}"
    );
    // express: (501 + 1499) * 8.25% = 165
    srv.put("/cart/shipping-method", Some(&customer), json!({"code": "express"})).await.expect(200);
    let t = srv.get("/cart", Some(&customer)).await.body["totals"].clone();
    assert_eq!((amount(&t["shipping"]), amount(&t["tax"]), amount(&t["total"])), (1499, 165, 2165), "totals: {t}");
    srv.put("/cart/shipping-method", Some(&customer), json!({"code": "standard"})).await.expect(200);

    // 2 x 25.00 = 50.00: free shipping, tax 412.5 -> 413
    srv.delete(&format!("/cart/items/{cheap}"), Some(&customer)).await.expect(200);
    let r = srv.add_to_cart(&customer, &pricey, 2).await;
    let t = &r.body["totals"];
    assert_eq!(
        (amount(&t["subtotal"]), amount(&t["shipping"]), amount(&t["tax"]), amount(&t["total"])),
        (5000, 0, 413, 5413),
        "totals: {t}"
    );
    // (2500 + 501 + 499) * 8.25% = 288.75 -> 289
    srv.put(&format!("/cart/items/{pricey}"), Some(&customer), json!({"quantity": 1})).await.expect(200);
    let r = srv.add_to_cart(&customer, &cheap, 1).await;
    let t = &r.body["totals"];
    assert_eq!(
        (amount(&t["subtotal"]), amount(&t["shipping"]), amount(&t["tax"]), amount(&t["total"])),
        (3001, 499, 289, 3789),
        "totals: {t}"
    );
    srv.delete(&format!("/cart/items/{cheap}"), Some(&customer)).await.expect(200);
    srv.put(&format!("/cart/items/{pricey}"), Some(&customer), json!({"quantity": 2})).await.expect(200);

    // the order carries the same amounts
    let r = srv.place_order(&customer, &unique_str("tax")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let o = &r.body;
    assert_eq!(
        (
            amount(&o["subtotal"]),
            amount(&o["discount"]),
            amount(&o["shipping"]),
            amount(&o["tax"]),
            amount(&o["total"])
        ),
        (5000, 0, 0, 413, 5413),
        "order: {o}"
    );
    assert_eq!(o["currency"], json!("USD"));

    // shipping_method given on the order itself
    srv.add_to_cart(&customer, &cheap, 1).await.expect(200);
    let key = unique_str("tax");
    let body = json!({"shipping_address": address(), "shipping_method": "express"});
    let r = srv.place_order_with(&customer, &key, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let o = &r.body;
    assert_eq!(
        (amount(&o["subtotal"]), amount(&o["shipping"]), amount(&o["tax"]), amount(&o["total"])),
        (501, 1499, 165, 2165),
        "express order: {o}"
    );
    // Its retry is answered from the record, before the shipping method would
    // be set on a cart again: no new cart appears.
    let again = srv.place_order_with(&customer, &key, body).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"), "{}", again.text);
    assert_eq!(again.body["id"], o["id"]);
    let cart = srv.get("/cart", Some(&customer)).await;
    assert!(cart.body["id"].is_null(), "a replay created a cart: {}", cart.text);
}

// ---------------------------------------------------------------- orders

#[tokio::test]
async fn order_placement_idempotency_ownership_and_cancel() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 10).await;
    let sku_b = srv.quick_sku(&admin, 700, 2).await;
    let (alice, alice_id) = srv.register_and_login_full(&format!("{}@example.com", unique_str("alice"))).await;
    let bob = srv.new_customer().await;

    // auth & empty cart
    let r = send(
        srv.rb(Method::POST, "/orders", None)
            .header("Idempotency-Key", unique_str("k"))
            .json(&json!({"shipping_address": address()})),
    )
    .await;
    assert_problem(&r, 401, "unauthorized");
    assert_problem(&srv.place_order(&alice, &unique_str("k")).await, 422, "empty-cart");

    srv.add_to_cart(&alice, &sku, 3).await.expect(200);

    // invalid address (missing fields: see order_address_validation)
    let mut blank = address();
    blank["line1"] = json!("");
    let r = srv.place_order_with(&alice, &unique_str("k"), json!({"shipping_address": blank})).await;
    assert_problem(&r, 422, "validation");
    assert_eq!(srv.stock(&admin, &sku).await, (10, 0, 0), "failed orders reserved stock");

    // success
    let key = unique_str("order");
    let body = json!({"shipping_address": address()});
    let r = srv.place_order_with(&alice, &key, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let order = r.body.clone();
    let order_id = id_of(&order["id"]);
    assert_eq!(order["status"], json!("pending_payment"));
    assert_eq!(order["currency"], json!("USD"));
    let lines = order["items"].as_array().expect("items");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sku"], json!(sku));
    assert_eq!(lines[0]["quantity"], json!(3));
    assert_eq!(
        (
            amount(&order["subtotal"]),
            amount(&order["discount"]),
            amount(&order["shipping"]),
            amount(&order["tax"]),
            amount(&order["total"])
        ),
        (3000, 0, 499, 0, 3499)
    );
    assert_eq!(order["shipping_address"]["city"], json!("London"));
    assert_eq!(order["shipping_address"]["line1"], json!("12 Analytical Engine St"));
    assert!(order["payment_due_at"].is_string(), "payment_due_at: {order}");
    assert_eq!(srv.stock(&admin, &sku).await, (7, 3, 0), "reservation");
    let cart = srv.get("/cart", Some(&alice)).await;
    assert!(items(&cart.body).is_empty(), "cart not emptied by the order: {}", cart.text);

    // replay: same order, nothing new
    let r = srv.place_order_with(&alice, &key, body.clone()).await;
    assert_eq!(r.status, 201, "replay: {}", r.text);
    assert_eq!(id_of(&r.body["id"]), order_id, "replay created another order");
    assert_eq!(srv.stock(&admin, &sku).await, (7, 3, 0), "replay reserved again");
    assert_eq!(srv.collect_all("/orders", Some(&alice)).await.len(), 1);
    // same key, different body
    let mut other_addr = address();
    other_addr["name"] = json!("Someone Else");
    let r = srv.place_order_with(&alice, &key, json!({"shipping_address": other_addr})).await;
    assert_problem(&r, 422, "idempotency-key-reused");
    // another customer with the same key never gets alice's order
    let r = srv.place_order_with(&bob, &key, body.clone()).await;
    assert_ne!(r.body["id"], json!(order_id), "bob got alice's order via her idempotency key: {}", r.text);

    // ownership
    let r = srv.get(&format!("/orders/{order_id}"), Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(id_of(&r.body["id"]), order_id);
    assert_eq!(r.body["status"], json!("pending_payment"));
    assert_problem(&srv.get(&format!("/orders/{order_id}"), Some(&bob)).await, 404, "not-found");
    assert_problem(&srv.get(&format!("/orders/{order_id}"), None).await, 401, "unauthorized");
    assert_problem(&srv.get("/orders/987654321987", Some(&alice)).await, 404, "not-found");
    let bobs = srv.collect_all("/orders", Some(&bob)).await;
    assert!(!bobs.iter().any(|o| o["id"] == json!(order_id)), "alice's order in bob's list");
    assert_problem(&srv.post_empty(&format!("/orders/{order_id}/cancel"), Some(&bob)).await, 404, "not-found");
    assert_eq!(srv.order_status(&alice, &order_id).await, "pending_payment");

    // insufficient stock on one line: nothing is reserved for any line
    srv.add_to_cart(&alice, &sku, 5).await.expect(200);
    srv.add_to_cart(&alice, &sku_b, 2).await.expect(200);
    srv.put(&format!("/admin/inventory/{sku_b}"), Some(&admin), json!({"available": 1})).await.expect(200);
    let r = srv.place_order(&alice, &unique_str("k")).await;
    assert_problem(&r, 409, "out-of-stock");
    assert_eq!(srv.stock(&admin, &sku).await, (7, 3, 0), "partial reservation left behind");
    assert_eq!(srv.stock(&admin, &sku_b).await, (1, 0, 0));
    assert_eq!(srv.collect_all("/orders", Some(&alice)).await.len(), 1);

    // second order; newest first with pagination
    let cart = srv.delete(&format!("/cart/items/{sku_b}"), Some(&alice)).await;
    assert_eq!(cart.status, 200, "{}", cart.text);
    assert_eq!(
        cart_line(&cart.body, &sku).map(|l| l["quantity"].clone()),
        Some(json!(5)),
        "a failed (out-of-stock) checkout changed the cart: {}",
        cart.text
    );
    let r = srv.place_order(&alice, &unique_str("k")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second_id = id_of(&r.body["id"]);
    assert_eq!(srv.stock(&admin, &sku).await, (2, 8, 0));
    let p1 = srv.get("/orders?limit=1", Some(&alice)).await;
    assert_eq!(p1.status, 200, "{}", p1.text);
    assert_eq!(items(&p1.body).len(), 1);
    assert_eq!(id_of(&items(&p1.body)[0]["id"]), second_id, "newest first");
    let cursor = p1.body["next_cursor"].as_str().unwrap_or_else(|| panic!("no next_cursor: {}", p1.text)).to_string();
    let p2 = srv.get(&format!("/orders?limit=1&cursor={}", urlencode(&cursor)), Some(&alice)).await;
    assert_eq!(p2.status, 200, "{}", p2.text);
    assert_eq!(items(&p2.body).len(), 1);
    assert_eq!(id_of(&items(&p2.body)[0]["id"]), order_id);
    assert!(p2.body["next_cursor"].is_null(), "last page: {}", p2.text);
    let all_alice = srv.collect_all(&format!("/admin/orders?customer_id={alice_id}"), Some(&admin)).await;
    assert_eq!(all_alice.len(), 2, "admin list filtered by customer");

    // cancel returns the stock; cancel twice is illegal
    let r = srv.post_empty(&format!("/orders/{order_id}/cancel"), Some(&alice)).await;
    assert_eq!(r.status, 200, "cancel: {}", r.text);
    assert_eq!(r.body["status"], json!("cancelled"));
    assert_eq!(srv.order_status(&alice, &order_id).await, "cancelled");
    assert_eq!(srv.stock(&admin, &sku).await, (5, 5, 0), "cancel did not release stock");
    assert_problem(
        &srv.post_empty(&format!("/orders/{order_id}/cancel"), Some(&alice)).await,
        409,
        "illegal-transition",
    );
    assert_problem(&srv.pay(&alice, &order_id, CARD_OK).await, 409, "illegal-transition");
    assert_eq!(srv.stock(&admin, &sku).await, (5, 5, 0));
}

#[tokio::test]
async fn order_address_validation() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 10).await;
    let alice = srv.new_customer().await;
    srv.add_to_cart(&alice, &sku, 1).await.expect(200);

    let mut cases = Vec::new();
    for field in ["name", "line1", "city", "postal_code", "country"] {
        let mut a = address();
        a.as_object_mut().unwrap().remove(field);
        cases.push((a, format!("missing {field}")));
        let mut a = address();
        a[field] = json!("");
        cases.push((a, format!("empty {field}")));
    }
    let mut a = address();
    a["city"] = json!("   ");
    cases.push((a, "blank city".to_string()));
    let mut failures = Vec::new();
    for (addr, what) in cases {
        let r = srv.place_order_with(&alice, &unique_str("k"), json!({"shipping_address": addr})).await;
        if !(r.status == 422
            && r.body["code"] == json!("validation")
            && r.content_type().starts_with("application/problem+json"))
        {
            failures.push(format!("{what}: expected 422 validation, got {} {}", r.status, r.text));
        }
    }
    assert_eq!(srv.stock(&admin, &sku).await, (10, 0, 0), "invalid orders reserved stock");
    assert!(failures.is_empty(), "address validation:\n{}", failures.join("\n"));
    // the valid address still works afterwards
    srv.place_order(&alice, &unique_str("k")).await.expect(201);
}

// ---------------------------------------------------------------- payments

#[tokio::test]
async fn payment_declined_then_succeeds() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 2000, 5).await;
    let alice = srv.new_customer().await;
    let bob = srv.new_customer().await;
    let order = srv.order_one(&alice, &sku, 2).await;
    let id = id_of(&order["id"]);
    let total = amount(&order["total"]);
    assert_eq!(total, 4499);

    let r =
        srv.post(&format!("/orders/{id}/payments"), None, json!({"method": "test_card", "card_number": CARD_OK})).await;
    assert_problem(&r, 401, "unauthorized");
    assert_problem(&srv.pay(&bob, &id, CARD_OK).await, 404, "not-found");
    assert_problem(&srv.pay(&alice, &id, "4242424242424241").await, 422, "validation");
    assert_problem(&srv.pay(&alice, "987654321987", CARD_OK).await, 404, "not-found");
    let r = srv
        .raw(Method::POST, &format!("/orders/{id}/payments"), Some(&alice), "{\"method\":", Some("application/json"))
        .await;
    assert_problem(&r, 400, "malformed-body");
    assert_eq!(srv.order_status(&alice, &id).await, "pending_payment");

    let r = srv.pay(&alice, &id, CARD_DECLINED).await;
    assert_problem(&r, 402, "payment-declined");
    assert_eq!(srv.order_status(&alice, &id).await, "pending_payment");
    assert_eq!(srv.stock(&admin, &sku).await, (3, 2, 0));

    let r = srv.pay(&alice, &id, CARD_OK).await;
    assert_eq!(r.status, 201, "payment: {}", r.text);
    id_of(&r.body["id"]);
    assert_eq!(r.body["status"], json!("succeeded"));
    assert_eq!(amount(&r.body["amount"]), total);
    assert_eq!(id_of(&r.body["order_id"]), id);
    assert!(
        srv.wait_order_status(&alice, &id, "paid", Duration::from_secs(3)).await,
        "order not paid after a successful payment"
    );
    let moved = poll_until(Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == (3, 0, 2) }).await;
    assert!(moved, "stock did not move from reserved to sold: {:?}", srv.stock(&admin, &sku).await);

    assert_problem(&srv.pay(&alice, &id, CARD_OK).await, 409, "illegal-transition");
    assert_problem(&srv.post_empty(&format!("/orders/{id}/cancel"), Some(&alice)).await, 409, "illegal-transition");
    assert_eq!(srv.order_status(&alice, &id).await, "paid");
}

#[tokio::test]
async fn payment_idempotency_key_replays_the_payment() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 2000, 5).await;
    let alice = srv.new_customer().await;
    // payment idempotency key replay gives the same payment
    let order2 = srv.order_one(&alice, &sku, 1).await;
    let id2 = id_of(&order2["id"]);
    let pay = |key: &str| {
        send(
            srv.rb(Method::POST, &format!("/orders/{id2}/payments"), Some(&alice))
                .header("Idempotency-Key", key)
                .json(&json!({"method": "test_card", "card_number": CARD_OK})),
        )
    };
    let pkey = unique_str("pay");
    let first = pay(&pkey).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = pay(&pkey).await;
    assert_eq!(again.status, 201, "payment replay with the same key: {}", again.text);
    assert_eq!(again.body["id"], first.body["id"], "payment replay created another payment");
    assert!(srv.wait_order_status(&alice, &id2, "paid", Duration::from_secs(3)).await);
    let moved = poll_until(Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == (4, 0, 1) }).await;
    assert!(moved, "a replayed payment must not sell twice: {:?}", srv.stock(&admin, &sku).await);
}

#[tokio::test]
async fn async_payment_settles_through_webhook() {
    let srv = TestServer::start_with(0, &[("MERCATO_PAYMENTS_ASYNC_SETTLE_MS", "500")]);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1500, 4).await;
    let alice = srv.new_customer().await;
    let order = srv.order_one(&alice, &sku, 1).await;
    let id = id_of(&order["id"]);

    let r = srv.pay(&alice, &id, CARD_ASYNC).await;
    assert_eq!(r.status, 202, "async payment: {}", r.text);
    assert_eq!(r.body["status"], json!("processing"));
    assert!(
        srv.wait_order_status(&alice, &id, "paid", Duration::from_secs(10)).await,
        "order not paid by the webhook within 10 s"
    );
    let moved = poll_until(Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == (3, 0, 1) }).await;
    assert!(moved, "stock after async payment: {:?}", srv.stock(&admin, &sku).await);

    // forged webhooks are refused
    let r = srv
        .raw(
            Method::POST,
            "/payments/webhooks/test",
            None,
            r#"{"type":"payment.succeeded","order_id":"1"}"#,
            Some("application/json"),
        )
        .await;
    assert!(r.status >= 400 && r.status < 500, "unsigned webhook accepted: {} {}", r.status, r.text);
    assert_problem_status(&r, r.status);
}

#[tokio::test]
async fn unpaid_orders_expire_and_release_stock() {
    let srv = TestServer::start_with(
        0,
        &[("MERCATO_ORDERS_PAYMENT_TIMEOUT_SECS", "2"), ("MERCATO_ORDERS_SWEEP_INTERVAL_MS", "200")],
    );
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 5).await;
    let alice = srv.new_customer().await;
    let unpaid = id_of(&srv.order_one(&alice, &sku, 2).await["id"]);
    let paid = id_of(&srv.order_one(&alice, &sku, 1).await["id"]);
    assert_eq!(srv.stock(&admin, &sku).await, (2, 3, 0));
    srv.pay(&alice, &paid, CARD_OK).await.expect(201);

    assert!(
        srv.wait_order_status(&alice, &unpaid, "cancelled", Duration::from_secs(8)).await,
        "unpaid order not cancelled after the timeout: {}",
        srv.order_status(&alice, &unpaid).await
    );
    let settled = poll_until(Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == (4, 0, 1) }).await;
    assert!(settled, "stock after expiry: {:?}", srv.stock(&admin, &sku).await);
    assert_eq!(srv.order_status(&alice, &paid).await, "paid", "a paid order must not expire");
    assert_problem(&srv.pay(&alice, &unpaid, CARD_OK).await, 409, "illegal-transition");
}

// ---------------------------------------------------------------- admin orders

#[tokio::test]
async fn admin_order_lifecycle_and_refunds() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 20).await;
    let (alice, alice_id) = srv.register_and_login_full(&format!("{}@example.com", unique_str("a"))).await;
    let (bob, bob_id) = srv.register_and_login_full(&format!("{}@example.com", unique_str("b"))).await;
    let o1 = id_of(&srv.order_one(&alice, &sku, 1).await["id"]); // total 1499
    let o2 = id_of(&srv.order_one(&bob, &sku, 2).await["id"]); // total 2499

    // listing and filters
    let all = srv.collect_all("/admin/orders", Some(&admin)).await;
    let ids: HashSet<String> = all.iter().map(|o| id_of(&o["id"])).collect();
    assert_eq!(ids, HashSet::from([o1.clone(), o2.clone()]));
    let mine = srv.collect_all(&format!("/admin/orders?customer_id={alice_id}"), Some(&admin)).await;
    assert_eq!(mine.iter().map(|o| id_of(&o["id"])).collect::<Vec<_>>(), vec![o1.clone()]);
    let bobs = srv.collect_all(&format!("/admin/orders?customer_id={bob_id}"), Some(&admin)).await;
    assert_eq!(bobs.iter().map(|o| id_of(&o["id"])).collect::<Vec<_>>(), vec![o2.clone()]);
    assert_eq!(srv.collect_all("/admin/orders?status=pending_payment", Some(&admin)).await.len(), 2);
    assert!(srv.collect_all("/admin/orders?status=paid", Some(&admin)).await.is_empty());
    let page = srv.get("/admin/orders?limit=1", Some(&admin)).await;
    assert_eq!(items(&page.body).len(), 1, "{}", page.text);
    assert!(page.body["next_cursor"].is_string(), "{}", page.text);

    // illegal transitions from pending_payment
    let act =
        |id: &str, action: &str| send(srv.rb(Method::POST, &format!("/admin/orders/{id}/{action}"), Some(&admin)));
    assert_problem(&act(&o1, "fulfil").await, 409, "illegal-transition");
    assert_problem(&act(&o1, "complete").await, 409, "illegal-transition");
    assert_problem(
        &srv.post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": 100})).await,
        409,
        "illegal-transition",
    );
    assert_problem(&act("987654321987", "fulfil").await, 404, "not-found");

    // paid -> fulfilled -> completed, with partial refunds
    srv.pay(&alice, &o1, CARD_OK).await.expect(201);
    assert!(srv.wait_order_status(&alice, &o1, "paid", Duration::from_secs(3)).await);
    assert_problem(&act(&o1, "complete").await, 409, "illegal-transition");
    let r = act(&o1, "fulfil").await;
    assert_eq!(r.status, 200, "fulfil: {}", r.text);
    assert_eq!(r.body["status"], json!("fulfilled"));
    assert_problem(&act(&o1, "fulfil").await, 409, "illegal-transition");
    assert_problem(&act(&o1, "cancel").await, 409, "illegal-transition");
    let r = act(&o1, "complete").await;
    assert_eq!(r.status, 200, "complete: {}", r.text);
    assert_eq!(r.body["status"], json!("completed"));
    assert_eq!(srv.order_status(&alice, &o1).await, "completed");

    let r = srv
        .post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": 500, "reason": "scratched"}))
        .await;
    assert!(r.status == 200 || r.status == 201, "partial refund: {}", r.text);
    let o = srv.get(&format!("/orders/{o1}"), Some(&alice)).await.body;
    assert_eq!(amount(&o["refunded"]), 500, "refunded after a partial refund: {o}");
    assert_eq!(o["status"], json!("completed"));
    let r = srv.post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": 1000})).await;
    assert_problem(&r, 422, "validation");
    for bad in [0, -5] {
        let r = srv.post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": bad})).await;
        assert_problem(&r, 422, "validation");
    }
    let o = srv.get(&format!("/orders/{o1}"), Some(&alice)).await.body;
    assert_eq!(amount(&o["refunded"]), 500, "an over-refund changed the refunded amount");
    let r =
        srv.post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": 999, "reason": "rest"})).await;
    assert!(r.status == 200 || r.status == 201, "final refund: {}", r.text);
    let o = srv.get(&format!("/orders/{o1}"), Some(&alice)).await.body;
    assert_eq!(amount(&o["refunded"]), 1499);
    assert_eq!(o["status"], json!("refunded"), "fully refunded order: {o}");
    let r = srv.post(&format!("/admin/orders/{o1}/refunds"), Some(&admin), json!({"amount": 1})).await;
    assert!(
        (r.status == 422 && r.body["code"] == json!("validation"))
            || (r.status == 409 && r.body["code"] == json!("illegal-transition")),
        "refund on a refunded order: {} {}",
        r.status,
        r.text
    );

    // admin cancel of a pending order returns its stock
    let settled = poll_until(Duration::from_secs(3), || async { srv.stock(&admin, &sku).await.1 == 2 }).await;
    assert!(settled, "only o2's 2 units should be reserved: {:?}", srv.stock(&admin, &sku).await);
    let before = srv.stock(&admin, &sku).await;
    let r = act(&o2, "cancel").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], json!("cancelled"));
    assert_eq!(srv.order_status(&bob, &o2).await, "cancelled");
    let (available, reserved, _) = srv.stock(&admin, &sku).await;
    assert_eq!((available, reserved), (before.0 + 2, 0), "admin cancel did not release the reservation");
    assert_problem(&act(&o2, "cancel").await, 409, "illegal-transition");

    // admin cancel of a paid order refunds it in full
    let o3 = srv.order_one(&alice, &sku, 3).await;
    let o3_id = id_of(&o3["id"]);
    srv.pay(&alice, &o3_id, CARD_OK).await.expect(201);
    assert!(srv.wait_order_status(&alice, &o3_id, "paid", Duration::from_secs(3)).await);
    let r = act(&o3_id, "cancel").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let o = srv.get(&format!("/orders/{o3_id}"), Some(&alice)).await.body;
    assert_eq!(o["status"], json!("cancelled"));
    assert_eq!(amount(&o["refunded"]), amount(&o3["total"]), "paid order cancelled without a full refund: {o}");

    // refund without amount = the whole remainder
    let o4 = srv.order_one(&bob, &sku, 1).await;
    let o4_id = id_of(&o4["id"]);
    srv.pay(&bob, &o4_id, CARD_OK).await.expect(201);
    assert!(srv.wait_order_status(&bob, &o4_id, "paid", Duration::from_secs(3)).await);
    let r = srv
        .post(&format!("/admin/orders/{o4_id}/refunds"), Some(&admin), json!({"reason": "customer changed mind"}))
        .await;
    assert!(r.status == 200 || r.status == 201, "full refund: {}", r.text);
    let o = srv.get(&format!("/orders/{o4_id}"), Some(&bob)).await.body;
    assert_eq!(o["status"], json!("refunded"));
    assert_eq!(amount(&o["refunded"]), amount(&o4["total"]));

    let refunded: HashSet<String> =
        srv.collect_all("/admin/orders?status=refunded", Some(&admin)).await.iter().map(|o| id_of(&o["id"])).collect();
    assert_eq!(refunded, HashSet::from([o1.clone(), o4_id.clone()]));
    let cancelled: HashSet<String> =
        srv.collect_all("/admin/orders?status=cancelled", Some(&admin)).await.iter().map(|o| id_of(&o["id"])).collect();
    assert_eq!(cancelled, HashSet::from([o2.clone(), o3_id.clone()]));
}

/// A paid order that an admin cancelled (and so refunded) hears of its
/// payment again: `payment.succeeded` is delivered at least once, and under
/// load it can arrive after the cancel. That late report must not be taken
/// for a payment that landed on a cancelled order. It used to be: the
/// subscriber tried to refund again, failed (nothing left to refund), and the
/// relay, which stopped at an event a subscriber refused, stalled behind it.
#[tokio::test]
async fn a_late_payment_event_for_an_admin_cancelled_order_changes_nothing() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1500, 20).await;
    let customer = srv.new_customer().await;
    let order = srv.order_one(&customer, &sku, 1).await;
    let id = id_of(&order["id"]);
    srv.pay(&customer, &id, CARD_OK).await.expect(201);
    // The payment's event handled once (so it has its place in the outbox's
    // order, which the rewind below goes back to).
    let series = "outbox_handled_total{subscriber=\"orders.on-payment\"}";
    assert!(poll_until(Duration::from_secs(10), || async { srv.metric(series).await >= 1.0 }).await);
    let r = send(srv.rb(Method::POST, &format!("/admin/orders/{id}/cancel"), Some(&admin))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let total = amount(&order["total"]);
    assert_eq!(amount(&r.body["refunded"]), total, "{}", r.text);

    // Deliver the payment's event again, as after a crash between a
    // subscriber's work and its cursor's write.
    let mut srv = srv;
    srv.sigterm_and_wait(Duration::from_secs(10)).expect("the server stops");
    // The payment's own database, or (orders sharded) its order's shard's.
    let mut rewound = 0;
    for db in srv.open_domain_databases("payments") {
        let aggregate = id.clone();
        rewound += db
            .write(move |tx| {
                Ok(tx.execute(
                    "UPDATE outbox_cursors SET position = (SELECT seq - 1 FROM outbox \
                     WHERE kind = 'payment.succeeded' AND aggregate_id = $1) WHERE subscriber = 'orders.on-payment' \
                     AND position > (SELECT seq - 1 FROM outbox WHERE kind = 'payment.succeeded' AND aggregate_id = $1)",
                    mercato_platform::params![&aggregate],
                )?)
            })
            .await
            .unwrap();
    }
    assert_eq!(rewound, 1, "the payment subscriber's cursor");
    let srv = srv.restart();

    let handled = poll_until(Duration::from_secs(10), || async { srv.metric(series).await >= 1.0 }).await;
    let dead = srv.get("/admin/events/dead-letters", Some(&admin)).await;
    assert!(handled, "the payment event was not handled again; dead letters: {}", dead.text);
    assert_eq!(dead.expect(200)["items"], json!([]), "the repeat was accepted, not dead-lettered");
    let o = srv.get(&format!("/orders/{id}"), Some(&customer)).await;
    assert_eq!(o.body["status"], json!("cancelled"), "{}", o.text);
    assert_eq!(amount(&o.body["refunded"]), total, "refunded once: {}", o.text);
}

/// What the effects of a shop's events produced, as the API shows it.
async fn effects_snapshot(srv: &TestServer, admin: &str, customer: &str, skus: &[&str], orders: &[&str]) -> Value {
    let mut stock = Vec::new();
    for sku in skus {
        stock.push(json!(srv.stock(admin, sku).await));
    }
    let mut statuses = Vec::new();
    for id in orders {
        let o = srv.get(&format!("/orders/{id}"), Some(customer)).await;
        statuses.push(json!([o.body["status"], o.body["refunded"]]));
    }
    let promos = srv.get("/admin/promotions", Some(admin)).await.expect(200).clone();
    let hooks = srv.get("/admin/webhooks", Some(admin)).await.expect(200).clone();
    let mut deliveries = Vec::new();
    for h in hooks["items"].as_array().expect("endpoints") {
        let d = srv.get(&format!("/admin/webhooks/{}/deliveries?limit=100", id_of(&h["id"])), Some(admin)).await;
        let mut kinds: Vec<String> = d.expect(200)["items"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|x| format!("{}:{}", x["event_type"].as_str().unwrap_or(""), x["event_id"]))
            .collect();
        kinds.sort();
        deliveries.push(json!(kinds));
    }
    let cart = srv.get("/cart", Some(customer)).await;
    json!({
        "stock": stock,
        "orders": statuses,
        "promotion_uses": promos["items"].as_array().expect("promotions").iter().map(|p| p["used"].clone()).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "cart_items": cart.body["items"].as_array().map(|a| a.len()),
    })
}

/// Waits until the snapshot stops changing (every event handled).
async fn settled_snapshot(srv: &TestServer, admin: &str, customer: &str, skus: &[&str], orders: &[&str]) -> Value {
    let mut last = effects_snapshot(srv, admin, customer, skus, orders).await;
    let mut stable = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = effects_snapshot(srv, admin, customer, skus, orders).await;
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        if stable >= 4 {
            break;
        }
    }
    last
}

/// At-least-once delivery never applies an effect twice: after a workload
/// (orders paid, cancelled, coupons used, webhooks recorded), every
/// subscriber's cursor in every database is rewound to the start, as after a
/// crash that lost them all, and every event is delivered again. The shop's
/// state does not move, and nothing is dead-lettered.
#[tokio::test]
async fn every_event_delivered_again_changes_nothing() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let (a, b) = (srv.quick_sku(&admin, 3000, 10).await, srv.quick_sku(&admin, 1200, 10).await);
    srv.post(
        "/admin/promotions",
        Some(&admin),
        json!({"code": unique_str("AGAIN").to_uppercase(), "name": "Again", "kind": "fixed", "value": 300}),
    )
    .await
    .expect(201);
    let code = srv.get("/admin/promotions", Some(&admin)).await.body["items"][0]["code"].as_str().unwrap().to_string();
    srv.post("/admin/webhooks", Some(&admin), json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]}))
        .await
        .expect(201);
    let customer = srv.new_customer().await;
    // Paid with the coupon; placed then cancelled (stock and use come back).
    srv.add_to_cart(&customer, &a, 2).await.expect(200);
    srv.post("/cart/coupon", Some(&customer), json!({"code": code})).await.expect(200);
    let paid = srv.place_order(&customer, &unique_str("key")).await.expect(201).clone();
    let paid = id_of(&paid["id"]);
    srv.pay(&customer, &paid, CARD_OK).await.expect(201);
    let cancelled = srv.order_one(&customer, &b, 3).await;
    let cancelled = id_of(&cancelled["id"]);
    srv.post_empty(&format!("/orders/{cancelled}/cancel"), Some(&customer)).await.expect(200);
    let pending = srv.order_one(&customer, &b, 1).await;
    let pending = id_of(&pending["id"]);

    let (skus, orders) = ([a.as_str(), b.as_str()], [paid.as_str(), cancelled.as_str(), pending.as_str()]);
    let before = settled_snapshot(&srv, &admin, &customer, &skus, &orders).await;
    assert_eq!(before["stock"], json!([[8, 0, 2], [9, 1, 0]]), "{before}");
    assert!(!before["deliveries"][0].as_array().unwrap().is_empty(), "{before}");

    let mut srv = srv;
    srv.sigterm_and_wait(Duration::from_secs(10)).expect("the server stops");
    let mut rewound = 0;
    for domain in [
        "platform",
        "catalog",
        "inventory",
        "customers",
        "cart",
        "orders",
        "payments",
        "promotions",
        "flashsale",
        "webhooks",
    ] {
        for db in srv.open_domain_databases(domain) {
            rewound += db
                .write(|tx| {
                    Ok(tx.execute(
                        "UPDATE outbox_cursors SET position = 0 WHERE position > 0",
                        mercato_platform::params![],
                    )?)
                })
                .await
                .unwrap();
        }
    }
    assert!(rewound >= 3, "the effects' cursors were rewound ({rewound})");
    let srv = srv.restart();

    let handled = poll_until(Duration::from_secs(20), || async {
        srv.metric("outbox_handled_total{subscriber=\"inventory.on-order\"}").await >= 1.0
            && srv.metric("outbox_handled_total{subscriber=\"webhooks.outgoing\"}").await >= 1.0
    })
    .await;
    assert!(handled, "the events were not delivered again");
    let after = settled_snapshot(&srv, &admin, &customer, &skus, &orders).await;
    assert_eq!(after, before, "a redelivered event changed the shop");
    let dead = srv.get("/admin/events/dead-letters", Some(&admin)).await;
    assert_eq!(dead.expect(200)["items"], json!([]), "repeats were refused: {}", dead.text);
}

/// A keyed payment retried after its first answer was lost gets the payment
/// back, even when the generic Idempotency-Key store has no answer for it
/// (here: the retry comes with a fresh token, so a different store scope;
/// in production: the instance died between the charge and storing its
/// answer). Another key on a paid order is still refused, and nothing is
/// charged twice.
#[tokio::test]
async fn a_keyed_payment_retried_after_a_lost_answer_gets_the_payment_not_a_refusal() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1200, 10).await;
    let email = unique_str("payer") + "@example.com";
    srv.register(&email).await.expect(201);
    let (first_token, _) = srv.login_customer(&email).await;
    let order = srv.order_one(&first_token, &sku, 1).await;
    let id = id_of(&order["id"]);
    let pay = |token: &str, key: &str| {
        srv.rb(Method::POST, &format!("/orders/{id}/payments"), Some(token))
            .header("Idempotency-Key", key)
            .json(&json!({"method": "test_card", "card_number": CARD_OK}))
    };
    let first = send(pay(&first_token, "pay-once")).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let (second_token, _) = srv.login_customer(&email).await;
    let again = send(pay(&second_token, "pay-once")).await;
    assert_eq!(again.status, 201, "the retry was refused: {}", again.text);
    assert_eq!(again.body["id"], first.body["id"], "the retry names another payment");
    assert_eq!(again.body["status"], json!("succeeded"));
    assert_problem(&send(pay(&second_token, "another-key")).await, 409, "illegal-transition");
    assert_eq!(srv.stock(&admin, &sku).await, (9, 0, 1), "one unit sold, once");
    let payment = srv.get(&format!("/orders/{id}"), Some(&second_token)).await.expect(200).clone();
    assert_eq!(payment["status"], json!("paid"));
}

/// An answer that says to come back later (429 or 409 with Retry-After) is
/// not kept as a key's answer: the retry it asks for, under the same
/// Idempotency-Key, runs again and gets the real outcome.
#[tokio::test]
async fn a_come_back_later_answer_is_not_replayed_for_its_idempotency_key() {
    let srv = TestServer::start_with(
        0,
        &[("MERCATO_AUTH_LOGIN_FAILURES_PER_ACCOUNT", "1"), ("MERCATO_AUTH_LOGIN_WINDOW_SECS", "1")],
    );
    let email = unique_str("later") + "@example.com";
    srv.register(&email).await.expect(201);
    assert_eq!(srv.login(&email, "wrong-password-1").await.status, 401);
    let login = || {
        srv.rb(Method::POST, "/auth/login", None)
            .header("Idempotency-Key", "login-once")
            .json(&json!({"email": email, "password": PASSWORD}))
    };
    let throttled = send(login()).await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert!(throttled.header("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = send(login()).await;
    assert_eq!(after.status, 200, "the retry got the stored 'later' again: {}", after.text);
    assert!(after.header("idempotent-replayed").is_none());
    // A final answer is kept: the same key now replays the login.
    let replay = send(login()).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed").as_deref(), Some("true"));
}

use crate::model::{Customer, Email, Principal, Role, validate_name, validate_password};
use crate::settings::AuthSettings;
use crate::store;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use mercato_contracts::customers::{Customers, LoginOutcome};
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::cache::{CacheHub, Tiered};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::ratelimit::RateLimiter;
use mercato_platform::{Db, now_ms, random_token, sha256_hex};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct CustomersService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    cfg: AuthSettings,
    argon: Argon2<'static>,
    limiter: RateLimiter,
    /// Sessions by token hash: every authenticated request needs one, so they
    /// are cached (shared through Redis when configured); logout invalidates.
    sessions: Tiered<String, store::Session>,
    /// Password hashes running at once: each takes `argon2_memory_kib` and a
    /// core, so a burst of logins queues here instead of spawning hundreds of
    /// blocking threads (seen as +250 MB RSS when 1,000 customers logged in).
    hashing: tokio::sync::Semaphore,
    /// Of those, the ones sign-ups may hold: at most half, so that a flood
    /// of registrations queues behind itself and logins keep the rest.
    signup_hashing: tokio::sync::Semaphore,
    /// Verified against when the email is unknown, so that a wrong email and a
    /// wrong password take the same time.
    dummy_hash: String,
}

const INVALID_LOGIN: &str = "email or password is incorrect";
/// The longest email address (RFC 5321's path limit).
const MAX_EMAIL_LEN: usize = 254;
/// Longer passwords are refused before hashing (hashing cost grows with them).
const MAX_PASSWORD_LEN: usize = 1024;

impl CustomersService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus, cfg: AuthSettings, cache: &CacheHub) -> Self {
        let params = Params::new(cfg.argon2_memory_kib, 2, 1, None).unwrap_or_default();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
        let dummy_hash = argon.hash_password(b"not-a-real-password", &salt).expect("hashing works").to_string();
        let limiter = RateLimiter::new(Duration::from_secs(cfg.login_window_secs), cache.redis().cloned());
        let sessions = cache.tiered("session");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hashing = tokio::sync::Semaphore::new(cores);
        let signup_hashing = tokio::sync::Semaphore::new((cores / 2).max(1));
        CustomersService {
            inner: Arc::new(Inner { db, ids, bus, cfg, argon, limiter, dummy_hash, sessions, hashing, signup_hashing }),
        }
    }

    async fn hash(&self, password: String) -> Result<String, Error> {
        let _turn = self.inner.hashing.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
            inner.argon.hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    }

    async fn verify(&self, password: String, hash: String) -> bool {
        let Ok(_turn) = self.inner.hashing.acquire().await else { return false };
        // Counted, so a test (and an operator) can see how many guesses the
        // throttle let reach the hash.
        metrics::counter!("auth_password_verifications_total").increment(1);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| inner.argon.verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false)
    }

    /// Makes sure the configured admin account exists. Returns the password when
    /// it had to generate one (first run without a configured password).
    pub async fn ensure_admin(&self, email: &str, configured_password: Option<&str>) -> Result<Option<String>, Error> {
        let email = Email::parse(email)?;
        let e = email.as_str().to_string();
        let exists = self.inner.db.read(move |tx| store::email_taken(tx, &e)).await?;
        let (password, generated) = match (exists, configured_password) {
            (true, None) => return Ok(None),
            (_, Some(p)) => {
                validate_password(p)?;
                (p.to_string(), false)
            }
            (false, None) => (random_token()[..20].to_string(), true),
        };
        let hash = self.hash(password.clone()).await?;
        let id = self.inner.ids.next()?;
        let e = email.as_str().to_string();
        self.inner.db.write(move |tx| store::upsert_admin(tx, id, &e, &hash)).await?;
        Ok(generated.then_some(password))
    }

    /// Deletes sessions that expired more than a day ago.
    pub async fn purge_sessions(&self) -> Result<u64, Error> {
        self.inner.db.write(|tx| store::purge_sessions(tx, now_ms() - 86_400_000)).await
    }
}

#[async_trait::async_trait]
impl Customers for CustomersService {
    /// Registers a customer. A taken email gets the same answer as a new one,
    /// after the same amount of work, so registration cannot be used to learn
    /// which emails have accounts.
    async fn register(&self, email: &str, password: &str, name: &str) -> Result<(String, String), Error> {
        let email = Email::parse(email)?;
        validate_password(password)?;
        let name = validate_name(name)?;
        // Sign-ups waiting for, or running, their hash: a flood shows here.
        let hashing = metrics::gauge!("auth_signups_hashing");
        hashing.increment(1.0);
        let hash = async {
            let _slot = self.inner.signup_hashing.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
            self.hash(password.to_string()).await
        }
        .await;
        hashing.decrement(1.0);
        let hash = hash?;
        let id = self.inner.ids.next()?;
        let (e, n) = (email.as_str().to_string(), name.clone());
        let created = self.inner.db.write(move |tx| store::register(tx, id, &e, &n, &hash)).await?;
        if created {
            self.inner.bus.wake();
        }
        Ok((email.as_str().to_string(), name))
    }
    async fn login(&self, email: &str, password: &str, address: &str) -> Result<LoginOutcome, Error> {
        let cfg = &self.inner.cfg;
        let limiter = &self.inner.limiter;
        let normalized = email.trim().to_lowercase();
        // No address is longer (RFC 5321): a longer one is not looked up,
        // hashed or made into a throttle's key.
        if normalized.len() > MAX_EMAIL_LEN || password.len() > MAX_PASSWORD_LEN {
            return Err(Error::unauthorized(INVALID_LOGIN));
        }
        // Attempts are counted before the password is verified, so parallel
        // ones cannot all pass. Per account *and client*: a stranger's
        // failures slow down that stranger, never the account's owner
        // elsewhere (behind a proxy, configure `http.trusted_proxies` so the
        // client is told apart). Per client, across accounts: guessing many
        // accounts from one place.
        let address_key = format!("addr:{address}");
        let account_key = format!("acct:{normalized}|{address}");
        let throttled = |wait: u64| {
            Error::new(ErrorCode::RateLimited, "too many failed login attempts; try again later").with_retry_after(wait)
        };
        limiter.attempt(&address_key, cfg.login_failures_per_address).await.map_err(throttled)?;
        if let Err(wait) = limiter.attempt(&account_key, cfg.login_failures_per_account).await {
            limiter.refund(&address_key).await;
            return Err(throttled(wait));
        }
        let e = normalized.clone();
        let row = self.inner.db.read(move |tx| store::by_email_with_hash(tx, &e)).await?;
        let (customer, hash) = match row {
            Some((customer, hash)) => (Some(customer), hash),
            None => (None, self.inner.dummy_hash.clone()),
        };
        let ok = self.verify(password.to_string(), hash).await;
        let Some(customer) = customer.filter(|_| ok) else {
            return Err(Error::unauthorized(INVALID_LOGIN));
        };
        // A success does not count against a client others may share (a
        // NAT, an office), and clears the account's count from here.
        limiter.reset(&account_key).await;
        limiter.refund(&address_key).await;
        let token = format!("mct_{}", random_token());
        let token_hash = sha256_hex(token.as_bytes());
        let ttl = cfg.token_ttl_secs;
        let (cid, role) = (customer.id, customer.role.as_str());
        self.inner.db.write(move |tx| store::open_session(tx, &token_hash, cid, role, ttl)).await?;
        Ok(LoginOutcome { access_token: token, expires_in: ttl, customer })
    }
    /// Resolves a bearer token. Expired and revoked tokens are told apart from
    /// unknown ones so clients know to log in again.
    async fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        let token_hash = sha256_hex(token.as_bytes());
        let db = self.inner.db.clone();
        let key = token_hash.clone();
        let session = self
            .inner
            .sessions
            .get_or_load(&key, || async move { db.lookup(move |tx| store::session(tx, &token_hash)).await })
            .await?
            .ok_or_else(|| Error::unauthorized("invalid access token"))?;
        if session.revoked || session.expires_at <= now_ms() {
            return Err(Error::new(ErrorCode::TokenExpired, "access token has expired or was revoked"));
        }
        Ok(Principal { customer_id: Id(session.customer_id), role: Role::parse(&session.role) })
    }
    async fn logout(&self, token: &str) -> Result<(), Error> {
        let token_hash = sha256_hex(token.as_bytes());
        self.inner.db.write(move |tx| store::revoke_session(tx, &token_hash)).await?;
        self.inner.sessions.invalidate(&sha256_hex(token.as_bytes())).await;
        Ok(())
    }
    async fn get(&self, id: Id) -> Result<Customer, Error> {
        self.inner
            .db
            .lookup(move |tx| store::by_id(tx, id)?.ok_or_else(|| Error::not_found("customer not found")))
            .await
    }
}

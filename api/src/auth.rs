//! API keys. Keys are stored only as SHA-256 hashes (`shop_id:<hex>` a line) and compared in
//! constant time. The key identifies the shop; the request body never does.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use infra::domain::ShopId;
use infra::ports::{KeyHash, KeyLookup, PortError, StoredKey, key_id};
use quick_cache::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Works only when no keys file is given and the server listens on a loopback address.
pub const DEVELOPMENT_KEY: &str = "dev-key-for-the-demo-shop";
pub const DEVELOPMENT_SHOP: &str = "demo";

#[derive(Debug, Clone)]
pub struct ApiKeys {
    entries: Vec<(ShopId, KeyHash)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the keys file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("keys file line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("the keys file holds no keys")]
    Empty,
    #[error(
        "refusing to listen on {0} without an API keys file: the development key is only for \
         loopback addresses. Create keys with `api keys new --shop NAME` and pass --api-keys-file \
         (or API_KEYS_FILE)"
    )]
    DevelopmentKeyOffLoopback(IpAddr),
}

impl ApiKeys {
    /// The keys for a server on `ip`: from the file if given, else the development key (loopback
    /// only).
    pub fn for_server(file: Option<&Path>, ip: IpAddr) -> Result<Self, KeysError> {
        match file {
            Some(path) => Self::from_file(path),
            None if ip.is_loopback() => Ok(Self::development()),
            None => Err(KeysError::DevelopmentKeyOffLoopback(ip)),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Reads `shop_id:<sha256 hex>` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, KeysError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem: String| KeysError::Line {
                line: index + 1,
                problem,
            };
            let (shop, hash) = line
                .rsplit_once(':')
                .ok_or_else(|| problem("expected shop_id:<sha256 hex>".to_owned()))?;
            let shop = ShopId::parse(shop.trim()).map_err(problem)?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hash.trim(), &mut digest)
                .map_err(|_| problem("the hash must be 64 hexadecimal characters".to_owned()))?;
            entries.push((shop, digest));
        }
        if entries.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Self { entries })
    }

    /// Each shop and the hash of its key.
    pub fn entries(&self) -> &[(ShopId, KeyHash)] {
        &self.entries
    }

    pub fn development() -> Self {
        let shop = ShopId::parse(DEVELOPMENT_SHOP).expect("the development shop id is valid");
        Self {
            entries: vec![(shop, hash_key(DEVELOPMENT_KEY))],
        }
    }

    /// Whose key this is. Every entry is compared, in constant time, so that timing reveals
    /// neither which entry matched nor how much of a hash did.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest = hash_key(presented);
        let mut found = None;
        for (shop, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(Caller {
                    shop: shop.clone(),
                    key_id: key_id(&digest),
                });
            }
        }
        found
    }
}

pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh random key (256 bits) and the keys-file line that admits it.
pub fn new_key(shop: &ShopId) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("tp_{}", hex::encode(secret));
    let line = format!("{shop}:{}", hex::encode(hash_key(&key)));
    (key, line)
}

/// Where the keys come from: fixed at start (a file, or the development key), or a table
/// looked up one key at a time, so that an operator adds, rotates or revokes a key without a
/// redeploy and no instance reads every shop's keys.
pub enum KeyRing {
    Fixed(ApiKeys),
    Table(TableKeys),
}

/// Why a key could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(transparent)]
    Unavailable(#[from] PortError),
    /// This instance looked up as many keys it had not seen as it allows per second.
    #[error("too many requests with API keys this server has not seen yet; retry shortly")]
    TooManyUnknownKeys,
}

impl KeyRing {
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, KeyCheckError> {
        match self {
            Self::Fixed(keys) => Ok(keys.authenticate(presented)),
            Self::Table(table) => table.authenticate(presented).await,
        }
    }
}

/// Keys from a [`KeyLookup`], each trusted for a while once looked up.
///
/// Known keys and unknown ones are cached apart, each bounded, so that a flood of made-up keys
/// cannot push out the keys in use. Lookups of keys this instance has not seen are rate
/// limited; a known key's refresh is not. If the table cannot answer, a known key keeps working
/// on what was last read, asked again once per `trust_for`, for at most [`MAX_STALE`].
pub struct TableKeys {
    lookup: Arc<dyn KeyLookup>,
    trust_for: Duration,
    known: Cache<KeyHash, Known>,
    unknown: Cache<KeyHash, Instant>,
    unknown_lookups: DefaultDirectRateLimiter,
}

/// A key as last read, when that was, and when the table was last asked for it.
#[derive(Clone)]
struct Known {
    key: StoredKey,
    read_at: Instant,
    asked_at: Instant,
}

/// How long a key read before keeps working while the table cannot answer: a revocation takes
/// effect within this even through an outage of the keys table.
pub const MAX_STALE: Duration = Duration::from_secs(10 * 60);

/// Enough for every key of 10,000 shops with two live keys each, and room to spare.
const KNOWN_KEYS: usize = 50_000;
const UNKNOWN_KEYS: usize = 10_000;

impl TableKeys {
    pub fn new(lookup: Arc<dyn KeyLookup>, trust_for: Duration, unknown_per_second: u32) -> Self {
        let rate = NonZeroU32::new(unknown_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            lookup,
            trust_for,
            known: Cache::new(KNOWN_KEYS),
            unknown: Cache::new(UNKNOWN_KEYS),
            unknown_lookups: RateLimiter::direct(Quota::per_second(rate)),
        }
    }

    async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, KeyCheckError> {
        let hash = hash_key(presented);
        let key = match self.known.get(&hash) {
            Some(known) if known.asked_at.elapsed() < self.trust_for => Some(known.key),
            Some(known) => self.refresh(&hash, known).await?,
            None => self.look_up_unseen(&hash).await?,
        };
        Ok(key
            .filter(|key| key.admits_at(Utc::now()))
            .map(|key| Caller {
                key_id: key.key_id(),
                shop: key.shop_id,
            }))
    }

    /// A known key read again. If the table cannot answer, what was last read holds until
    /// it is [`MAX_STALE`] old, and the table is asked again after `trust_for`, not on every
    /// request.
    async fn refresh(
        &self,
        hash: &KeyHash,
        known: Known,
    ) -> Result<Option<StoredKey>, KeyCheckError> {
        match self.lookup.find_key(hash).await {
            Ok(found) => Ok(self.remember(hash, found)),
            Err(error) if known.read_at.elapsed() < MAX_STALE => {
                tracing::warn!(%error, key_id = %known.key.key_id(), "could not read an API key again; trusting what was last read");
                let key = known.key.clone();
                self.known.insert(
                    *hash,
                    Known {
                        asked_at: Instant::now(),
                        ..known
                    },
                );
                Ok(Some(key))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn look_up_unseen(&self, hash: &KeyHash) -> Result<Option<StoredKey>, KeyCheckError> {
        if let Some(read_at) = self.unknown.get(hash)
            && read_at.elapsed() < self.trust_for
        {
            return Ok(None);
        }
        if self.unknown_lookups.check().is_err() {
            return Err(KeyCheckError::TooManyUnknownKeys);
        }
        let found = self.lookup.find_key(hash).await?;
        Ok(self.remember(hash, found))
    }

    fn remember(&self, hash: &KeyHash, found: Option<StoredKey>) -> Option<StoredKey> {
        match &found {
            Some(key) => {
                let now = Instant::now();
                let known = Known {
                    key: key.clone(),
                    read_at: now,
                    asked_at: now,
                };
                self.known.insert(*hash, known);
                self.unknown.remove(hash);
            }
            None => {
                self.known.remove(hash);
                self.unknown.insert(*hash, Instant::now());
            }
        }
        found
    }
}

/// Who sent a request: the shop, and the id of the key it used (which names it in a review's
/// history; the key itself is never kept). Extracting it answers 401 when the key is missing or
/// unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub shop: ShopId,
    pub key_id: String,
}

/// The shop of an authenticated request, for handlers that need only that.
#[derive(Debug, Clone)]
pub struct Shop(pub ShopId);

impl<S> FromRequestParts<S> for Shop
where
    S: Send + Sync,
    Arc<KeyRing>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Shop(caller.shop))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<KeyRing>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut headers = parts.headers.get_all(AUTHORIZATION).iter();
        let header = headers.next().ok_or(ApiError::Unauthorized(
            "send the API key as `Authorization: Bearer <key>`",
        ))?;
        // Refused, as repeated JSON keys are: a proxy that reads another of them would see
        // another shop than the one the API stores under.
        if headers.next().is_some() {
            return Err(ApiError::AmbiguousHeader("Authorization"));
        }
        let key = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, key) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <key>`",
            ))?;
        Arc::<KeyRing>::from_ref(state)
            .authenticate(key)
            .await
            .map_err(|error| match error {
                KeyCheckError::Unavailable(error) => ApiError::Port(error),
                KeyCheckError::TooManyUnknownKeys => ApiError::TooManyUnknownKeys,
            })?
            .ok_or(ApiError::Unauthorized("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// One stored key, and a switch that makes every lookup fail.
    struct Table {
        key: StoredKey,
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl KeyLookup for Table {
        async fn find_key(&self, hash: &KeyHash) -> Result<Option<StoredKey>, PortError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(PortError::unavailable("key store", "down"));
            }
            Ok((hash == &self.key.hash).then(|| self.key.clone()))
        }
    }

    fn table_keys(per_second: u32) -> (Arc<Table>, TableKeys) {
        let shop = ShopId::parse("shop-a").expect("valid");
        let key = StoredKey::new(hash_key("known"), shop, Utc::now());
        let table = Arc::new(Table {
            key,
            down: AtomicBool::new(false),
        });
        // Trusted for no time at all: every request reads the table again.
        let keys = TableKeys::new(table.clone(), Duration::ZERO, per_second);
        (table, keys)
    }

    #[tokio::test]
    async fn a_known_key_outlives_an_outage_of_the_table_and_an_unknown_one_does_not() {
        let (table, keys) = table_keys(100);
        let caller = keys.authenticate("known").await.expect("answered");
        assert_eq!(
            caller.map(|caller| caller.shop.to_string()),
            Some("shop-a".to_owned())
        );
        table.down.store(true, Ordering::SeqCst);
        let shop = keys.authenticate("known").await.expect("last read holds");
        assert!(shop.is_some());
        let unknown = keys.authenticate("never-seen").await;
        assert!(matches!(unknown, Err(KeyCheckError::Unavailable(_))));
    }

    #[tokio::test]
    async fn unknown_keys_are_looked_up_at_the_limited_rate_known_ones_are_not() {
        let (_, keys) = table_keys(1);
        assert!(
            keys.authenticate("known")
                .await
                .expect("looked up")
                .is_some()
        );
        assert!(keys.authenticate("made-up-1").await.is_err());
        for _ in 0..10 {
            assert!(
                keys.authenticate("known")
                    .await
                    .expect("not limited")
                    .is_some()
            );
        }
    }

    #[tokio::test]
    async fn an_expired_key_admits_nothing() {
        let (_, keys) = table_keys(100);
        let keys = TableKeys {
            trust_for: Duration::from_secs(60),
            ..keys
        };
        let shop = ShopId::parse("shop-b").expect("valid");
        let mut expired = StoredKey::new(hash_key("old"), shop, Utc::now());
        expired.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        keys.remember(&expired.hash, Some(expired.clone()));
        assert_eq!(keys.authenticate("old").await.expect("answered"), None);
    }

    #[test]
    fn a_generated_key_authenticates_its_shop_only() {
        let shop = ShopId::parse("shop-a").expect("valid");
        let (key, line) = new_key(&shop);
        assert!(key.len() >= 32, "at least 128 bits");
        let keys = ApiKeys::parse(&format!(
            "# a comment\n\n{line}\nother:{}\n",
            "0".repeat(64)
        ))
        .expect("parses");
        let caller = keys.authenticate(&key).expect("known");
        assert_eq!(caller.shop, shop);
        assert_eq!(caller.key_id.len(), 12, "an id, not the key");
        assert_eq!(keys.authenticate("not-the-key"), None);
        assert_eq!(keys.authenticate(""), None);
    }

    #[test]
    fn broken_key_files_say_which_line() {
        let error = ApiKeys::parse(
            "good:0000000000000000000000000000000000000000000000000000000000000000\nbad line\n",
        )
        .expect_err("second line is broken");
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(ApiKeys::parse("shop:abc").is_err());
        assert!(ApiKeys::parse("# only comments\n").is_err());
    }

    #[test]
    fn the_development_key_is_for_loopback_only() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let keys = ApiKeys::for_server(None, loopback).expect("dev keys on loopback");
        assert_eq!(
            keys.authenticate(DEVELOPMENT_KEY)
                .map(|c| c.shop.to_string()),
            Some("demo".to_owned())
        );
        let public: IpAddr = "0.0.0.0".parse().expect("ip");
        let error = ApiKeys::for_server(None, public).expect_err("refused off loopback");
        assert!(error.to_string().contains("--api-keys-file"), "{error}");
    }
}

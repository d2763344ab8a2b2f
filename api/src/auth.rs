//! API keys. Keys are stored only as SHA-256 hashes (`shop_id:<hex>` a line) and compared in
//! constant time. The key identifies the shop; the request body never does.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use infra::domain::ShopId;
use infra::ports::{Parameter, PortError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::RwLock;

use crate::error::ApiError;

/// Works only when no keys file is given and the server listens on a loopback address.
pub const DEVELOPMENT_KEY: &str = "dev-key-for-the-demo-shop";
pub const DEVELOPMENT_SHOP: &str = "demo";

#[derive(Debug, Clone)]
pub struct ApiKeys {
    entries: Vec<(ShopId, [u8; 32])>,
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

    pub fn development() -> Self {
        let shop = ShopId::parse(DEVELOPMENT_SHOP).expect("the development shop id is valid");
        Self {
            entries: vec![(shop, hash_key(DEVELOPMENT_KEY))],
        }
    }

    /// The shop whose key this is. Every entry is compared, in constant time, so that timing
    /// reveals neither which entry matched nor how much of a hash did.
    pub fn authenticate(&self, presented: &str) -> Option<ShopId> {
        let digest = hash_key(presented);
        let mut found = None;
        for (shop, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(shop.clone());
            }
        }
        found
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
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

/// Where the keys come from: fixed at start (a file, or the development key), or an SSM
/// parameter re-read after a short cache so that an operator can add or revoke keys without a
/// redeploy.
pub enum KeyRing {
    Fixed(ApiKeys),
    Ssm(SsmKeys),
}

pub struct SsmKeys {
    parameter: Arc<dyn Parameter>,
    cache_for: Duration,
    cached: RwLock<Option<(Instant, Arc<ApiKeys>)>>,
}

impl SsmKeys {
    pub fn new(parameter: Arc<dyn Parameter>, cache_for: Duration) -> Self {
        Self {
            parameter,
            cache_for,
            cached: RwLock::new(None),
        }
    }

    /// The current keys: from the cache while fresh, else from SSM. If SSM fails, stale keys
    /// are better than none; with no keys at all the request cannot be judged (503).
    pub async fn keys(&self) -> Result<Arc<ApiKeys>, PortError> {
        if let Some((read_at, keys)) = self.cached.read().await.as_ref()
            && read_at.elapsed() < self.cache_for
        {
            return Ok(keys.clone());
        }
        match self.fetch().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.cached.write().await = Some((Instant::now(), keys.clone()));
                Ok(keys)
            }
            Err(error) => {
                let stale = self
                    .cached
                    .read()
                    .await
                    .as_ref()
                    .map(|(_, keys)| keys.clone());
                tracing::warn!(%error, using_stale_keys = stale.is_some(), "could not read the API keys from SSM");
                stale.ok_or(error)
            }
        }
    }

    async fn fetch(&self) -> Result<ApiKeys, PortError> {
        let text = self.parameter.read().await?.ok_or_else(|| {
            PortError::unavailable(
                "key store",
                format!("the parameter {} does not exist", self.parameter.name()),
            )
        })?;
        ApiKeys::parse(&text).map_err(|error| PortError::unavailable("key store", error))
    }
}

impl KeyRing {
    pub async fn authenticate(&self, presented: &str) -> Result<Option<ShopId>, PortError> {
        match self {
            Self::Fixed(keys) => Ok(keys.authenticate(presented)),
            Self::Ssm(ssm) => Ok(ssm.keys().await?.authenticate(presented)),
        }
    }
}

/// The shop of an authenticated request: extracting it answers 401 when the key is missing or
/// unknown.
#[derive(Debug, Clone)]
pub struct Shop(pub ShopId);

impl<S> FromRequestParts<S> for Shop
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
            .await?
            .map(Shop)
            .ok_or(ApiError::Unauthorized("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(keys.authenticate(&key), Some(shop));
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
            keys.authenticate(DEVELOPMENT_KEY).map(|s| s.to_string()),
            Some("demo".to_owned())
        );
        let public: IpAddr = "0.0.0.0".parse().expect("ip");
        let error = ApiKeys::for_server(None, public).expect_err("refused off loopback");
        assert!(error.to_string().contains("--api-keys-file"), "{error}");
    }
}

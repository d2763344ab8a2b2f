//! The opaque cursor of a list walk: the position it reached, bound to the shop and to the
//! filters of the first page, and signed so that only this API can make one.
//!
//! On the wire: base64url of the JSON `{v, shop, filters, micros, id}` followed by the first
//! 16 bytes of its HMAC-SHA256 under the cursor key. A forged or altered cursor fails the
//! signature; a genuine one sent by another shop or with other filters is refused by name.
//! Every instance that serves a walk must hold the same key (`CURSOR_KEY`).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use infra::domain::{AlertListFilters, AlertPosition, FieldError, ListFilters, Position, ShopId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

const CURSOR_VERSION: u32 = 2;
/// Bytes of the HMAC kept: 128 bits, far beyond guessing one by trial over HTTP.
const TAG_BYTES: usize = 16;
/// The shortest key accepted from settings: 32 bytes, as HMAC-SHA256's output.
pub const MIN_KEY_BYTES: usize = 32;
/// The file a local deployment keeps its generated key in, inside the data directory.
pub const KEY_FILE: &str = "cursor.key";

/// The secret cursors are signed with.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key given in settings; refused when too short to be a secret, or when it is a
    /// CloudFormation reference nobody resolved (`sam local`), which anyone could read.
    pub fn from_setting(text: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !text.starts_with("{{resolve:"),
            "CURSOR_KEY is an unresolved CloudFormation reference; set a secret of its own"
        );
        anyhow::ensure!(
            text.len() >= MIN_KEY_BYTES,
            "CURSOR_KEY must be at least {MIN_KEY_BYTES} bytes (for example 64 hex digits)"
        );
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// A key of this process alone.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self(hex::encode(secret).into_bytes())
    }

    /// The key in `dir`, made on first start (256 random bits, readable by this user only), so
    /// that cursors outlive a restart. Made whole or not at all: written to a file of its own,
    /// then linked into place, so that a crash or a second process never sees half a key.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(KEY_FILE);
        if let Some(key) = Self::read(&path)? {
            return Ok(key);
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = Self::random();
        let draft = dir.join(format!("{KEY_FILE}.{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&draft)
            .and_then(|mut file| file.write_all(&key.0).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::hard_link(&draft, &path));
        let _ = std::fs::remove_file(&draft);
        match written {
            Ok(()) => Ok(key),
            // Another process linked its key first: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::read(&path)?.context("the cursor key vanished while it was being made")
            }
            Err(error) => {
                Err(error).with_context(|| format!("creating the cursor key {}", path.display()))
            }
        }
    }

    /// The key kept at `path`; `None` only when there is no such file.
    fn read(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_setting(text.trim())
                .with_context(|| format!("reading the cursor key {}", path.display()))
                .map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => {
                Err(error).with_context(|| format!("reading the cursor key {}", path.display()))
            }
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(payload);
        mac
    }

    fn seal(&self, payload: &[u8]) -> String {
        let tag = self.mac(payload).finalize().into_bytes();
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The payload of a cursor this key signed; `None` for anything else.
    fn open(&self, text: &str) -> Option<Vec<u8>> {
        let mut bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let cut = bytes.len().checked_sub(TAG_BYTES)?;
        let tag = bytes.split_off(cut);
        // Compared in constant time, so the answer's timing tells nothing about the tag.
        self.mac(&bytes).verify_truncated_left(&tag).ok()?;
        Some(bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    v: u32,
    shop: String,
    filters: String,
    micros: i64,
    id: String,
}

/// The filters of a walk, as a cursor binds them: a short digest that also names the list,
/// so that a cursor of one list is refused by another.
pub trait WalkFilters {
    fn digest(&self) -> String;
}

fn digest_of(list: &str, filters: &impl Serialize) -> String {
    let json =
        serde_json::to_string(filters).expect("filters are plain data, which always serialise");
    let digest = Sha256::digest(format!("{list}\0{json}").as_bytes());
    hex::encode(&digest[..8])
}

/// Normalised so that `100.5` and `100.50` are the same filter.
impl WalkFilters for ListFilters {
    fn digest(&self) -> String {
        let mut normal = self.clone();
        normal.min_amount = normal.min_amount.map(|d| d.normalize());
        normal.max_amount = normal.max_amount.map(|d| d.normalize());
        digest_of("transactions", &normal)
    }
}

impl WalkFilters for AlertListFilters {
    fn digest(&self) -> String {
        digest_of("alerts", self)
    }
}

/// A position in a walk: a time in microseconds and an id, as both lists order.
pub trait WalkPosition: Sized {
    fn parts(&self) -> (i64, &str);
    fn from_parts(micros: i64, id: String) -> Self;
}

impl WalkPosition for Position {
    fn parts(&self) -> (i64, &str) {
        (self.micros, &self.transaction_id)
    }
    fn from_parts(micros: i64, transaction_id: String) -> Self {
        Self {
            micros,
            transaction_id,
        }
    }
}

impl WalkPosition for AlertPosition {
    fn parts(&self) -> (i64, &str) {
        (self.micros, &self.alert_id)
    }
    fn from_parts(micros: i64, alert_id: String) -> Self {
        Self { micros, alert_id }
    }
}

impl Cursor {
    pub fn encode(
        key: &CursorKey,
        shop: &ShopId,
        filters: &impl WalkFilters,
        position: &impl WalkPosition,
    ) -> String {
        let (micros, id) = position.parts();
        let cursor = Cursor {
            v: CURSOR_VERSION,
            shop: shop.to_string(),
            filters: filters.digest(),
            micros,
            id: id.to_owned(),
        };
        let json =
            serde_json::to_vec(&cursor).expect("a cursor is plain data, which always serialises");
        key.seal(&json)
    }

    /// A cursor this API signed with `key`; `None` for a forged, altered or foreign one.
    pub fn decode(key: &CursorKey, text: &str) -> Option<Self> {
        let cursor: Cursor = serde_json::from_slice(&key.open(text)?).ok()?;
        (cursor.v == CURSOR_VERSION).then_some(cursor)
    }

    /// The position to continue after, if this cursor was made for this shop and filters.
    pub fn position_for<P: WalkPosition>(
        &self,
        shop: &ShopId,
        filters: &impl WalkFilters,
    ) -> Result<P, ApiError> {
        let refuse = |message: &str| {
            ApiError::InvalidParameters(vec![FieldError {
                field: "cursor".into(),
                code: "cursor".into(),
                message: message.into(),
            }])
        };
        if self.shop != shop.as_str() {
            return Err(refuse("was not made for this shop"));
        }
        if self.filters != filters.digest() {
            return Err(refuse(
                "was made with other filters; send the same filters as for the first page",
            ));
        }
        Ok(P::from_parts(self.micros, self.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CursorKey {
        CursorKey(vec![byte; 32])
    }

    fn walk() -> (ShopId, ListFilters, Position) {
        let shop = ShopId::parse("shop-a").unwrap();
        let position = Position {
            micros: 1_700_000_000_000_000,
            transaction_id: "t-42".into(),
        };
        (shop, ListFilters::default(), position)
    }

    /// A filter added to the list must not change the digest of the filters a cursor was made
    /// with before it existed: every cursor in clients' hands would be refused after a deploy.
    #[test]
    fn a_filter_added_later_leaves_earlier_cursors_valid() {
        let before = r#"{"from":null,"to":null,"kind":null,"currency":null,"customer_id":null,"min_amount":null,"max_amount":null,"alert":null,"conflicted":null}"#;
        let digest = Sha256::digest(format!("transactions\0{before}").as_bytes());
        assert_eq!(ListFilters::default().digest(), hex::encode(&digest[..8]));
    }

    #[test]
    fn a_signed_cursor_reads_back_to_its_position() {
        let (shop, filters, position) = walk();
        let text = Cursor::encode(&key(1), &shop, &filters, &position);
        let cursor = Cursor::decode(&key(1), &text).expect("our own cursor");
        assert_eq!(
            cursor.position_for::<Position>(&shop, &filters).unwrap(),
            position
        );
    }

    #[test]
    fn a_cursor_under_another_key_or_altered_is_refused() {
        let (shop, filters, position) = walk();
        let text = Cursor::encode(&key(1), &shop, &filters, &position);
        assert!(Cursor::decode(&key(2), &text).is_none());
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let at = bytes.iter().position(|&b| b == b'4').unwrap();
        bytes[at] = b'5';
        assert!(Cursor::decode(&key(1), &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
    }

    #[test]
    fn an_unsigned_cursor_of_the_old_shape_is_refused() {
        let forged = URL_SAFE_NO_PAD
            .encode(br#"{"v":1,"shop":"shop-a","filters":"0000000000000000","micros":0,"id":"x"}"#);
        assert!(Cursor::decode(&key(1), &forged).is_none());
        assert!(Cursor::decode(&key(1), "").is_none());
        assert!(Cursor::decode(&key(1), "AA").is_none());
    }

    #[test]
    fn a_short_key_is_refused_and_a_generated_one_is_kept() {
        assert!(CursorKey::from_setting("short").is_err());
        let unresolved =
            "{{resolve:secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:x:SecretString}}";
        assert!(CursorKey::from_setting(unresolved).is_err());
        let dir = tempfile::tempdir().unwrap();
        let first = CursorKey::load_or_create(dir.path()).unwrap();
        let second = CursorKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only its owner may read the key");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no draft is left behind");
    }

    #[test]
    fn an_unreadable_or_broken_key_file_stops_the_start_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(KEY_FILE)).unwrap();
        let error = CursorKey::load_or_create(dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains(KEY_FILE), "{error:#}");
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(KEY_FILE), "").unwrap();
        let error = CursorKey::load_or_create(other.path()).unwrap_err();
        assert!(
            format!("{error:#}").contains("at least 32 bytes"),
            "{error:#}"
        );
    }
}

//! `api keys …`: an operator's commands for API keys. `new` prints a key and its keys-file
//! line; the others change the keys table (AWS), one key at a time, taking effect in running
//! instances within `API_KEYS_CACHE_SECONDS`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use infra::domain::ShopId;
use infra::ports::{KeyAdmin, StoredKey};

use crate::auth::{ApiKeys, hash_key, new_key};
use crate::config::{KeysCommand, KeysTableArgs};

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::New { shop } => {
            let (key, line) = new_key(&shop_id(&shop)?);
            println!("key:  {key}");
            println!("line: {line}");
            eprintln!(
                "Give the key to the shop; add the line to the API keys file. The key is not stored anywhere."
            );
            Ok(())
        }
        KeysCommand::Add { shop, table } => add(&*admin(&table).await?, &shop_id(&shop)?).await,
        KeysCommand::Rotate {
            shop,
            overlap,
            table,
        } => rotate(&*admin(&table).await?, &shop_id(&shop)?, overlap).await,
        KeysCommand::Revoke {
            shop,
            key_id,
            table,
        } => revoke(&*admin(&table).await?, &shop_id(&shop)?, &key_id).await,
        KeysCommand::List { shop, table } => list(&*admin(&table).await?, &shop_id(&shop)?).await,
        KeysCommand::Import { file, table } => import(&*admin(&table).await?, &file).await,
    }
}

fn shop_id(shop: &str) -> anyhow::Result<ShopId> {
    ShopId::parse(shop)
        .map_err(anyhow::Error::msg)
        .context("--shop")
}

async fn admin(args: &KeysTableArgs) -> anyhow::Result<std::sync::Arc<dyn KeyAdmin>> {
    let table = args
        .table
        .api_keys_table
        .as_deref()
        .context("name the keys table with --api-keys-table or API_KEYS_TABLE")?;
    Ok(args.ports.connector().key_admin(table).await)
}

/// Stores a fresh key for the shop and prints it: the only time it is shown.
async fn add(admin: &dyn KeyAdmin, shop: &ShopId) -> anyhow::Result<()> {
    let (key, _) = new_key(shop);
    let stored = StoredKey::new(hash_key(&key), shop.clone(), Utc::now());
    admin.add_key(&stored).await?;
    println!("key:    {key}");
    println!("key_id: {}", stored.key_id());
    eprintln!("Give the key to the shop {shop}; only its hash is stored.");
    Ok(())
}

async fn rotate(admin: &dyn KeyAdmin, shop: &ShopId, overlap: Duration) -> anyhow::Result<()> {
    let older = admin.keys_of(shop).await?;
    add(admin, shop).await?;
    let until = Utc::now() + chrono::Duration::from_std(overlap).context("--overlap")?;
    for key in older.iter().filter(|key| key.admits_at(Utc::now())) {
        admin.expire_key(&key.hash, until).await?;
        eprintln!("key {} stops working at {until}", key.key_id());
    }
    Ok(())
}

async fn revoke(admin: &dyn KeyAdmin, shop: &ShopId, key_id: &str) -> anyhow::Result<()> {
    let keys = admin.keys_of(shop).await?;
    let Some(key) = keys.iter().find(|key| key.key_id() == key_id) else {
        bail!("shop {shop} has no key {key_id} (see `api keys list --shop {shop}`)");
    };
    admin.remove_key(&key.hash).await?;
    eprintln!(
        "key {key_id} of {shop} removed; running instances refuse it within their cache time"
    );
    Ok(())
}

async fn list(admin: &dyn KeyAdmin, shop: &ShopId) -> anyhow::Result<()> {
    println!("key_id\tcreated_at\texpires_at");
    for key in admin.keys_of(shop).await? {
        let expires = key.expires_at.map(|at| at.to_rfc3339()).unwrap_or_default();
        println!(
            "{}\t{}\t{expires}",
            key.key_id(),
            key.created_at.to_rfc3339()
        );
    }
    Ok(())
}

async fn import(admin: &dyn KeyAdmin, file: &Path) -> anyhow::Result<()> {
    let keys = ApiKeys::from_file(file)?;
    let now = Utc::now();
    let mut added = 0;
    for (shop, hash) in keys.entries() {
        if admin.find_key(hash).await?.is_none() {
            admin
                .add_key(&StoredKey::new(*hash, shop.clone(), now))
                .await?;
            added += 1;
        }
    }
    eprintln!("{added} key(s) added from {}", file.display());
    Ok(())
}

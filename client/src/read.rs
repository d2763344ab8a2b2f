//! `pipeline get` and `pipeline list`: transactions read back, as a table or as JSON.

use std::process::ExitCode;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api::{ApiClient, describe};

#[derive(Args)]
pub struct GetArgs {
    /// The transaction's id.
    pub id: String,
    /// Print the transaction as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Transactions per page, 1-100.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Follow every page, not only the first.
    #[arg(long)]
    pub all: bool,
    /// At or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// purchase, refund or chargeback.
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(long)]
    pub currency: Option<String>,
    #[arg(long)]
    pub customer_id: Option<String>,
    /// Paid with this card or account (its payment fingerprint).
    #[arg(long)]
    pub payment_fingerprint: Option<String>,
    #[arg(long)]
    pub min_amount: Option<String>,
    #[arg(long)]
    pub max_amount: Option<String>,
    /// none, pending, sent or any.
    #[arg(long)]
    pub alert: Option<String>,
    /// true or false.
    #[arg(long)]
    pub conflicted: Option<bool>,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b':' | b'-' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn get(client: &ApiClient, args: GetArgs) -> anyhow::Result<ExitCode> {
    let answer = client
        .call(
            Method::GET,
            &format!("/transactions/{}", path_segment(&args.id)),
            None,
        )
        .await?;
    if answer.status != StatusCode::OK {
        eprintln!("{}: {}", answer.status, describe(&answer));
        return Ok(ExitCode::from(1));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.body)?);
    } else {
        print_table(std::slice::from_ref(&answer.body));
    }
    Ok(ExitCode::SUCCESS)
}

/// The list's query string, encoded as forms are.
fn query(args: &ListArgs, cursor: Option<&str>) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("a valid URL");
    let mut pairs = url.query_pairs_mut();
    pairs.append_pair("limit", &args.limit.to_string());
    let optional = [
        ("from", &args.from),
        ("to", &args.to),
        ("type", &args.kind),
        ("currency", &args.currency),
        ("customer_id", &args.customer_id),
        ("payment_fingerprint", &args.payment_fingerprint),
        ("min_amount", &args.min_amount),
        ("max_amount", &args.max_amount),
        ("alert", &args.alert),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            pairs.append_pair(name, value);
        }
    }
    if let Some(conflicted) = args.conflicted {
        pairs.append_pair("conflicted", &conflicted.to_string());
    }
    if let Some(cursor) = cursor {
        pairs.append_pair("cursor", cursor);
    }
    drop(pairs);
    url.query().unwrap_or_default().to_owned()
}

pub async fn list(client: &ApiClient, args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let path = format!("/transactions?{}", query(&args, cursor.as_deref()));
        let answer = client.call(Method::GET, &path, None).await?;
        if answer.status != StatusCode::OK {
            eprintln!("{}: {}", answer.status, describe(&answer));
            if let Some(errors) = answer.body["errors"].as_array() {
                for error in errors {
                    eprintln!(
                        "  {}: {}",
                        error["field"].as_str().unwrap_or(""),
                        error["message"].as_str().unwrap_or("")
                    );
                }
            }
            return Ok(ExitCode::from(1));
        }
        let page = answer.body["data"].as_array().cloned().unwrap_or_default();
        if args.json {
            for record in &page {
                println!("{record}");
            }
        } else {
            all.extend(page);
        }
        cursor = answer.body["next_cursor"].as_str().map(str::to_owned);
        if !args.all || cursor.is_none() {
            break;
        }
    }
    if !args.json {
        print_table(&all);
        if let Some(cursor) = cursor {
            println!("more: --all to follow every page (next cursor {cursor})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(records: &[Value]) {
    println!(
        "{:<26} {:<24} {:>14} {:<4} {:<10} {:<14} CONFLICTS",
        "TIMESTAMP", "ID", "AMOUNT", "CUR", "TYPE", "ALERTS"
    );
    for record in records {
        let text = |field: &str| record[field].as_str().unwrap_or("").to_owned();
        let alerts: Vec<String> = record["alerts"]
            .as_array()
            .map(|alerts| {
                alerts
                    .iter()
                    .map(|alert| {
                        format!(
                            "{}:{}",
                            alert["rule"].as_str().unwrap_or("?"),
                            alert["state"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<26} {:<24} {:>14} {:<4} {:<10} {:<14} {}",
            text("timestamp"),
            text("transaction_id"),
            text("amount"),
            text("currency"),
            text("type"),
            if alerts.is_empty() {
                "-".to_owned()
            } else {
                alerts.join(",")
            },
            record["conflicts"]["count"].as_u64().unwrap_or(0)
        );
    }
}

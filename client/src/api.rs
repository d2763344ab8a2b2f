//! The HTTP side: one client with the shop's key, and the retries every command shares. A 503
//! or 429 is retried after its `Retry-After`; a network error after a growing back-off. Both
//! are safe: transaction ids are idempotent, the pipeline stores each once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The development key of a local pipeline (README), used when none is given on loopback.
const DEVELOPMENT_KEY: &str = "dev-key-for-the-demo-shop";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A key that never shows: its `Debug` and `Display` print a placeholder.
#[derive(Clone)]
pub struct ApiKey(String);

impl FromStr for ApiKey {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the key is empty".to_owned());
        }
        Ok(Self(text.trim().to_owned()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    key: ApiKey,
    http: reqwest::Client,
    /// Resends after a 503, a 429 or a network error before giving up.
    retries: u32,
}

/// An answer, after retries.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// Requests that were sent again (after a 503, a 429 or a network error).
    pub retries: u32,
}

impl ApiClient {
    pub fn new(url: &str, key: Option<ApiKey>, retries: u32) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).with_context(|| format!("--url {base:?}"))?;
        let loopback = matches!(
            parsed.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        let key = match key {
            Some(key) => key,
            None if loopback => ApiKey(DEVELOPMENT_KEY.to_owned()),
            None => anyhow::bail!(
                "set --key or PIPELINE_API_KEY (the development key works on loopback only)"
            ),
        };
        // No redirect is followed: the next hop could be another host, and the key would go
        // with the request. A redirect is reported instead (`call`).
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            key,
            http,
            retries,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request, retrying 503, 429 and network errors; other answers are returned.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Answer> {
        let mut retries = 0;
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut request = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(&self.key.0);
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            let wait = match request.send().await {
                Ok(response)
                    if matches!(
                        response.status(),
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
                    ) =>
                {
                    retry_after(&response).unwrap_or(backoff)
                }
                Ok(response) if response.status().is_redirection() => {
                    let location = response
                        .headers()
                        .get("location")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("nowhere")
                        .chars()
                        .take(200)
                        .collect::<String>();
                    anyhow::bail!(
                        "{method} {path}: the API answered {} to {location:?}; redirects are not \
                         followed, so that the key goes to no other host: use the final URL as --url",
                        response.status()
                    );
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Ok(Answer {
                        status,
                        body,
                        retries,
                    });
                }
                Err(error) if retries >= self.retries => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("{method} {path} failed {} time(s)", retries + 1)));
                }
                Err(_) => backoff,
            };
            if retries >= self.retries {
                anyhow::bail!(
                    "{method} {path}: still unavailable after {} attempt(s)",
                    retries + 1
                );
            }
            retries += 1;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One attempt, no retries: for measuring.
    pub async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.key.0);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.clamp(1, 300)))
}

/// The `detail` of a problem answer, or the answer itself.
pub fn describe(answer: &Answer) -> String {
    answer.body["detail"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string())
}

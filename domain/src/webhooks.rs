//! What a webhook delivery is, apart from sending it: the events a shop subscribes to, the
//! event's stable id (a receiver dedupes by it), the signature that proves the API sent it,
//! which destinations may receive one (no request forgery into private networks), and how
//! long a failing delivery is retried.

// `core::net`: the address types alone, no sockets.
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ids::derived_id;
use super::inbox::InboxAlert;
use super::names::Named;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// A stored transaction raised an alert.
    #[serde(rename = "alert.raised")]
    AlertRaised,
    /// An alert's review changed.
    #[serde(rename = "alert.reviewed")]
    AlertReviewed,
}

impl Named for EventType {
    const ALL: &'static [Self] = &[Self::AlertRaised, Self::AlertReviewed];
}

/// One event, as its delivery's body carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The same for every attempt and every delivery of this event.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    pub data: InboxAlert,
}

impl WebhookEvent {
    /// The event of `alert`: raised, or reviewed at its current version. Its id follows from
    /// those alone, so a redelivered transaction or a retried review makes the same event.
    pub fn of(kind: EventType, alert: InboxAlert, created_at: DateTime<Utc>) -> Self {
        let version = match kind {
            EventType::AlertRaised => 0,
            EventType::AlertReviewed => alert.review.version,
        };
        let version = version.to_string();
        Self {
            id: derived_id("evt_", &[&alert.alert_id, kind.name(), &version]),
            kind,
            created_at,
            data: alert,
        }
    }
}

/// The id of `event`'s delivery to one webhook: the same however often the event is written.
pub fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    derived_id("dlv_", &[event_id, webhook_id])
}

/// The `Webhook-Signature` header of a body sent at `sent_at` (Unix seconds): `t=<seconds>`,
/// then one `v1=<hex HMAC-SHA256 of "<t>.<body>">` per secret, so that during a rotation a
/// receiver holding either secret can check it.
pub fn signature_header(secrets: &[&[u8]], sent_at: i64, body: &[u8]) -> String {
    let mut header = format!("t={sent_at}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(signature(secret, sent_at, body)));
    }
    header
}

fn signature(secret: &[u8], sent_at: i64, body: &[u8]) -> Vec<u8> {
    mac(secret, sent_at, body).finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 under `secret` of `"<sent_at>.<body>"`.
fn mac(secret: &[u8], sent_at: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(sent_at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// A receiver's check: the header carries a `v1` made with `secret` over this body, and was
/// made within `tolerance` of `now` (an old capture replayed fails).
pub fn signature_holds(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> bool {
    let mut sent_at = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => sent_at = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(sent_at) = sent_at else {
        return false;
    };
    if now.abs_diff(sent_at) > tolerance.as_secs() {
        return false;
    }
    // Compared in constant time: the answer's timing tells nothing about the signature.
    signatures
        .iter()
        .any(|candidate| mac(secret, sent_at, body).verify_slice(candidate).is_ok())
}

/// The waits between a failing delivery's attempts: growing from 10 s to 8 h, about 30 hours
/// in all, so that a receiver down for a day still gets every event; then it is failed.
pub const RETRY_WAITS: [Duration; 12] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
];

/// How long a delivery stays in its webhook's list once it ended (on DynamoDB, from its event).
pub const KEEP_DELIVERIES: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("must be an https URL (http only to a loopback address while the API listens on one)")]
    Scheme,
    #[error("must be an absolute URL with a host, and no user name or password in it")]
    Malformed,
    // The address itself is not said: a shop must not learn what a name resolves to inside
    // the network the API runs in.
    #[error("resolves to a private, loopback, link-local or metadata address")]
    Forbidden(IpAddr),
}

/// Checks a webhook URL's form: `https`, or `http` to a loopback host when `loopback_allowed`
/// (the API itself listens on loopback, as with the development key); a host and no
/// credentials. Where it resolves to is checked by [`address_allowed`], at registration and
/// at every delivery.
pub fn check_url(url: &url::Url, loopback_allowed: bool) -> Result<(), DestinationError> {
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(DestinationError::Malformed);
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback_allowed && is_loopback_host(url) => Ok(()),
        _ => Err(DestinationError::Scheme),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a delivery may connect to `ip`: never to a private, shared, link-local (the cloud
/// metadata service among them), unspecified, multicast, documentation or other
/// special-purpose address, nor to an IPv6 address that a gateway carries on to one of those;
/// to loopback only when `loopback_allowed`.
pub fn address_allowed(ip: IpAddr, loopback_allowed: bool) -> Result<(), DestinationError> {
    let ip = match ip {
        // An IPv4 address written as IPv6 is judged as itself.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let forbidden = match ip {
        IpAddr::V4(v4) => v4.is_loopback() && !loopback_allowed || forbidden_v4(v4),
        IpAddr::V6(v6) => v6.is_loopback() && !loopback_allowed || forbidden_v6(v6),
    };
    if forbidden {
        Err(DestinationError::Forbidden(ip))
    } else {
        Ok(())
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b == 18 || b == 19))
        // IETF protocol assignments, 192.0.0.0/24, and the 6to4 relays' anycast,
        // 192.88.99.0/24: no receiver lives there.
        || matches!(ip.octets(), [192, 0, 0, _] | [192, 88, 99, _])
        || a >= 240
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7), where the EC2 metadata service's fd00:ec2::254 lives.
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10, and the deprecated site-local, fec0::/10: never routed.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || matches!(
            segments,
            // Documentation, 2001:db8::/32.
            [0x2001, 0x0db8, ..]
            // Teredo, 2001::/32: the IPv4 address it reaches is obfuscated, so cannot be judged.
            | [0x2001, 0, ..]
            // Local-use NAT64, 64:ff9b:1::/48: translated into whatever the network chooses.
            | [0x64, 0xff9b, 1, ..]
            // Discard-only, 100::/64.
            | [0x100, 0, 0, 0, ..]
        )
        // A gateway carries these on to an IPv4 address, which is judged instead; its loopback
        // is the gateway's, never this host's, so it is refused even when loopback is allowed.
        || embedded_v4(ip).is_some_and(|v4| v4.is_loopback() || forbidden_v4(v4))
}

/// The IPv4 address that a NAT64 (64:ff9b::/96), 6to4 (2002::/16) or deprecated
/// IPv4-compatible (::/96) address is translated or tunnelled to.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let last_32 = Ipv4Addr::from_bits(bits as u32);
    match ip.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(last_32),
        [0x2002, ..] => Some(Ipv4Addr::from_bits((bits >> 80) as u32)),
        // Except `::` and `::1`, IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, ..] if bits > 1 => Some(last_32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::{Publication, Review};
    use crate::record::AlertState;

    fn alert(version: u64) -> InboxAlert {
        InboxAlert {
            alert_id: "alt_0123456789abcdef01234567".to_owned(),
            transaction_id: "t-1".to_owned(),
            rule: "amount_exceeds_threshold".to_owned(),
            reason: "amount 2000 USD exceeds the threshold 1000".to_owned(),
            facts: Default::default(),
            rules_version: None,
            action: crate::alert::Action::Review,
            decision: crate::alert::Action::Review,
            raised_at: Utc::now(),
            publication: Publication {
                state: AlertState::Pending,
                sent_at: None,
            },
            review: Review {
                version,
                ..Review::default()
            },
        }
    }

    #[test]
    fn an_events_id_is_the_same_for_the_same_change_and_differs_for_another() {
        let now = Utc::now();
        let raised = WebhookEvent::of(EventType::AlertRaised, alert(0), now);
        let again = WebhookEvent::of(EventType::AlertRaised, alert(0), now);
        assert_eq!(raised.id, again.id);
        let reviewed = WebhookEvent::of(EventType::AlertReviewed, alert(1), now);
        let reviewed_again = WebhookEvent::of(EventType::AlertReviewed, alert(2), now);
        assert_ne!(raised.id, reviewed.id);
        assert_ne!(reviewed.id, reviewed_again.id);
        let json = serde_json::to_value(&reviewed).expect("JSON");
        assert_eq!(json["type"], "alert.reviewed");
    }

    #[test]
    fn a_signature_holds_for_each_live_secret_and_nothing_else() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&[b"old-secret", b"new-secret"], 1_800_000_000, body);
        let check = |secret: &[u8], body: &[u8], now| {
            signature_holds(&header, secret, body, now, Duration::from_secs(300))
        };
        assert!(check(b"old-secret", body, 1_800_000_010));
        assert!(check(b"new-secret", body, 1_800_000_010));
        assert!(!check(b"other", body, 1_800_000_010));
        assert!(!check(b"new-secret", br#"{"id":"evt_2"}"#, 1_800_000_010));
        assert!(
            !check(b"new-secret", body, 1_800_001_000),
            "too old: a replay"
        );
        assert!(!signature_holds(
            "v1=00",
            b"new-secret",
            body,
            0,
            Duration::MAX
        ));
    }

    #[test]
    fn retries_last_more_than_a_day() {
        let total: Duration = RETRY_WAITS.iter().sum();
        assert!(total >= Duration::from_secs(24 * 60 * 60), "{total:?}");
        assert!(
            RETRY_WAITS.windows(2).all(|w| w[0] <= w[1]),
            "growing waits"
        );
    }

    #[test]
    fn destinations_are_https_or_loopback_http_for_a_loopback_api() {
        let url = |text: &str| url::Url::parse(text).expect("URL");
        assert_eq!(
            check_url(&url("https://hooks.example.com/x"), false),
            Ok(())
        );
        assert_eq!(
            check_url(&url("http://hooks.example.com/x"), true),
            Err(DestinationError::Scheme)
        );
        assert_eq!(check_url(&url("http://127.0.0.1:8080/x"), true), Ok(()));
        assert_eq!(check_url(&url("http://localhost:8080/x"), true), Ok(()));
        assert_eq!(
            check_url(&url("http://127.0.0.1:8080/x"), false),
            Err(DestinationError::Scheme)
        );
        assert_eq!(
            check_url(&url("ftp://hooks.example.com/x"), false),
            Err(DestinationError::Scheme)
        );
        assert_eq!(
            check_url(&url("https://user:pw@hooks.example.com/"), false),
            Err(DestinationError::Malformed)
        );
    }

    #[test]
    fn private_link_local_and_metadata_addresses_are_refused() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("IP");
        for refused in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fd00:ec2::254",
            "fe80::1",
            "::",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "198.18.0.1",
            "192.0.0.8",
            "192.88.99.1",
            // IPv6 forms that reach a private IPv4 address, or are not globally routed.
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::10.0.0.1",
            "::127.0.0.1",
            "fec0::1",
            "100::1",
        ] {
            assert!(address_allowed(ip(refused), true).is_err(), "{refused}");
        }
        assert!(address_allowed(ip("127.0.0.1"), false).is_err());
        assert!(address_allowed(ip("::1"), false).is_err());
        assert!(address_allowed(ip("::127.0.0.1"), false).is_err());
        assert!(address_allowed(ip("64:ff9b::7f00:1"), false).is_err());
        assert!(address_allowed(ip("127.0.0.1"), true).is_ok());
        assert!(address_allowed(ip("::1"), true).is_ok());
        for allowed in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "::93.184.216.34",
        ] {
            assert!(address_allowed(ip(allowed), false).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn names_round_trip() {
        crate::names::assert_names_round_trip::<EventType>();
    }
}

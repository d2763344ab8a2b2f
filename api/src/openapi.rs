//! The API contract, generated from the handlers and types. `openapi/openapi.json` is this,
//! committed; a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;
use crate::routes::{alerts, batch, lists, ops, rules, stats, transactions, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "E-commerce transaction pipeline",
        description = "Shops post transactions; each is validated, durably queued (202), processed \
                       into the store, checked against alert rules, and can be read back. Every \
                       error is an RFC 9457 problem document.\n\nLocally, with no keys file, the \
                       development key `dev-key-for-the-demo-shop` (shop `demo`) works: press \
                       Authorize and paste it.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        transactions::create,
        batch::create,
        transactions::list,
        transactions::read,
        transactions::read_named_batch,
        alerts::list,
        alerts::read,
        alerts::review,
        webhooks::create,
        webhooks::list,
        webhooks::remove,
        webhooks::rotate_secret,
        webhooks::deliveries,
        rules::in_force,
        rules::backtest,
        lists::add,
        lists::remove,
        lists::page,
        stats::overview,
        ops::health,
    ),
    components(schemas(Problem, infra::domain::FieldError, infra::domain::AlertFilter)),
    modifiers(&BearerKey),
    tags(
        (name = "transactions", description = "Send and read transactions (API key needed)"),
        (name = "alerts", description = "The shop's alert inbox: list, read and review alerts (API key needed)"),
        (name = "rules", description = "Candidate alert rules tried on the shop's history before they go live (API key needed)"),
        (name = "lists", description = "The shop's named lists (blocked customers, cards, emails) that `list` rules look transactions up in (API key needed)"),
        (name = "stats", description = "The shop's recent figures, per minute, for its overview (API key needed)"),
        (name = "webhooks", description = "Signed deliveries of the shop's alert events to its own systems (API key needed)"),
        (name = "operations", description = "Health (no key)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme so that Swagger UI's "Authorize" sends the key.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The shop's API key"))
                    .build(),
            ),
        );
    }
}

/// The document as committed: pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document is plain data, which always serialises");
    text.push('\n');
    text
}

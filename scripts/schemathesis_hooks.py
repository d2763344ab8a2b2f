"""Schemathesis hooks for the contract fuzzing run (scripts/fuzz.sh).

The contract (openapi/openapi.json) states every rule of a transaction that JSON Schema can
express. A few it cannot: decimal places that depend on the currency (the contract lists them
as `x-minor-units`), items whose quantities times unit prices add up to the amount, an amount
at most 1,000,000,000 when sent as a string, and a timestamp at most 5 minutes ahead of the
server's clock. A generated transaction that breaks one of those is not what the schema
promised would be accepted: the fuzzing phase does not generate it (`filter_body`), and in the
other phases a "schema-valid request rejected" failure (ST202) on such a body is dropped
(`filter_failure`). A batch is judged by its items: its 422 is dropped only when no item could
have been accepted.

A list's parameters have rules across parameters (`from` before `to`, `min_amount` not above
`max_amount`, amounts with no more decimal places than `currency` has), and a cursor is valid
only when this API made it, for this shop and these filters; the contract can only say which
characters a cursor has. A list's 400 whose every error is one of those is dropped.

A batch is validated item by item, as the contract says: a batch with a broken item is answered
207 when another item was accepted, with the broken one marked rejected, and a batch over its
limits is a 413. A "schema-violating request accepted" failure (ST201) on the batch is dropped
only in those two cases, checked against the answer.

A review depends on the alert's state, which no schema can know: a review sent with an
`If-Match` that another review made stale is a 412 (its answer holds the alert as it is now),
and an alert keeps at most 100 reviews (then 422). The alert list's cursor is as the
transaction list's. Those answers, checked against their bodies, are dropped from ST202.

A webhook's destination is judged where it resolves (no private or metadata address), and a
shop has at most 10 webhooks: a registration's 422 naming only `url` is dropped from ST202.

A list value that is a card number (13-19 digits passing the Luhn check) is refused, which no
pattern states: a 422 naming only `value` as a card number is dropped from ST202. The page of a
list takes a cursor as the transaction list does. A backtest's body is a rules file as text,
whose rules no schema can state: a 422 naming only `body` is dropped, and its period's `from`
before `to` as a list's.

A POST answers 202 once the transaction is on the queue; the processor stores it a moment
later, and until then a read of it is a 404 (the README's eventual consistency). A "created
resource not found" failure (ST302) is dropped only when the same GET, sent again, finds the
transaction within READ_YOUR_WRITE_GRACE seconds. Every other failure of every check stands.
"""
import json
import os
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import schemathesis

CONTRACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "openapi", "openapi.json")
with open(CONTRACT, encoding="utf-8") as file:
    _schemas = json.load(file)["components"]["schemas"]
MINOR_UNITS = _schemas["NewTransaction"]["properties"]["currency"]["x-minor-units"]
MAX_AMOUNT = Decimal(1_000_000_000)
READ_YOUR_WRITE_GRACE = 5.0


def _decimal(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _places(value):
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _timestamp(text):
    if not isinstance(text, str) or len(text) < 20:
        return None
    head, tail = text[:19], text[19:]
    if tail.startswith("."):
        rest = tail[1:]
        offset = rest.lstrip("0123456789")
        fraction = rest[: len(rest) - len(offset)]
        tail = "." + (fraction + "000000")[:6] + offset
    try:
        return datetime.fromisoformat((head + tail).replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None


def _batch_items(body):
    """The transactions of a batch body, or None for any other body."""
    if isinstance(body, dict) and isinstance(body.get("transactions"), list):
        return body["transactions"]
    return None


def expressible(body):
    """False for a request body whose only fault is a rule JSON Schema cannot state; a batch
    whose items all have such a fault (an item that could be accepted makes it a 207)."""
    items = _batch_items(body)
    if items is None:
        return expressible_transaction(body)
    return not items or any(expressible_transaction(item) for item in items)


def expressible_transaction(body):
    """False for a transaction whose only fault is a rule JSON Schema cannot state."""
    if not isinstance(body, dict):
        return True
    units = MINOR_UNITS.get(body.get("currency") or "USD")
    if units is None:
        return True
    amount = _decimal(body.get("amount"))
    if amount is not None and (amount > MAX_AMOUNT or _places(amount) > units):
        return False
    items = body.get("items")
    if isinstance(items, list) and items and amount is not None:
        total = Decimal(0)
        for item in items:
            if not isinstance(item, dict):
                return True
            price, quantity = _decimal(item.get("unit_price")), item.get("quantity")
            if isinstance(quantity, float) and quantity.is_integer():
                quantity = int(quantity)
            if price is None or not isinstance(quantity, int) or isinstance(quantity, bool):
                return True
            if _places(price) > units:
                return False
            total += price * quantity
        if total != amount:
            return False
    moment = _timestamp(body.get("timestamp"))
    if moment is not None and moment.tzinfo is not None:
        if moment > datetime.now(timezone.utc) + timedelta(minutes=4):
            return False
    return True


def _answer(response):
    try:
        return json.loads(response.content)
    except (ValueError, AttributeError, TypeError):
        return None


def _beyond_schema(error, query):
    if not isinstance(error, dict):
        return False
    field, code = error.get("field"), error.get("code")
    if field == "cursor" or code == "range":
        return True
    # Decimal places per currency: the pattern admits any number of places.
    return field in ("min_amount", "max_amount") and code == "invalid" and "." in str(
        query.get(field, "")
    )


def list_refused_beyond_schema(case, response):
    answer = _answer(response)
    errors = answer.get("errors") if isinstance(answer, dict) else None
    query = case.query or {}
    return bool(errors) and all(_beyond_schema(error, query) for error in errors)


def refused_for_the_alerts_state(response):
    answer = _answer(response)
    if not isinstance(answer, dict):
        return False
    if response.status_code == 412:
        return isinstance(answer.get("current"), dict)
    errors = answer.get("errors") or []
    return response.status_code == 422 and all(
        isinstance(error, dict) and "reviews, the most it keeps" in str(error.get("message"))
        for error in errors
    ) and bool(errors)


def refused_for_its_destination(response):
    """A webhook URL of the right form whose host does not resolve, or resolves to a private
    address, or a shop at its limit of webhooks: facts no schema states."""
    answer = _answer(response)
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return response.status_code == 422 and bool(errors) and all(
        isinstance(error, dict) and error.get("field") == "url" for error in errors
    )


def _errors_all(response, status, accept):
    answer = _answer(response)
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return response.status_code == status and bool(errors) and all(
        isinstance(error, dict) and accept(error) for error in errors
    )


def refused_as_a_card_number(response):
    return _errors_all(
        response, 422, lambda e: e.get("field") == "value" and "card number" in str(e.get("message"))
    )


def rules_refused_as_text(response):
    return _errors_all(response, 422, lambda e: e.get("field") == "body")


def batch_answered_item_by_item(response):
    if response.status_code == 413:
        return True
    answer = _answer(response)
    results = answer.get("results") if isinstance(answer, dict) else None
    return response.status_code == 207 and any(
        isinstance(result, dict) and result.get("status") == "rejected" for result in results or []
    )


def stored_within_grace(response):
    """Whether the GET that answered 404 finds the resource when sent again before the grace ends."""
    import requests

    deadline = time.monotonic() + READ_YOUR_WRITE_GRACE
    request = response.request
    with requests.Session() as session:
        # The run's own proxies and certificates, as schemathesis sent the first GET.
        settings = session.merge_environment_settings(request.url, {}, None, response.verify, None)
        while time.monotonic() < deadline:
            try:
                again = session.send(request.copy(), timeout=2, **settings)
            except requests.RequestException:
                return False
            if again.status_code == 200:
                return True
            if again.status_code != 404:
                return False
            time.sleep(0.05)
    return False


@schemathesis.hook
def filter_body(ctx, body):
    # Generated batches hold only items the schema promises are accepted.
    items = _batch_items(body)
    if items is None:
        return expressible_transaction(body)
    return all(expressible_transaction(item) for item in items)


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    code = getattr(failure, "code", None)
    if response is None:
        return True
    if code == "ST302":
        return not stored_within_grace(response)
    if code == "ST201" and case.path == "/transactions/batch":
        return not batch_answered_item_by_item(response)
    if code == "ST201" and response.status_code == 413:
        # Over the documented body size: refused as such, before any field is read.
        return False
    if code != "ST202":
        return True
    if case.path in ("/transactions", "/alerts") and case.method.upper() == "GET":
        return not list_refused_beyond_schema(case, response)
    if case.path == "/alerts/{alert_id}/review":
        return not refused_for_the_alerts_state(response)
    if case.path == "/webhooks" and case.method.upper() == "POST":
        return not refused_for_its_destination(response)
    if case.path == "/lists/{name}/items/{value}":
        return not refused_as_a_card_number(response)
    if case.path in ("/lists/{name}", "/rules/backtest") and response.status_code == 400:
        return not list_refused_beyond_schema(case, response)
    if case.path == "/rules/backtest":
        return not rules_refused_as_text(response)
    return expressible(case.body)

"""Tools of the online-shop customer-service domain: a small JSON database and the functions over it.

The state is plain JSON, so an :class:`~sandboxes.inprocess.InProcessSandbox` can snapshot, fork and hash
it::

    {"users": {user_id: {"name": {"first", "last"}, "email", "address": {"street", "city", "zip"},
                         "payment_methods": {pm_id: {"type", ...}}, "orders": [order_id, ...]}},
     "orders": {order_id: {"user_id", "status", "items": [{"product_id", "quantity", "price"}],
                           "address", "payment_method", "total", ...}},
     "products": {product_id: {"name", "category", "price", "stock"}},
     "policies": {topic: text},                  # optional; default POLICIES
     "session": {"transferred": true}}          # only after a transfer to a human

A user's ``orders`` list is oldest first. Every tool is ``fn(state, **kwargs)`` and returns JSON-able
data with no clock, randomness or set order in it, so replaying a record reproduces its outputs
byte for byte. Tools validate their arguments and enforce the shop policy themselves: a violation raises
:class:`~sandboxes.inprocess.ToolError`, which the agent sees as ``"Error: <message>"``.

Arguments the rule verifier (:mod:`verifiers.toolcall`) counts as equivalent act the same here: strings
are compared after collapsing whitespace, emails and names ignore case, omitted optional parameters
take their schema default (an explicit null of ``status`` or ``category`` means "not given"), and
id lists marked ``uniqueItems`` and the ``swaps`` mapping may come in any order.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from sandboxes.inprocess import ToolError

STATUSES = ("pending", "processed", "shipped", "delivered", "cancelled", "returned", "exchanged")
CATEGORIES = ("apparel", "footwear", "electronics", "home", "kitchen", "bags")
CANCEL_REASONS = ("no longer needed", "ordered by mistake")
POLICY_TOPICS = ("cancellation", "address", "returns", "exchanges", "shipping")

POLICIES = {
    "cancellation": "Only pending orders can be cancelled. The refund goes to the order's payment method.",
    "address": "Pending or processed orders can get a new shipping address; shipped ones cannot.",
    "returns": "Delivered orders can be returned once. Refunds go to the original payment method or a gift card.",
    "exchanges": "Items can be swapped for an in-stock product of the same category: in pending orders "
                 "(once) or delivered ones. The price difference is charged or refunded.",
    "shipping": "Orders ship 1-2 days after processing and arrive in 3-5 business days.",
}

LIST_LIMIT = 10
SEARCH_LIMIT = 5
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_ZIP_RE = re.compile(r"^\d{5}$")


# ---------------------------------------------------------------------------------------------------
# Schemas (descriptions stay short: tiny models read every one of them in every prompt)


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    params = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


_S = {"type": "string"}
_ADDRESS = {"type": "object", "properties": {"street": _S, "city": _S, "zip": _S},
            "required": ["street", "city", "zip"]}
_SWAPS = {"type": "object", "description": "Old product id -> new product id.",
          "additionalProperties": {"type": "string"}}

TOOLS: list[dict[str, Any]] = [
    _fn("find_user_by_email", "Find a user id by email.",
        {"email": {"type": "string", "format": "email"}}, ["email"]),
    _fn("find_user_by_name_zip", "Find a user id by name and zip code.",
        {"first_name": _S, "last_name": _S, "zip": _S}, ["first_name", "last_name", "zip"]),
    _fn("get_user_details", "Get a user's profile, payment methods and order ids.",
        {"user_id": _S}, ["user_id"]),
    _fn("list_user_orders", "List a user's orders, newest first.",
        {"user_id": _S, "status": {"type": "string", "enum": list(STATUSES)},
         "limit": {"type": "integer", "default": LIST_LIMIT}}, ["user_id"]),
    _fn("get_order_details", "Get an order's status, items, address and payment.",
        {"order_id": _S, "include_items": {"type": "boolean", "default": True}}, ["order_id"]),
    _fn("get_product_details", "Get a product's price, category and stock.",
        {"product_id": _S}, ["product_id"]),
    _fn("search_products", "Search products by name.",
        {"query": _S, "category": {"type": "string", "enum": list(CATEGORIES)},
         "limit": {"type": "integer", "default": SEARCH_LIMIT}}, ["query"]),
    _fn("get_policy", "Read the shop policy on a topic.",
        {"topic": {"type": "string", "enum": list(POLICY_TOPICS)}}, ["topic"]),
    _fn("cancel_pending_order", "Cancel a pending order.",
        {"order_id": _S, "reason": {"type": "string", "enum": list(CANCEL_REASONS)}}, ["order_id", "reason"]),
    _fn("modify_order_address", "Change the shipping address of a pending or processed order.",
        {"order_id": _S, "address": _ADDRESS}, ["order_id", "address"]),
    _fn("modify_pending_order_items", "Swap items of a pending order.",
        {"order_id": _S, "swaps": _SWAPS, "payment_method_id": _S}, ["order_id", "swaps", "payment_method_id"]),
    _fn("exchange_delivered_order_items", "Exchange items of a delivered order.",
        {"order_id": _S, "swaps": _SWAPS, "payment_method_id": _S}, ["order_id", "swaps", "payment_method_id"]),
    _fn("return_delivered_order_items", "Return items of a delivered order for a refund.",
        {"order_id": _S, "product_ids": {"type": "array", "items": _S, "uniqueItems": True},
         "payment_method_id": _S}, ["order_id", "product_ids", "payment_method_id"]),
    _fn("update_user_address", "Change a user's default address.",
        {"user_id": _S, "address": _ADDRESS}, ["user_id", "address"]),
    _fn("transfer_to_human_agent", "Hand the conversation to a human agent.",
        {"summary": _S}, ["summary"]),
]

WRITE_TOOLS = frozenset({"cancel_pending_order", "modify_order_address", "modify_pending_order_items",
                         "exchange_delivered_order_items", "return_delivered_order_items",
                         "update_user_address", "transfer_to_human_agent"})


# ---------------------------------------------------------------------------------------------------
# Argument checks


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"'{name}' must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = _text(name, value)
    if text not in choices:
        raise ToolError(f"'{name}' must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return text


def _count(name: str, value: Any, default: int, maximum: int = 50) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ToolError(f"'{name}' must be an integer from 1 to {maximum}, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ToolError(f"'{name}' must be true or false, got {value!r}")
    return value


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) != {"street", "city", "zip"}:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ToolError(f"'address' must be an object with exactly street, city and zip; got {got}")
    address = {key: _text(f"address.{key}", value[key]) for key in ("street", "city", "zip")}
    if not _ZIP_RE.match(address["zip"]):
        raise ToolError(f"'address.zip' must be 5 digits, got {value['zip']!r}")
    return address


def _user(state: dict[str, Any], user_id: Any) -> tuple[str, dict[str, Any]]:
    uid = _text("user_id", user_id)
    user = state["users"].get(uid)
    if user is None:
        raise ToolError(f"no user with id {uid!r}; find the id with find_user_by_email or find_user_by_name_zip")
    return uid, user


def _order(state: dict[str, Any], order_id: Any) -> tuple[str, dict[str, Any]]:
    oid = _text("order_id", order_id)
    order = state["orders"].get(oid)
    if order is None:
        raise ToolError(f"no order with id {oid!r}; order ids look like 'W1234567'")
    return oid, order


def _product(state: dict[str, Any], product_id: Any, name: str = "product_id") -> tuple[str, dict[str, Any]]:
    pid = _text(name, product_id)
    product = state["products"].get(pid)
    if product is None:
        raise ToolError(f"no product with id {pid!r}")
    return pid, product


def _require_status(oid: str, order: dict[str, Any], allowed: tuple[str, ...], action: str) -> None:
    if order["status"] not in allowed:
        raise ToolError(f"order {oid} is {order['status']}; only {' or '.join(allowed)} orders can {action}")


def _payment_method(state: dict[str, Any], order: dict[str, Any], payment_method_id: Any) -> str:
    pm = _text("payment_method_id", payment_method_id)
    methods = state["users"][order["user_id"]]["payment_methods"]
    if pm not in methods:
        raise ToolError(f"payment method {pm!r} does not belong to the order's user; they have {', '.join(sorted(methods))}")
    return pm


def _money(x: float) -> float:
    return round(x + 0.0, 2)


def _pay(state: dict[str, Any], order: dict[str, Any], pm: str, amount: float) -> dict[str, Any]:
    """Move ``amount`` (> 0 charge, < 0 refund) through a payment method; gift cards keep a balance."""
    method = state["users"][order["user_id"]]["payment_methods"][pm]
    if method["type"] == "gift_card":
        if amount > method["balance"] + 1e-9:
            raise ToolError(f"gift card {pm} has a balance of {method['balance']:.2f}, less than {amount:.2f}")
        method["balance"] = _money(method["balance"] - amount)
    entry = {"type": "charge" if amount > 0 else "refund", "amount": _money(abs(amount)), "payment_method_id": pm}
    order.setdefault("payments", []).append(entry)
    return entry


def _order_view(state: dict[str, Any], oid: str, include_items: bool = True) -> dict[str, Any]:
    view = copy.deepcopy(state["orders"][oid])
    view["order_id"] = oid
    if include_items:
        for item in view["items"]:
            item["name"] = state["products"][item["product_id"]]["name"]
    else:
        del view["items"]
    return view


def _swaps(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict) or not value:
        raise ToolError(f"'swaps' must be a non-empty object mapping old to new product ids, got {value!r}")
    pairs = sorted((_text("swaps key", old), _text(f"swaps[{old!r}]", new)) for old, new in value.items())
    if len({old for old, _ in pairs}) != len(pairs):
        raise ToolError("'swaps' names a product twice")
    return pairs


def _apply_swaps(state: dict[str, Any], oid: str, order: dict[str, Any], swaps: Any, payment_method_id: Any,
                 *, restock: bool) -> None:
    pairs = _swaps(swaps)
    pm = _payment_method(state, order, payment_method_id)
    items = {item["product_id"]: item for item in order["items"]}
    new_ids = [new for _, new in pairs]
    if len(set(new_ids)) != len(new_ids):
        raise ToolError("two swaps name the same new product; swap each item to a different product")
    diff = 0.0
    for old, new in pairs:
        if old not in items:
            raise ToolError(f"order {oid} has no item {old!r}; its items are {', '.join(sorted(items))}")
        _, old_product = _product(state, old)
        _, new_product = _product(state, new, "new_product_id")
        if new in items:
            raise ToolError(f"{new!r} is already in order {oid}; swap to a different product")
        if new_product["category"] != old_product["category"]:
            raise ToolError(f"{new!r} is {new_product['category']}, not {old_product['category']}; "
                            "items can only be swapped within their category")
        quantity = items[old]["quantity"]
        if new_product["stock"] < quantity:
            raise ToolError(f"{new!r} ({new_product['name']}) has {new_product['stock']} in stock, {quantity} needed")
        diff += (new_product["price"] - items[old]["price"]) * quantity
    diff = _money(diff)
    if diff:
        _pay(state, order, pm, diff)
    for old, new in pairs:
        quantity = items[old]["quantity"]
        state["products"][new]["stock"] -= quantity
        if restock:
            state["products"][old]["stock"] += quantity
        items[old].update(product_id=new, price=state["products"][new]["price"])
    order["items"].sort(key=lambda item: item["product_id"])
    order["total"] = _money(sum(item["price"] * item["quantity"] for item in order["items"]))


# ---------------------------------------------------------------------------------------------------
# Reads


def find_user_by_email(state: dict[str, Any], email: Any) -> dict[str, str]:
    wanted = _text("email", email).lower()
    for uid in sorted(state["users"]):
        if state["users"][uid]["email"].lower() == wanted:
            return {"user_id": uid}
    raise ToolError(f"no user with email {wanted!r}; ask the user to check it, or use their name and zip code")


def find_user_by_name_zip(state: dict[str, Any], first_name: Any, last_name: Any, zip: Any) -> dict[str, str]:
    first, last = _text("first_name", first_name).lower(), _text("last_name", last_name).lower()
    code = _text("zip", zip)
    for uid in sorted(state["users"]):
        user = state["users"][uid]
        if (user["name"]["first"].lower(), user["name"]["last"].lower(), user["address"]["zip"]) == (first, last, code):
            return {"user_id": uid}
    raise ToolError(f"no user named {first_name!r} {last_name!r} with zip {code!r}; try their email instead")


def get_user_details(state: dict[str, Any], user_id: Any) -> dict[str, Any]:
    uid, user = _user(state, user_id)
    return {"user_id": uid, **copy.deepcopy(user)}


def list_user_orders(state: dict[str, Any], user_id: Any, status: Any = None, limit: Any = LIST_LIMIT) -> list[dict[str, Any]]:
    _, user = _user(state, user_id)
    wanted = None if status is None else _choice("status", status, STATUSES)
    count = _count("limit", limit, LIST_LIMIT)
    rows = []
    for oid in reversed(user["orders"]):
        order = state["orders"][oid]
        if wanted is None or order["status"] == wanted:
            names = [state["products"][item["product_id"]]["name"] for item in order["items"]]
            rows.append({"order_id": oid, "status": order["status"], "total": order["total"], "items": names})
    return rows[:count]


def get_order_details(state: dict[str, Any], order_id: Any, include_items: Any = True) -> dict[str, Any]:
    oid, _ = _order(state, order_id)
    return _order_view(state, oid, _flag("include_items", include_items))


def get_product_details(state: dict[str, Any], product_id: Any) -> dict[str, Any]:
    pid, product = _product(state, product_id)
    return {"product_id": pid, **copy.deepcopy(product)}


def search_products(state: dict[str, Any], query: Any, category: Any = None, limit: Any = SEARCH_LIMIT) -> list[dict[str, Any]]:
    words = _TOKEN_RE.findall(_text("query", query).lower())
    if not words:
        raise ToolError(f"'query' needs at least one letter or digit, got {query!r}")
    wanted = None if category is None else _choice("category", category, CATEGORIES)
    count = _count("limit", limit, SEARCH_LIMIT)
    rows = []
    for pid in sorted(state["products"]):
        product = state["products"][pid]
        name_words = set(_TOKEN_RE.findall(product["name"].lower()))
        if all(w in name_words for w in words) and wanted in (None, product["category"]):
            rows.append({"product_id": pid, "name": product["name"], "price": product["price"]})
    return rows[:count]


def get_policy(state: dict[str, Any], topic: Any) -> dict[str, str]:
    name = _choice("topic", topic, POLICY_TOPICS)
    return {"topic": name, "policy": state.get("policies", POLICIES).get(name, POLICIES[name])}


# ---------------------------------------------------------------------------------------------------
# Writes


def cancel_pending_order(state: dict[str, Any], order_id: Any, reason: Any) -> dict[str, Any]:
    oid, order = _order(state, order_id)
    why = _choice("reason", reason, CANCEL_REASONS)
    _require_status(oid, order, ("pending",), "be cancelled")
    for item in order["items"]:
        state["products"][item["product_id"]]["stock"] += item["quantity"]
    order["status"] = "cancelled"
    order["cancel_reason"] = why
    _pay(state, order, order["payment_method"], -order["total"])
    return _order_view(state, oid)


def modify_order_address(state: dict[str, Any], order_id: Any, address: Any) -> dict[str, Any]:
    oid, order = _order(state, order_id)
    new = _address(address)
    _require_status(oid, order, ("pending", "processed"), "get a new address")
    order["address"] = new
    return _order_view(state, oid)


def modify_pending_order_items(state: dict[str, Any], order_id: Any, swaps: Any, payment_method_id: Any) -> dict[str, Any]:
    oid, order = _order(state, order_id)
    _require_status(oid, order, ("pending",), "have items swapped")
    if order.get("items_modified"):
        raise ToolError(f"the items of order {oid} were already modified once; the policy allows one change")
    _apply_swaps(state, oid, order, swaps, payment_method_id, restock=True)
    order["items_modified"] = True
    return _order_view(state, oid)


def exchange_delivered_order_items(state: dict[str, Any], order_id: Any, swaps: Any, payment_method_id: Any) -> dict[str, Any]:
    oid, order = _order(state, order_id)
    _require_status(oid, order, ("delivered",), "be exchanged")
    _apply_swaps(state, oid, order, swaps, payment_method_id, restock=False)
    order["status"] = "exchanged"
    return _order_view(state, oid)


def return_delivered_order_items(state: dict[str, Any], order_id: Any, product_ids: Any, payment_method_id: Any) -> dict[str, Any]:
    oid, order = _order(state, order_id)
    if not isinstance(product_ids, list) or not product_ids:
        raise ToolError(f"'product_ids' must be a non-empty list of product ids, got {product_ids!r}")
    wanted = sorted({_text("product_ids[]", p) for p in product_ids})
    if len(wanted) != len(product_ids):
        raise ToolError("'product_ids' lists a product twice")
    _require_status(oid, order, ("delivered",), "be returned")
    items = {item["product_id"]: item for item in order["items"]}
    unknown = [p for p in wanted if p not in items]
    if unknown:
        raise ToolError(f"order {oid} has no item {unknown[0]!r}; its items are {', '.join(sorted(items))}")
    pm = _payment_method(state, order, payment_method_id)
    methods = state["users"][order["user_id"]]["payment_methods"]
    if pm != order["payment_method"] and methods[pm]["type"] != "gift_card":
        raise ToolError(f"refunds go to the original payment method ({order['payment_method']}) or a gift card, not {pm}")
    _pay(state, order, pm, -sum(items[p]["price"] * items[p]["quantity"] for p in wanted))
    order["status"] = "returned"
    order["returned_items"] = wanted
    return _order_view(state, oid)


def update_user_address(state: dict[str, Any], user_id: Any, address: Any) -> dict[str, Any]:
    uid, user = _user(state, user_id)
    user["address"] = _address(address)
    return get_user_details(state, uid)


def transfer_to_human_agent(state: dict[str, Any], summary: Any) -> dict[str, str]:
    _text("summary", summary)
    # The summary is free text: it is not stored, so equally good summaries leave equal states.
    state.setdefault("session", {})["transferred"] = True
    return {"status": "transferred", "message": "A human agent will take over this conversation."}


FUNCTIONS = {
    "find_user_by_email": find_user_by_email,
    "find_user_by_name_zip": find_user_by_name_zip,
    "get_user_details": get_user_details,
    "list_user_orders": list_user_orders,
    "get_order_details": get_order_details,
    "get_product_details": get_product_details,
    "search_products": search_products,
    "get_policy": get_policy,
    "cancel_pending_order": cancel_pending_order,
    "modify_order_address": modify_order_address,
    "modify_pending_order_items": modify_pending_order_items,
    "exchange_delivered_order_items": exchange_delivered_order_items,
    "return_delivered_order_items": return_delivered_order_items,
    "update_user_address": update_user_address,
    "transfer_to_human_agent": transfer_to_human_agent,
}
assert [t["function"]["name"] for t in TOOLS] == list(FUNCTIONS)

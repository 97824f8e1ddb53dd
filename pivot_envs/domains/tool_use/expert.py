"""A programmatic expert for the tool-use domain: seeded shop databases and successful support chats.

Every record gets its own small database (the customer, another user, their orders, six to eight
products) and one task. The conversation is produced by actually running the tools on an
:class:`~sandboxes.inprocess.InProcessSandbox` over that database, so replaying a record reproduces
each tool output byte for byte and ends at ``task.success.expected_state_sha256``. The expert reads
every fact it states from the tool outputs it has seen; the hidden ``task.intent`` (who the customer
is, what they want, what they answer) is what a scripted user simulator answers from.

Task types (:data:`TASK_TYPES`): cancel an order, change an order's address, change the customer's
address, return delivered items, exchange delivered items, swap items of a pending order, order
status, product information, policy questions, and a request the policy forbids (the expert refuses,
and transfers to a human when the customer insists).

Variety, so a policy has something to generalise over:

* the customer identifies by email (typed in any case) or by name and zip, in the first message or
  when asked;
* orders are named by id or described by an item; reads come in different valid orders (user
  details before, after or in parallel with the order; ``list_user_orders`` or the user's order ids);
* argument spellings the rule verifier accepts as equal (:func:`spell`): optional parameters omitted
  or given at their default, emails in another case, ``uniqueItems`` lists in any order, extra
  whitespace; :func:`equivalent_spellings` lists them for tests;
* several wordings of every user and assistant turn; hidden reasoning (``reasoning_content``) on some turns;
* every write is confirmed first ("Shall I go ahead?" / "Yes.").

>>> records = generate(3, seed=0)
>>> [r["metadata"]["task_type"] for r in records]
['cancel_order', 'modify_order_address', 'update_user_address']
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pivot_envs.domains.tool_use.tools import CANCEL_REASONS, FUNCTIONS, POLICY_TOPICS, TOOLS, WRITE_TOOLS
from pivot_envs.trajectory import save_trajectories
from sandboxes.inprocess import InProcessSandbox

SYSTEM_PROMPT = (
    "You are a support agent for an online shop. Policy: verify the user (email, or name and zip) before "
    "using their account. Only pending orders can be cancelled or have items swapped (once); pending or "
    "processed ones can get a new address; delivered ones can be returned or exchanged. Confirm every change "
    "first. Transfer to a human only if the user insists on something the policy forbids."
)

TASK_TYPES = (
    "cancel_order", "modify_order_address", "update_user_address", "return_items", "exchange_items",
    "modify_order_items", "order_status", "product_info", "policy_question", "refusal",
)

# name, category, base price, variants
FAMILIES = [
    ("T-shirt", "apparel", 19.99, ["blue, M", "blue, L", "black, M", "white, S"]),
    ("Hoodie", "apparel", 44.5, ["grey, M", "grey, L", "navy, M"]),
    ("Running shoes", "footwear", 89.0, ["size 9", "size 10", "size 11"]),
    ("Sandals", "footwear", 29.95, ["size 8", "size 9", "size 10"]),
    ("Wireless earbuds", "electronics", 59.99, ["black", "white"]),
    ("Phone charger", "electronics", 18.0, ["20W", "30W"]),
    ("Desk lamp", "home", 34.99, ["black", "brass"]),
    ("Throw pillow", "home", 15.5, ["green", "mustard", "grey"]),
    ("Water bottle", "kitchen", 12.99, ["500 ml", "750 ml"]),
    ("Coffee mug", "kitchen", 9.5, ["white", "speckled"]),
    ("Backpack", "bags", 49.0, ["black", "olive"]),
    ("Tote bag", "bags", 24.0, ["canvas", "denim"]),
]
FIRST_NAMES = ["Mia", "Noah", "Ava", "Liam", "Zoe", "Ethan", "Lena", "Omar", "Ines", "Yuki", "Sara", "Raj",
               "Chloe", "Mateo", "Aisha", "Lucas", "Nora", "Hugo", "Priya", "Jonas"]
LAST_NAMES = ["Garcia", "Smith", "Kim", "Patel", "Rossi", "Nguyen", "Silva", "Brown", "Lopez", "Khan", "Ito",
              "Dubois", "Novak", "Haddad", "Jensen", "Okafor"]
CITIES = [("Austin", "787"), ("Denver", "802"), ("Boston", "021"), ("Seattle", "981"), ("Portland", "972"),
          ("Chicago", "606"), ("Phoenix", "850"), ("Miami", "331"), ("Madison", "537"), ("Tucson", "857")]
STREETS = ["Oak St", "Maple Ave", "Pine Rd", "Cedar Ln", "Elm St", "Birch Way", "Lake Dr", "Hill Rd",
           "Park Ave", "River Rd", "Main St", "Sunset Blvd"]

GREETINGS = ["Hi!", "Hello.", "Hey there!", "Good morning!", "Hi there.", ""]
NEXT_REQUEST = ["One more thing: ", "Next request: ", "Thanks. ", "Great, thanks. ", "Also: "]
SHARE_EMAIL = ["My email is {email}.", "You can find me under {email}.", "Email: {email}"]
REPLY_EMAIL = ["It's {email}.", "My email is {email}.", "{email}"]
SHARE_NAME = ["I'm {first} {last}, zip code {zip}.", "My name is {first} {last} and my zip is {zip}.",
              "{first} {last}, {zip}."]
ASK_IDENTITY = [
    "I can help with that. First, please tell me your email address, or your name and zip code.",
    "Sure. To verify your identity, could you share your email, or your full name and zip code?",
    "Happy to help! Which email is your account under? Your name and zip code work too.",
]
CONFIRM = ["Shall I go ahead?", "Do you want me to proceed?", "Should I do that?", "Please confirm (yes/no)."]
YES = ["Yes.", "yes please", "Yes, go ahead.", "Sure, do it.", "Confirmed.", "Yep, that's right."]
ANYTHING_ELSE = [" Anything else I can help with?", " Is there anything else?", ""]
THANKS = ["No, that's all. Thanks!", "That's everything, thank you.", "Nope, thanks for the help!", "All good, thanks."]
ACCEPT = ["Okay, I understand. Thanks anyway.", "Oh well. Thanks for checking.", "Alright, that's all then."]
BYE = ["You're welcome! Have a great day.", "Glad I could help. Goodbye!", "Happy to help. Take care!"]
REASONS = {
    "no longer needed": ["I don't need it anymore.", "I no longer need it.", "I changed my mind, I don't need it."],
    "ordered by mistake": ["I ordered it by mistake.", "I placed it by accident.", "It was a mistake, I didn't mean to order it."],
}
STATUS_SENTENCE = {
    "pending": "Order {oid} is pending: it has not been processed yet.",
    "processed": "Order {oid} has been processed and will ship within 1-2 days.",
    "shipped": "Order {oid} has shipped and should arrive within 3-5 business days.",
    "delivered": "Order {oid} was delivered to {address}.",
    "cancelled": "Order {oid} was cancelled.",
    "returned": "Order {oid} was returned.",
    "exchanged": "Order {oid} was exchanged.",
}
POLICY_QUESTIONS = {
    "cancellation": ["Can I cancel an order after placing it?", "What's your cancellation policy?"],
    "address": ["Can I change the delivery address of an order?", "What if I need to ship an order elsewhere?"],
    "returns": ["What is your return policy?", "Can I return something I bought?"],
    "exchanges": ["Can I exchange an item for a different size?", "How do exchanges work?"],
    "shipping": ["How long does shipping take?", "When will my order arrive after I place it?"],
}

# ---------------------------------------------------------------------------------------------------
# Argument spellings


_SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _is_default(value: Any, prop: dict[str, Any]) -> bool:
    return "default" in prop and type(value) is type(prop["default"]) and value == prop["default"]


def spell(name: str, args: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One spelling of ``args`` that the rule verifier accepts as equal and the tools treat alike.

    Optional parameters at their default are omitted or written out, emails change case, ``uniqueItems``
    lists and mappings are shuffled, and free text or address fields occasionally get doubled spaces.
    """
    props = _SCHEMAS[name]["properties"]
    out: dict[str, Any] = {}
    for key, value in args.items():
        prop = props[key]
        if _is_default(value, prop) and rng.random() < 0.5:
            continue
        if prop.get("uniqueItems"):
            value = rng.sample(value, len(value))
        if "additionalProperties" in prop:  # a mapping: key order means nothing
            value = dict(rng.sample(list(value.items()), len(value)))
        if prop.get("format") == "email" and rng.random() < 0.5:
            value = value.lower()
        if key in ("summary", "address") and rng.random() < 0.08:
            value = _respace(value)
        out[key] = value
    for key, prop in props.items():
        if key not in args and "default" in prop and rng.random() < 0.25:
            out[key] = prop["default"]
    return out


def _respace(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(" ", "  ", 1)
    if isinstance(value, dict):
        return {k: _respace(v) for k, v in value.items()}
    return value


def _pad(value: Any) -> Any:
    if isinstance(value, str):
        return f" {value.replace(' ', '  ')} "
    if isinstance(value, dict):
        return {k: _pad(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pad(v) for v in value]
    return value


def equivalent_spellings(name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Deterministic variants of ``args`` that must be judged equal to it and must act the same.

    Defaults all written out, defaults all omitted, emails upper-cased, ``uniqueItems`` lists reversed,
    every string value padded with whitespace, keys (and the keys of nested mappings) in reverse order,
    optional parameters without a default given as null.
    """
    props = _SCHEMAS[name]["properties"]
    explicit = dict(args)
    for key, prop in props.items():
        if "default" in prop:
            explicit.setdefault(key, prop["default"])
    omitted = {k: v for k, v in args.items() if not _is_default(v, props.get(k, {}))}
    upper = {k: v.upper() if props.get(k, {}).get("format") == "email" else v for k, v in args.items()}
    reordered = {k: list(reversed(v)) if props.get(k, {}).get("uniqueItems") else v for k, v in args.items()}
    padded = {k: _pad(v) for k, v in args.items()}
    backwards = {k: dict(reversed(list(v.items()))) if isinstance(v, dict) else v
                 for k, v in reversed(list(args.items()))}
    required = set(_SCHEMAS[name].get("required") or ())
    nulls = {**args, **{k: None for k, p in props.items() if k not in args and k not in required and "default" not in p}}
    return [explicit, omitted, upper, reordered, padded, backwards, nulls]


# ---------------------------------------------------------------------------------------------------
# The database


def money(x: float) -> str:
    return f"${x:.2f}"


def fmt_address(a: dict[str, str]) -> str:
    return f"{a['street']}, {a['city']} {a['zip']}"


def describe_payment(pm: str) -> str:
    if pm.startswith("credit_card_"):
        return f"the credit card ending in {pm.rsplit('_', 1)[1]}"
    if pm.startswith("gift_card_"):
        return "your gift card"
    return "your PayPal account"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class World:
    """A seeded shop database under construction, and the customer the conversation is about.

    Args:
        rng: The record's random generator.
        n_families: Product families in the catalogue (each with ``variants`` products).
        stock: Range of initial stock counts.
        long: Building one long conversation: no out-of-stock tricks, distinct items per order.
    """

    def __init__(self, rng: random.Random, *, n_families: int = 3, variants: int = 2,
                 stock: tuple[int, int] = (1, 9), long: bool = False):
        self.rng, self.long = rng, long
        self.state: dict[str, Any] = {"users": {}, "orders": {}, "products": {}}
        self._taken: set[str] = set()
        self.family_of: dict[str, str] = {}
        self.families: dict[str, list[str]] = {}
        for name, category, base, options in rng.sample(FAMILIES, n_families):
            for option in rng.sample(options, min(variants, len(options))):
                pid = self._id("P", 4)
                price = round(base + rng.choice([0.0, 0.0, 2.0, 5.0, -1.0]), 2)
                self.state["products"][pid] = {"name": f"{name} ({option})", "category": category,
                                               "price": price, "stock": rng.randint(*stock)}
                self.family_of[pid] = name
                self.families.setdefault(name, []).append(pid)
        self.customer_id = self.new_user()
        user = self.state["users"][self.customer_id]
        self.customer = {"user_id": self.customer_id, "first_name": user["name"]["first"],
                         "last_name": user["name"]["last"], "zip": user["address"]["zip"], "email": user["email"]}
        self.latest: str | None = None  # an order that must stay the customer's newest

    def _id(self, prefix: str, digits: int) -> str:
        while True:
            value = f"{prefix}{self.rng.randrange(10 ** (digits - 1), 10 ** digits)}"
            if value not in self._taken:
                self._taken.add(value)
                return value

    def address(self) -> dict[str, str]:
        city, prefix = self.rng.choice(CITIES)
        return {"street": f"{self.rng.randint(1, 999)} {self.rng.choice(STREETS)}", "city": city,
                "zip": f"{prefix}{self.rng.randint(10, 99)}"}

    def new_user(self) -> str:
        users = self.state["users"]
        while True:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            if all((u["name"]["first"], u["name"]["last"]) != (first, last) for u in users.values()):
                break
        uid = f"{first.lower()}_{last.lower()}_{self._id('', 4)}"
        main = self.rng.choice(["credit_card", "credit_card", "paypal"])
        methods: dict[str, Any] = {}
        pm = f"{main}_{self._id('', 4)}"
        methods[pm] = {"type": "credit_card", "last4": pm[-4:]} if main == "credit_card" else {"type": "paypal"}
        if self.rng.random() < 0.5:
            methods[f"gift_card_{self._id('', 4)}"] = {"type": "gift_card", "balance": float(self.rng.randint(0, 20) * 5)}
        users[uid] = {"name": {"first": first, "last": last},
                      "email": f"{first.lower()}.{last.lower()}{self.rng.randint(1, 99)}@example.com",
                      "address": self.address(), "payment_methods": methods, "orders": []}
        return uid

    def payment_of(self, uid: str) -> str:
        methods = self.state["users"][uid]["payment_methods"]
        return next(pm for pm, m in methods.items() if m["type"] != "gift_card")

    def new_order(self, status: str, *, uid: str | None = None, products: list[str] | None = None,
                  n_items: int | None = None, address: dict[str, str] | None = None) -> str:
        uid = uid or self.customer_id
        if products is None:
            n = n_items or self.rng.choice([1, 1, 2])
            products = self.rng.sample(sorted(self.state["products"]), n)
        items = []
        for pid in sorted(products):
            price = self.state["products"][pid]["price"]
            items.append({"product_id": pid, "quantity": 1 if self.rng.random() < 0.85 else 2, "price": price})
        oid = self._id("W", 7)
        self.state["orders"][oid] = {
            "user_id": uid, "status": status, "items": items,
            "address": address or dict(self.state["users"][uid]["address"]),
            "payment_method": self.payment_of(uid),
            "total": round(sum(i["price"] * i["quantity"] for i in items), 2),
        }
        self.state["users"][uid]["orders"].append(oid)
        return oid

    def alternative(self, pid: str, avoid: set[str]) -> str | None:
        """Another product of ``pid``'s family, not in ``avoid``."""
        options = [p for p in self.families[self.family_of[pid]] if p != pid and p not in avoid]
        return self.rng.choice(options) if options else None

    def finish(self, n_other_users: int | None = None, n_extra_orders: int | None = None) -> None:
        """Add other users and a few unrelated orders, then shuffle the customer's order history."""
        statuses = ["pending", "processed", "shipped", "delivered", "delivered", "cancelled"]
        for _ in range(self.rng.randint(0, 1) if n_extra_orders is None else n_extra_orders):
            self.new_order(self.rng.choice(statuses))
        for _ in range(1 if n_other_users is None else n_other_users):
            self.new_order(self.rng.choice(statuses), uid=self.new_user())
        history = self.state["users"][self.customer_id]["orders"]
        self.rng.shuffle(history)
        if self.latest is not None:
            history.remove(self.latest)
            history.append(self.latest)


# ---------------------------------------------------------------------------------------------------
# The conversation


class Conversation:
    """Messages plus the sandbox they act on; the expert's moves are its methods."""

    def __init__(self, world: World, rng: random.Random, record_id: str):
        self.world, self.rng, self.record_id = world, rng, record_id
        self.initial_state = copy.deepcopy(world.state)
        self.sandbox = InProcessSandbox(world.state, FUNCTIONS)
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        self.identify_by = rng.choice(["email", "name_zip"])
        self.email_typed = rng.choice([str.lower, _title_email, str.lower, str.upper])(world.customer["email"])
        self.identity_shared = False
        self.user_id: str | None = None
        self.user_details_seen: dict[str, Any] | None = None
        self.ended = False
        self._call_ids: set[str] = set()

    # -- raw moves -----------------------------------------------------------------------------------

    @property
    def n_turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    @property
    def n_user(self) -> int:
        return sum(m["role"] == "user" for m in self.messages)

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def say(self, text: str, why: str | None = None) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if why and self.rng.random() < 0.35:
            msg["reasoning_content"] = why
        self.messages.append(msg)

    def call(self, *calls: tuple[str, dict[str, Any]], why: str | None = None) -> list[Any]:
        """One assistant turn with these (parallel) calls, executed for real; returns the parsed outputs."""
        wire, replies, outputs = [], [], []
        for name, args in calls:
            args = spell(name, args, self.rng)
            call_id = self._call_id()
            result = self.sandbox.call_tool(name, copy.deepcopy(args))
            if not result.ok:
                raise RuntimeError(f"{self.record_id}: the expert's call {name}({args}) failed: {result.stderr}")
            wire.append({"id": call_id, "type": "function",
                         "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})
            replies.append({"role": "tool", "tool_call_id": call_id, "content": result.stdout})
            outputs.append(json.loads(result.stdout))
        msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": wire}
        if why and self.rng.random() < 0.35:
            msg["reasoning_content"] = why
        self.messages += [msg, *replies]
        if any(name in WRITE_TOOLS for name, _ in calls):
            self.user_details_seen = None  # a write may have changed the profile: read it again when needed
        return outputs

    def call1(self, name: str, args: dict[str, Any], why: str | None = None) -> Any:
        return self.call((name, args), why=why)[0]

    def _call_id(self) -> str:
        k = len(self._call_ids)
        call_id = "call_" + hashlib.sha256(f"{self.record_id}:{k}".encode()).hexdigest()[:8]
        if call_id in self._call_ids:
            call_id += f"_{k}"
        self._call_ids.add(call_id)
        return call_id

    # -- composite moves -----------------------------------------------------------------------------

    def request(self, text: str, *, personal: bool = True) -> None:
        """The customer states a task; the first message greets and may already say who they are."""
        if self.n_user:
            self.user(self.rng.choice(NEXT_REQUEST) + text)
            return
        parts = [self.rng.choice(GREETINGS), text]
        if personal and self.rng.random() < 0.45:
            parts.append(self._identity(SHARE_EMAIL))
            self.identity_shared = True
        self.user(" ".join(p for p in parts if p))

    def _identity(self, email_templates: list[str]) -> str:
        c = self.world.customer
        if self.identify_by == "email":
            return self.rng.choice(email_templates).format(email=self.email_typed)
        return self.rng.choice(SHARE_NAME).format(first=c["first_name"], last=c["last_name"], zip=c["zip"])

    def authenticate(self) -> str:
        if self.user_id is not None:
            return self.user_id
        if not self.identity_shared:
            self.say(self.rng.choice(ASK_IDENTITY))
            self.user(self._identity(REPLY_EMAIL))
            self.identity_shared = True
        c = self.world.customer
        why = "Policy: find the user's id before touching their account."
        if self.identify_by == "email":
            out = self.call1("find_user_by_email", {"email": self.email_typed}, why)
        else:
            out = self.call1("find_user_by_name_zip", {"first_name": c["first_name"], "last_name": c["last_name"],
                                                       "zip": c["zip"]}, why)
        self.user_id = out["user_id"]
        return self.user_id

    def user_details(self) -> dict[str, Any]:
        if self.user_details_seen is None:
            self.user_details_seen = self.call1("get_user_details", {"user_id": self.user_id},
                                                "I need the user's payment methods and orders.")
        return self.user_details_seen

    def read_order(self, oid: str, *, include_items: bool = True) -> dict[str, Any]:
        return self.call1("get_order_details", {"order_id": oid, "include_items": include_items},
                          f"Check order {oid} before doing anything with it.")

    def _unique_item(self, oid: str, name: str) -> bool:
        """Is ``name`` in order ``oid`` and in no other order of the customer (so it can name the order)?"""
        state = self.sandbox.state
        holders = [o for o in state["users"][self.world.customer_id]["orders"]
                   if any(state["products"][i["product_id"]]["name"] == name for i in state["orders"][o]["items"])]
        return holders == [oid]

    def locate_order(self, oid: str, by_id: bool, item: str, status: str) -> dict[str, Any]:
        """Read order ``oid`` the way the request allows: by its id, or by finding the order with ``item``."""
        uid = self.authenticate()
        r = self.rng.random()
        if by_id:
            if r < 0.2 and self.user_details_seen is None:
                self.user_details_seen, order = self.call(
                    ("get_user_details", {"user_id": uid}), ("get_order_details", {"order_id": oid}),
                    why="Read the profile and the order together.")
                return order
            if r < 0.4:
                self.user_details()
            return self.read_order(oid)
        if r < 0.6 or self.user_details_seen is not None:
            args: dict[str, Any] = {"user_id": uid}
            if self.rng.random() < 0.4:
                args["status"] = status
            rows = self.call1("list_user_orders", args, f"Find the order that has the {item}.")
            assert any(row["order_id"] == oid and item in row["items"] for row in rows), (self.record_id, rows)
            return self.read_order(oid)
        for order_id in reversed(self.user_details()["orders"]):
            order = self.read_order(order_id)
            if any(i["name"] == item for i in order["items"]):
                assert order_id == oid, (self.record_id, order_id, oid)
                return order
        raise AssertionError(f"{self.record_id}: no order of the customer has the {item}")

    def confirm(self, text: str, why: str | None = None) -> None:
        self.say(f"{text} {self.rng.choice(CONFIRM)}", why)
        self.user(self.rng.choice(YES))

    def done(self, text: str) -> None:
        self.say(text + self.rng.choice(ANYTHING_ELSE))

    def finish(self, *, force: bool = False, thanks: list[str] = THANKS) -> None:
        if self.ended:
            return
        if force or self.n_turns < 4 or self.rng.random() < 0.6:
            self.user(self.rng.choice(thanks))
            self.say(self.rng.choice(BYE))
        self.ended = True

    def record(self, record_id: str, intent: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        assert self.messages[-1]["role"] == "assistant", record_id
        return {
            "id": record_id,
            "domain": "tool_use",
            "messages": self.messages,
            "tools": copy.deepcopy(TOOLS),
            "env": {"sandbox": "inprocess", "state": self.initial_state},
            "task": {"success": {"kind": "final_state", "expected_state_sha256": self.sandbox.state_digest()},
                     "intent": intent},
            "metadata": metadata,
        }


def _title_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return ".".join(p[:1].upper() + p[1:] for p in local.split(".")) + "@" + domain.capitalize()


def _order_state(c: Conversation, oid: str) -> dict[str, Any]:
    return c.sandbox.state["orders"][oid]


def _item_names(order: dict[str, Any]) -> list[str]:
    return [i["name"] for i in order["items"]]


def _product_name(c: Conversation, pid: str) -> str:
    return c.sandbox.state["products"][pid]["name"]


# ---------------------------------------------------------------------------------------------------
# Tasks: plan(world) -> intent (and the orders it needs); run(conversation, intent)


def plan_cancel(w: World) -> dict[str, Any]:
    oid = w.new_order("pending")
    return {"order_id": oid, "reason": w.rng.choice(CANCEL_REASONS), "reason_stated": w.rng.random() < 0.6,
            "by_id": w.rng.random() < 0.7 or w.long}


def run_cancel(c: Conversation, t: dict[str, Any]) -> None:
    oid, rng = t["order_id"], c.rng
    item = _product_name(c, _order_state(c, oid)["items"][0]["product_id"])
    by_id = t["by_id"] or not c._unique_item(oid, item)
    if by_id:
        text = rng.choice(["I'd like to cancel order {oid}.", "Please cancel my order {oid}.", "Can you cancel order {oid}?"])
    else:
        text = rng.choice(["I want to cancel the order with the {item}.", "Please cancel my order for the {item}."])
    if t["reason_stated"]:
        text += " " + rng.choice(REASONS[t["reason"]])
    c.request(text.format(oid=oid, item=item))
    order = c.locate_order(oid, by_id, item, "pending")
    items, total, pm = _join(_item_names(order)), order["total"], order["payment_method"]
    if not t["reason_stated"]:
        c.say(f"Order {oid} with the {items} is pending, so it can be cancelled. Why do you want to cancel it: "
              "no longer needed, or ordered by mistake?")
        c.user(rng.choice(REASONS[t["reason"]]))
    c.confirm(f"I'll cancel order {oid} with the {items}, reason '{t['reason']}', and refund {money(total)} to "
              f"{describe_payment(pm)}.", why="The order is pending, so the policy allows cancelling it.")
    c.call1("cancel_pending_order", {"order_id": oid, "reason": t["reason"]}, why="The user confirmed.")
    c.done(f"Done: order {oid} is cancelled and {money(total)} will go back to {describe_payment(pm)}.")


def plan_modify_address(w: World) -> dict[str, Any]:
    use_default = w.rng.random() < 0.3
    oid = w.new_order(w.rng.choice(["pending", "processed"]), address=w.address() if use_default else None)
    return {"order_id": oid, "new_address": None if use_default else w.address(), "use_default": use_default,
            "by_id": w.rng.random() < 0.75 or w.long}


def run_modify_address(c: Conversation, t: dict[str, Any]) -> None:
    oid, rng = t["order_id"], c.rng
    item = _product_name(c, _order_state(c, oid)["items"][0]["product_id"])
    by_id = t["by_id"] or not c._unique_item(oid, item)
    target = f"order {oid}" if by_id else f"my order with the {item}"
    if t["use_default"]:
        text = rng.choice(["Can you ship {target} to my default address instead?",
                           "Please send {target} to the address on my account."])
    else:
        a = t["new_address"]
        spoken = rng.choice([fmt_address(a), f"{a['street']}, {a['city']}, {a['zip']}"])
        text = rng.choice(["Please change the shipping address of {target} to {addr}.",
                           "I need {target} delivered to {addr} instead.",
                           "Could you update the address for {target}? New one: {addr}."]).replace("{addr}", spoken)
    c.request(text.replace("{target}", target))
    order = c.locate_order(oid, by_id, item, _order_state(c, oid)["status"])
    address = c.user_details()["address"] if t["use_default"] else t["new_address"]
    c.confirm(f"Order {oid} is {order['status']}, so its address can still change. I'll set it to "
              f"{fmt_address(address)}.", why="Pending or processed orders can get a new address.")
    c.call1("modify_order_address", {"order_id": oid, "address": dict(address)}, why="Confirmed; update it.")
    c.done(f"Order {oid} will now ship to {fmt_address(address)}.")


def plan_update_address(w: World) -> dict[str, Any]:
    also = w.new_order(w.rng.choice(["pending", "processed"])) if w.rng.random() < 0.35 else None
    return {"new_address": w.address(), "also_order_id": also}


def run_update_address(c: Conversation, t: dict[str, Any]) -> None:
    rng, a = c.rng, t["new_address"]
    spoken = rng.choice([fmt_address(a), f"{a['street']}, {a['city']}, {a['zip']}"])
    c.request(rng.choice(["I moved. Please update my address to {addr}.", "Can you change my default address to {addr}?",
                          "My new address is {addr}; please update my account."]).format(addr=spoken))
    uid = c.authenticate()
    lead = ""
    if rng.random() < 0.5:
        lead = f"Your address on file is {fmt_address(c.user_details()['address'])}. "
    c.confirm(f"{lead}I'll change your default address to {fmt_address(a)}.")
    c.call1("update_user_address", {"user_id": uid, "address": dict(a)}, why="The user confirmed the new address.")
    c.done(f"Your default address is now {fmt_address(a)}.")
    oid = t["also_order_id"]
    if oid:
        c.user(rng.choice(["Could you also send my order {oid} there?", "Please change order {oid} to the new address too."])
               .format(oid=oid))
        order = c.read_order(oid, include_items=rng.random() < 0.7)
        c.confirm(f"Order {oid} is {order['status']}, so I can change its address to {fmt_address(a)}.")
        c.call1("modify_order_address", {"order_id": oid, "address": dict(a)})
        c.done(f"Order {oid} will ship to {fmt_address(a)} as well.")


def plan_return(w: World) -> dict[str, Any]:
    oid = w.new_order("delivered", n_items=w.rng.choice([1, 2, 2, 3]))
    items = [i["product_id"] for i in w.state["orders"][oid]["items"]]
    chosen = sorted(w.rng.sample(items, w.rng.randint(1, len(items))))
    gift = [pm for pm, m in w.state["users"][w.customer_id]["payment_methods"].items() if m["type"] == "gift_card"]
    to_gift = bool(gift) and w.rng.random() < 0.5
    return {"order_id": oid, "product_ids": chosen, "refund_to": gift[0] if to_gift else w.payment_of(w.customer_id),
            "by_id": w.rng.random() < 0.7 or w.long}


def run_return(c: Conversation, t: dict[str, Any]) -> None:
    oid, rng = t["order_id"], c.rng
    names = [_product_name(c, p) for p in t["product_ids"]]
    by_id = t["by_id"] or not c._unique_item(oid, names[0])
    if by_id:
        text = rng.choice(["I'd like to return the {names} from order {oid}.",
                           "Order {oid} arrived, but I want to return the {names}."])
    else:
        text = rng.choice(["I want to return the {names} I received.", "How do I return the {names} I got?"])
    c.request(text.format(oid=oid, names=_join(names)))
    order = c.locate_order(oid, by_id, names[0], "delivered")
    details = c.user_details()
    prices = {i["product_id"]: i["price"] * i["quantity"] for i in order["items"]}
    refund = round(sum(prices[p] for p in t["product_ids"]), 2)
    gift = [pm for pm, m in details["payment_methods"].items() if m["type"] == "gift_card"]
    pm = t["refund_to"]
    if gift:
        c.say(f"Order {oid} is delivered, so the {_join(names)} can be returned for {money(refund)}. Should the "
              f"refund go to {describe_payment(order['payment_method'])} or to your gift card?",
              why="Refunds go to the original payment method or a gift card; the user has a gift card.")
        c.user(rng.choice(["To the gift card, please.", "Gift card."]) if pm in gift
               else rng.choice(["Back to the original payment, please.", "The original payment method."]))
    c.confirm(f"I'll return the {_join(names)} from order {oid} and refund {money(refund)} to {describe_payment(pm)}.",
              why="The order is delivered, so a return is allowed.")
    c.call1("return_delivered_order_items", {"order_id": oid, "product_ids": list(t["product_ids"]), "payment_method_id": pm})
    c.done(f"The return is registered: {money(refund)} will be refunded to {describe_payment(pm)}.")


def _plan_swap(w: World, status: str) -> dict[str, Any]:
    pids = sorted(w.state["products"])
    old = w.rng.choice(pids)
    others = [p for p in pids if w.family_of[p] != w.family_of[old]]
    products = [old] + ([w.rng.choice(others)] if others and w.rng.random() < 0.4 else [])
    oid = w.new_order(status, products=products)
    swaps = {}
    for pid in products[: 1 if w.rng.random() < 0.7 else 2]:
        new = w.alternative(pid, set(products))
        if new is None:
            continue
        quantity = next(i["quantity"] for i in w.state["orders"][oid]["items"] if i["product_id"] == pid)
        stock = w.state["products"][new]
        stock["stock"] = max(stock["stock"], quantity + w.rng.randint(0, 3))
        swaps[pid] = new
    return {"order_id": oid, "swaps": swaps, "by_id": w.rng.random() < 0.8 or w.long}


def plan_exchange(w: World) -> dict[str, Any]:
    return _plan_swap(w, "delivered")


def plan_modify_items(w: World) -> dict[str, Any]:
    return _plan_swap(w, "pending")


def _run_swap(c: Conversation, t: dict[str, Any], *, delivered: bool) -> None:
    oid, rng = t["order_id"], c.rng
    olds = [_product_name(c, old) for old in t["swaps"]]
    news = [_product_name(c, new) for new in t["swaps"].values()]
    by_id = t["by_id"] or not c._unique_item(oid, olds[0])
    pairs = _join([f"the {o} for the {n}" for o, n in zip(olds, news, strict=True)])
    target = f"order {oid}" if by_id else "my order"
    if delivered:
        text = rng.choice(["I'd like to exchange {pairs} from {target}.",
                           "I got {target}, but can I swap {pairs}?"])
    else:
        text = rng.choice(["Before {target} ships, can you change {pairs}?", "Please swap {pairs} in {target}."])
    c.request(text.format(pairs=pairs, target=target))
    order = c.locate_order(oid, by_id, olds[0], "delivered" if delivered else "pending")
    # Find the new products' ids: one search per family, in parallel when there are two.
    queries = [n.split(" (")[0] for n in news]
    results = c.call(*[("search_products", {"query": q}) for q in queries],
                     why="Look up the ids and prices of the products the user wants.")
    new_ids = []
    for rows, name in zip(results, news, strict=True):
        new_ids.append(next(r["product_id"] for r in rows if r["name"] == name))
    stocks = [c.call1("get_product_details", {"product_id": pid}, "Check that it is in stock.") for pid in new_ids]
    items = {i["product_id"]: i for i in order["items"]}
    diff = round(sum((p["price"] - items[old]["price"]) * items[old]["quantity"]
                     for p, old in zip(stocks, t["swaps"], strict=True)), 2)
    pm = order["payment_method"]
    if diff > 0:
        money_text = f"The price difference of {money(diff)} will be charged to {describe_payment(pm)}."
    elif diff < 0:
        money_text = f"The price difference of {money(-diff)} will be refunded to {describe_payment(pm)}."
    else:
        money_text = "The price is the same, so nothing is charged."
    swaps_text = _join([f"the {o} for the {n} ({pid})" for o, n, pid in zip(olds, news, new_ids, strict=True)])
    why = ("The order is delivered and the new items are in stock in the same category." if delivered else
           "The order is pending and the new items are in stock in the same category.")
    c.confirm(f"I'll swap {swaps_text} in order {oid}. {money_text}", why=why)
    swaps = dict(zip(t["swaps"], new_ids, strict=True))
    tool = "exchange_delivered_order_items" if delivered else "modify_pending_order_items"
    c.call1(tool, {"order_id": oid, "swaps": swaps, "payment_method_id": pm})
    c.done(f"Done: order {oid} now has the {_join(news)}." if not delivered else
           f"Done: the exchange for order {oid} is registered; the {_join(news)} will be sent to you.")


def run_exchange(c: Conversation, t: dict[str, Any]) -> None:
    _run_swap(c, t, delivered=True)


def run_modify_items(c: Conversation, t: dict[str, Any]) -> None:
    _run_swap(c, t, delivered=False)


def plan_status(w: World) -> dict[str, Any]:
    status = w.rng.choice(["pending", "processed", "shipped", "shipped", "delivered", "delivered", "cancelled"])
    oid = w.new_order(status)
    by_id = w.rng.random() < 0.6 or w.long
    if not by_id:
        w.latest = oid
    return {"order_id": oid, "by_id": by_id}


def run_status(c: Conversation, t: dict[str, Any]) -> None:
    rng = c.rng
    if t["by_id"]:
        oid = t["order_id"]
        c.request(rng.choice(["What's the status of my order {oid}?", "Where is my order {oid}?",
                              "Has order {oid} shipped yet?"]).format(oid=oid))
        c.authenticate()
        order = c.read_order(oid, include_items=rng.random() < 0.6)
        names = _item_names(order) if "items" in order else []
    else:
        c.request(rng.choice(["Where is my most recent order?", "What's going on with my latest order?"]))
        uid = c.authenticate()
        rows = c.call1("list_user_orders", {"user_id": uid, "limit": rng.choice([1, 10])}, "The newest order comes first.")
        oid, names = rows[0]["order_id"], rows[0]["items"]
        # A delivered order's answer names the address, which only the order details have.
        order = c.read_order(oid) if rows[0]["status"] == "delivered" or rng.random() < 0.3 else rows[0]
    text = STATUS_SENTENCE[order["status"]].format(oid=oid, address=fmt_address(order["address"]) if "address" in order else "")
    if names:
        text += f" It contains the {_join(names)}."
    c.say(text, why=f"The tool says the order is {order['status']}.")


def plan_product(w: World) -> dict[str, Any]:
    pid = w.rng.choice(sorted(w.state["products"]))
    if not w.long and w.rng.random() < 0.3:
        w.state["products"][pid]["stock"] = 0
    return {"product_id": pid, "ask": w.rng.choice(["price_stock", "price_stock", "options"])}


def run_product(c: Conversation, t: dict[str, Any]) -> None:
    rng, name = c.rng, _product_name(c, t["product_id"])
    family = name.split(" (")[0]
    category = c.sandbox.state["products"][t["product_id"]]["category"]

    def stock_text(p: dict[str, Any]) -> str:
        return "It is currently out of stock." if p["stock"] == 0 else f"We have {p['stock']} in stock."

    if t["ask"] == "price_stock":
        c.request(rng.choice(["How much is the {name}, and is it in stock?", "Do you have the {name} in stock? What does it cost?",
                              "I'm looking at the {name}. Price and availability?"]).format(name=name), personal=False)
        args: dict[str, Any] = {"query": family}
        if rng.random() < 0.25:
            args["category"] = category
        rows = c.call1("search_products", args, "Find the product id first.")
        pid = next(r["product_id"] for r in rows if r["name"] == name)
        p = c.call1("get_product_details", {"product_id": pid}, "The details have the stock count.")
        c.say(f"The {name} costs {money(p['price'])}. {stock_text(p)}")
    else:
        c.request(rng.choice(["What options of the {family} do you sell?", "Which {family} variants do you have?"])
                  .format(family=family.lower() if family != "T-shirt" else family), personal=False)
        rows = c.call1("search_products", {"query": family}, "Search the catalogue by name.")
        c.say("We have: " + "; ".join(f"{r['name']} at {money(r['price'])}" for r in rows) + ".")
        c.user(rng.choice(["Is the {name} in stock?", "Great. Do you have the {name} available?"]).format(name=name))
        p = c.call1("get_product_details", {"product_id": t["product_id"]}, "Check the stock.")
        c.say(f"{stock_text(p)}" if p["stock"] == 0 else f"Yes! {stock_text(p)}")


def plan_policy(w: World) -> dict[str, Any]:
    return {"topics": w.rng.sample(POLICY_TOPICS, w.rng.choice([2, 2, 3]))}


def run_policy(c: Conversation, t: dict[str, Any]) -> None:
    rng = c.rng
    for k, topic in enumerate(t["topics"]):
        question = rng.choice(POLICY_QUESTIONS[topic])
        if k == 0:
            c.request(question, personal=False)
        else:
            c.user(rng.choice(["And ", "Thanks. ", "Also, "]) + question[0].lower() + question[1:])
        out = c.call1("get_policy", {"topic": topic}, f"Answer from the {topic} policy.")
        c.say(rng.choice(["", "Here is our policy: ", "Sure. "]) + out["policy"])


_REFUSALS = {
    # what: (statuses the policy forbids it for, policy topic, request templates, refusal text)
    "cancel": (["shipped", "delivered"], "cancellation",
               ["Please cancel my order {oid}.", "I want to cancel order {oid}."], "Only pending orders can be cancelled."),
    "return": (["pending", "processed", "shipped"], "returns",
               ["I'd like to return order {oid}.", "Can I return my order {oid}?"], "Only delivered orders can be returned."),
    "address": (["shipped", "delivered"], "address",
                ["Please ship order {oid} to {addr} instead.", "Change the address of order {oid} to {addr}, please."],
                "The address can only change while an order is pending or processed."),
    "swap": (["processed", "shipped"], "exchanges",
             ["Can you swap the {item} in order {oid} for another one?", "I want to change the {item} in order {oid}."],
             "Items can only be swapped in pending orders, or exchanged once delivered."),
}
_ALTERNATIVES = {
    ("cancel", "delivered"): " You can return it instead, since it was delivered.",
    ("cancel", "shipped"): " Once it is delivered, you can return it.",
    ("return", "pending"): " Since it is still pending, you can cancel it instead.",
    ("swap", "shipped"): " Once it is delivered, you can exchange it.",
}


def plan_refusal(w: World) -> dict[str, Any]:
    what = w.rng.choice(sorted(_REFUSALS))
    oid = w.new_order(w.rng.choice(_REFUSALS[what][0]))
    return {"what": what, "order_id": oid, "new_address": w.address() if what == "address" else None,
            "escalate": not w.long and w.rng.random() < 0.5, "fetch_policy": w.rng.random() < 0.4}


def run_refusal(c: Conversation, t: dict[str, Any]) -> None:
    rng, oid, what = c.rng, t["order_id"], t["what"]
    _, topic, templates, rule = _REFUSALS[what]
    order_state = _order_state(c, oid)
    item = _product_name(c, order_state["items"][0]["product_id"])
    addr = fmt_address(t["new_address"]) if t["new_address"] else ""
    c.request(rng.choice(templates).format(oid=oid, item=item, addr=addr))
    uid = c.authenticate()
    order = c.read_order(oid)
    status = order["status"]
    if t["fetch_policy"]:
        rule = c.call1("get_policy", {"topic": topic}, "Check what the policy says.")["policy"]
    state_text = f"is {status}, not delivered yet" if what == "return" else f"is already {status}"
    c.say(f"I'm sorry, but order {oid} {state_text}. {rule}{_ALTERNATIVES.get((what, status), '')}",
          why=f"The order is {status}; the policy does not allow this.")
    if t["escalate"]:
        c.user(rng.choice(["Then I want to talk to a human.", "Can I speak to a real person, please?",
                           "That's not acceptable. Transfer me to a human agent."]))
        verb = {"cancel": "cancel", "return": "return", "address": "change the address of", "swap": "swap items in"}[what]
        c.call1("transfer_to_human_agent",
                {"summary": f"User {uid} wants to {verb} order {oid}, which is {status}; the policy does not allow it."},
                why="The user insists on something the policy forbids and asks for a human.")
        c.say(rng.choice(["I've transferred you to a human agent; they will be with you shortly.",
                          "You're now being transferred to a human agent. Thanks for your patience."]))
        c.ended = True


TASKS: dict[str, tuple[Callable[[World], dict[str, Any]], Callable[[Conversation, dict[str, Any]], None]]] = {
    "cancel_order": (plan_cancel, run_cancel),
    "modify_order_address": (plan_modify_address, run_modify_address),
    "update_user_address": (plan_update_address, run_update_address),
    "return_items": (plan_return, run_return),
    "exchange_items": (plan_exchange, run_exchange),
    "modify_order_items": (plan_modify_items, run_modify_items),
    "order_status": (plan_status, run_status),
    "product_info": (plan_product, run_product),
    "policy_question": (plan_policy, run_policy),
    "refusal": (plan_refusal, run_refusal),
}
assert tuple(TASKS) == TASK_TYPES


# ---------------------------------------------------------------------------------------------------
# Entry points


def _intent(c: Conversation, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"user": dict(c.world.customer), "identify_by": c.identify_by, "email_as_typed": c.email_typed,
            "tasks": tasks}


def generate_one(index: int, seed: int = 0) -> dict[str, Any]:
    """Record ``index`` of :func:`generate` (its task type cycles through :data:`TASK_TYPES`)."""
    record_seed = seed * 1_000_000 + index
    rng = random.Random(record_seed)
    task_type = TASK_TYPES[index % len(TASK_TYPES)]
    plan, run = TASKS[task_type]
    world = World(rng, n_families=rng.choice([3, 3, 3, 4]))
    task = {"type": task_type, **plan(world)}
    world.finish()
    record_id = f"tooluse-{index:06d}" if seed == 0 else f"tooluse-s{seed}-{index:06d}"
    c = Conversation(world, rng, record_id)
    run(c, task)
    c.finish(thanks=ACCEPT if task_type == "refusal" else THANKS)
    return c.record(record_id, _intent(c, [task]),
                    {"source": "generated", "seed": record_seed, "task_type": task_type})


def generate(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` successful conversations, one task each, deterministic in ``seed``."""
    return [generate_one(i, seed) for i in range(n)]


LONG_TASK_TYPES = ("cancel_order", "return_items", "exchange_items", "modify_order_address", "modify_order_items",
                   "order_status", "update_user_address", "product_info", "refusal", "policy_question")


def generate_long(n_tasks: int, seed: int = 0) -> dict[str, Any]:
    """One long conversation in which the same customer works through ``n_tasks`` tasks in a row."""
    rng = random.Random(f"tool_use-long:{seed}")
    world = World(rng, n_families=6, variants=3, stock=(20, 40), long=True)
    types = [LONG_TASK_TYPES[(k + seed) % len(LONG_TASK_TYPES)] for k in range(n_tasks)]
    tasks = [{"type": t, **TASKS[t][0](world)} for t in types]
    world.finish(n_other_users=2, n_extra_orders=0)
    record_id = f"tooluse-long-{seed:06d}"
    c = Conversation(world, rng, record_id)
    for t in tasks:
        TASKS[t["type"]][1](c, t)
    c.finish(force=True)
    return c.record(record_id, _intent(c, tasks),
                    {"source": "generated", "seed": seed, "task_type": "long", "n_tasks": n_tasks})


def generate_file(path: str | Path, n: int = 200, seed: int = 0) -> int:
    """Write :func:`generate` ``(n, seed)`` as JSONL, atomically. Returns the number of records."""
    return save_trajectories(generate(n, seed), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate tool-use trajectories (JSONL).")
    parser.add_argument("--out", required=True, help="output JSONL path")
    parser.add_argument("--n", type=int, default=200, help="number of records")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {generate_file(args.out, args.n, args.seed)} records to {args.out}")


if __name__ == "__main__":
    main()

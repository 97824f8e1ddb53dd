"""Small Python repositories with one bug each and a ``unittest`` suite: the bundled SWE tasks.

A :class:`BugTask` is a repository (package code, tests, a README), an issue text, the FAIL_TO_PASS and
PASS_TO_PASS test ids (``python3 -m unittest`` dotted ids, SWE-bench's sense: fail before the fix and pass
after / pass both before and after), and several *fixes*, each a list of exact text replacements, all of
which make the suite pass. The expert (:mod:`.expert`) picks one fix and one way of applying it.

Bug families (:data:`FAMILIES`), each with variants whose names, constants and package vary by seed:

* ``off_by_one``: an exclusive range end, a slice one short;
* ``wrong_condition``: ``>`` for "at least", an exclusive bound that should include;
* ``missing_edge_case``: an empty list, extra blanks, a value containing the separator;
* ``wrong_api``: ``str.lstrip`` for a prefix (it strips characters), ``list.sort()`` returned (None),
  ``re.match`` where ``re.search`` is meant;
* ``broken_refactor``: a function renamed in one module while another module still imports the old name
  (the fix spans the import and the call).

Everything here is deterministic in the seed: :func:`make_task` returns equal tasks for equal arguments.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

#: A fix: (path, old text, new text) replacements, each old text occurring exactly once when applied in order.
Fix = list[tuple[str, str, str]]

PACKAGES = ["ledger", "roster", "depot", "atlas", "harbor", "orchard", "quarry", "beacon", "tandem", "meadow",
            "cobalt", "pylon", "juniper", "summit", "vertex", "willow"]
FAMILIES = ("off_by_one", "wrong_condition", "missing_edge_case", "wrong_api", "broken_refactor")


@dataclass
class BugTask:
    """One repository with a bug (see the module docstring)."""

    family: str
    variant: str
    package: str
    files: dict[str, str]
    issue: str
    test_module: str  # dotted, e.g. "tests.test_stats"
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    fixes: list[Fix]
    symbol: str  # the function the issue is about (what an agent greps for)
    source: str  # the file holding the bug
    test_files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.test_files = {p: t for p, t in self.files.items() if p.startswith("tests/")}


def _dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _ids(module: str, cls: str, names: list[str]) -> list[str]:
    return [f"{module}.{cls}.{n}" for n in names]


def _repo(pkg: str, modules: dict[str, str], tests: dict[str, str], blurb: str) -> dict[str, str]:
    files = {f"{pkg}/__init__.py": f'"""{pkg}: {blurb}"""\n', "tests/__init__.py": ""}
    files.update({f"{pkg}/{name}.py": text for name, text in modules.items()})
    files.update({f"tests/{name}.py": text for name, text in tests.items()})
    files[".gitignore"] = "__pycache__/\n*.pyc\n.pivotrl/\n"
    files["README.md"] = (f"# {pkg}\n\n{blurb[0].upper()}{blurb[1:]}\n\nRun the tests with "
                          "`python3 -m unittest discover -s tests -t .`\n")
    return files


# -- off by one ----------------------------------------------------------------------------------------


def _sum_range(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["total_upto", "sum_through", "running_total"])
    k = rng.randint(4, 9)
    mod = _dedent(f'''
        """Counting helpers for {pkg}."""


        def {fn}(n):
            """The sum of the integers 1..n (0 for n < 1)."""
            total = 0
            for i in range(1, n):
                total += i
            return total


        def count_above(values, limit):
            """How many values are strictly above `limit`."""
            return sum(1 for v in values if v > limit)
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.counting import count_above, {fn}


        class TestCounting(unittest.TestCase):
            def test_includes_n(self):
                self.assertEqual({fn}({k}), {k * (k + 1) // 2})

            def test_zero(self):
                self.assertEqual({fn}(0), 0)

            def test_count_above(self):
                self.assertEqual(count_above([1, 5, 9, {k}], 4), {sum(1 for v in [1, 5, 9, k] if v > 4)})


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/counting.py"
    return BugTask(
        "off_by_one", "range_end", pkg, _repo(pkg, {"counting": mod}, {"test_counting": test}, "counting helpers"),
        f"`{fn}(n)` should add up 1..n, but `{fn}({k})` returns {k * (k - 1) // 2} instead of {k * (k + 1) // 2}: "
        "the last number is left out. Please fix it.",
        "tests.test_counting", _ids("tests.test_counting", "TestCounting", ["test_includes_n"]),
        _ids("tests.test_counting", "TestCounting", ["test_zero", "test_count_above"]),
        [[(path, "range(1, n):", "range(1, n + 1):")], [(path, "range(1, n):", "range(n + 1):")],
         [(path, "range(1, n):", "range(1, n+1):")]],
        fn, path)


def _page_slice(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["page", "get_page", "page_items"])
    size = rng.randint(3, 5)
    n = size * 3 + 1
    mod = _dedent(f'''
        """Pagination for {pkg} listings."""


        def {fn}(items, number, size={size}):
            """The items of page `number` (1-based), `size` items per page."""
            start = (number - 1) * size
            return items[start:start + size - 1]


        def page_count(total, size={size}):
            """How many pages `total` items fill."""
            return -(-total // size)
        ''')
    items = list(range(1, n + 1))
    test = _dedent(f'''
        import unittest

        from {pkg}.paging import page_count, {fn}

        ITEMS = list(range(1, {n + 1}))


        class TestPaging(unittest.TestCase):
            def test_first_page_is_full(self):
                self.assertEqual({fn}(ITEMS, 1), {items[:size]})

            def test_last_page(self):
                self.assertEqual({fn}(ITEMS, 4), {items[3 * size:3 * size + size]})

            def test_page_count(self):
                self.assertEqual(page_count(len(ITEMS)), 4)


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/paging.py"
    return BugTask(
        "off_by_one", "slice_end", pkg, _repo(pkg, {"paging": mod}, {"test_paging": test}, "paginated listings"),
        f"`{fn}(items, 1)` returns only {size - 1} items although a page holds {size}. The last item of every "
        "page goes missing.",
        "tests.test_paging", _ids("tests.test_paging", "TestPaging", ["test_first_page_is_full"]),
        _ids("tests.test_paging", "TestPaging", ["test_last_page", "test_page_count"]),
        [[(path, "items[start:start + size - 1]", "items[start:start + size]")],
         [(path, "    start = (number - 1) * size\n    return items[start:start + size - 1]",
           "    end = number * size\n    return items[end - size:end]")]],
        fn, path)


# -- wrong condition ---------------------------------------------------------------------------------


def _at_least(pkg: str, rng: random.Random) -> BugTask:
    fn, what = rng.choice([("is_eligible", "age"), ("qualifies", "points"), ("can_vote", "age")])
    minimum = rng.choice([16, 18, 21, 50, 100])
    mod = _dedent(f'''
        """Eligibility rules of {pkg}."""

        MINIMUM = {minimum}


        def {fn}({what}, minimum=MINIMUM):
            """True when `{what}` is at least `minimum`."""
            return {what} > minimum


        def describe({what}):
            return "eligible" if {fn}({what}) else "not eligible"
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.rules import describe, {fn}


        class TestRules(unittest.TestCase):
            def test_exactly_minimum(self):
                self.assertTrue({fn}({minimum}))

            def test_above(self):
                self.assertTrue({fn}({minimum + 3}))

            def test_below(self):
                self.assertFalse({fn}({minimum - 1}))

            def test_describe_below(self):
                self.assertEqual(describe({minimum - 2}), "not eligible")


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/rules.py"
    return BugTask(
        "wrong_condition", "at_least", pkg, _repo(pkg, {"rules": mod}, {"test_rules": test}, "eligibility rules"),
        f"The docs say `{fn}` accepts a {what} of *at least* {minimum}, but `{fn}({minimum})` returns False.",
        "tests.test_rules", _ids("tests.test_rules", "TestRules", ["test_exactly_minimum"]),
        _ids("tests.test_rules", "TestRules", ["test_above", "test_below", "test_describe_below"]),
        [[(path, f"return {what} > minimum", f"return {what} >= minimum")],
         [(path, f"return {what} > minimum", f"return not {what} < minimum")],
         [(path, f"return {what} > minimum", f"return minimum <= {what}")]],
        fn, path)


def _open_hours(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["is_open", "open_at", "in_service"])
    start, end = rng.choice([(8, 17), (9, 18), (7, 15), (10, 22)])
    mod = _dedent(f'''
        """Opening hours of {pkg}."""

        OPENS, CLOSES = {start}, {end}


        def {fn}(hour, opens=OPENS, closes=CLOSES):
            """True from the opening hour (included) until the closing hour (excluded)."""
            return opens < hour < closes
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.hours import {fn}


        class TestHours(unittest.TestCase):
            def test_opening_hour(self):
                self.assertTrue({fn}({start}))

            def test_midday(self):
                self.assertTrue({fn}({(start + end) // 2}))

            def test_closing_hour(self):
                self.assertFalse({fn}({end}))

            def test_night(self):
                self.assertFalse({fn}(3))


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/hours.py"
    return BugTask(
        "wrong_condition", "inclusive_bound", pkg, _repo(pkg, {"hours": mod}, {"test_hours": test}, "opening hours"),
        f"We open at {start}:00 but `{fn}({start})` says closed. The opening hour should count as open; the "
        "closing hour should not.",
        "tests.test_hours", _ids("tests.test_hours", "TestHours", ["test_opening_hour"]),
        _ids("tests.test_hours", "TestHours", ["test_midday", "test_closing_hour", "test_night"]),
        [[(path, "return opens < hour < closes", "return opens <= hour < closes")],
         [(path, "return opens < hour < closes", "return hour >= opens and hour < closes")],
         [(path, "return opens < hour < closes", "return hour in range(opens, closes)")]],
        fn, path)


# -- missing edge case ---------------------------------------------------------------------------------


def _empty_average(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["average", "mean", "mean_score"])
    vals = [rng.randint(1, 9) * 2 for _ in range(4)]
    mod = _dedent(f'''
        """Score summaries for {pkg}."""


        def {fn}(values):
            """The mean of `values`, or 0.0 when there are none."""
            return sum(values) / len(values)


        def spread(values):
            return max(values) - min(values) if values else 0
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.scores import spread, {fn}


        class TestScores(unittest.TestCase):
            def test_empty(self):
                self.assertEqual({fn}([]), 0.0)

            def test_mean(self):
                self.assertEqual({fn}({vals}), {sum(vals) / len(vals)})

            def test_spread(self):
                self.assertEqual(spread({vals}), {max(vals) - min(vals)})


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/scores.py"
    body = "    return sum(values) / len(values)"
    return BugTask(
        "missing_edge_case", "empty_list", pkg, _repo(pkg, {"scores": mod}, {"test_scores": test}, "score summaries"),
        f"`{fn}([])` raises ZeroDivisionError; the docstring promises 0.0 for an empty list.",
        "tests.test_scores", _ids("tests.test_scores", "TestScores", ["test_empty"]),
        _ids("tests.test_scores", "TestScores", ["test_mean", "test_spread"]),
        [[(path, body, "    if not values:\n        return 0.0\n" + body)],
         [(path, body, "    return sum(values) / len(values) if values else 0.0")],
         [(path, body, "    if len(values) == 0:\n        return 0.0\n" + body)]],
        fn, path)


def _split_once(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["parse_setting", "parse_pair", "read_option"])
    mod = _dedent(f'''
        """Settings lines (`key=value`) for {pkg}."""


        def {fn}(line):
            """`(key, value)` of a `key=value` line; the value may itself contain `=`."""
            key, value = line.split("=")
            return key.strip(), value.strip()
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.settings import {fn}


        class TestSettings(unittest.TestCase):
            def test_value_with_equals(self):
                self.assertEqual({fn}("query = a=b"), ("query", "a=b"))

            def test_simple(self):
                self.assertEqual({fn}("mode=fast"), ("mode", "fast"))

            def test_blanks(self):
                self.assertEqual({fn}("  level =  3 "), ("level", "3"))


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/settings.py"
    return BugTask(
        "missing_edge_case", "split_once", pkg, _repo(pkg, {"settings": mod}, {"test_settings": test}, "settings files"),
        f"`{fn}('query = a=b')` crashes with `ValueError: too many values to unpack`; values may contain `=`.",
        "tests.test_settings", _ids("tests.test_settings", "TestSettings", ["test_value_with_equals"]),
        _ids("tests.test_settings", "TestSettings", ["test_simple", "test_blanks"]),
        [[(path, 'line.split("=")', 'line.split("=", 1)')],
         [(path, 'key, value = line.split("=")', 'key, _, value = line.partition("=")')],
         [(path, 'line.split("=")', 'line.split("=", maxsplit=1)')]],
        fn, path)


# -- wrong API use ---------------------------------------------------------------------------------------


def _lstrip_prefix(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["strip_prefix", "short_name", "bare_name"])
    prefix, victim = rng.choice([("user_", "user_sue"), ("tmp_", "tmp_map"), ("app_", "app_pa")])
    mod = _dedent(f'''
        """Name handling for {pkg}."""

        PREFIX = "{prefix}"


        def {fn}(name):
            """`name` without a leading PREFIX (other names unchanged)."""
            return name.lstrip(PREFIX)
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.names import {fn}


        class TestNames(unittest.TestCase):
            def test_prefix_letters_kept(self):
                self.assertEqual({fn}("{victim}"), "{victim[len(prefix):]}")

            def test_prefix_removed(self):
                self.assertEqual({fn}("{prefix}bob"), "bob")

            def test_other_name(self):
                self.assertEqual({fn}("zed"), "zed")


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/names.py"
    return BugTask(
        "wrong_api", "lstrip_prefix", pkg, _repo(pkg, {"names": mod}, {"test_names": test}, "name handling"),
        f"`{fn}('{victim}')` returns {victim.lstrip(prefix)!r} instead of {victim[len(prefix):]!r}.",
        "tests.test_names", _ids("tests.test_names", "TestNames", ["test_prefix_letters_kept"]),
        _ids("tests.test_names", "TestNames", ["test_prefix_removed", "test_other_name"]),
        [[(path, "name.lstrip(PREFIX)", "name.removeprefix(PREFIX)")],
         [(path, "return name.lstrip(PREFIX)", "return name[len(PREFIX):] if name.startswith(PREFIX) else name")]],
        fn, path)


def _sort_returns_none(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["sorted_names", "alphabetical", "ordered_titles"])
    names = rng.sample(["kim", "ada", "lee", "bo", "max", "zoe", "eve"], 4)
    mod = _dedent(f'''
        """Listing helpers for {pkg}."""


        def {fn}(names):
            """A new list of `names` in alphabetical order."""
            return list(names).sort()


        def unique(names):
            return list(dict.fromkeys(names))
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.listing import unique, {fn}


        class TestListing(unittest.TestCase):
            def test_sorted(self):
                self.assertEqual({fn}({names}), {sorted(names)})

            def test_unique(self):
                self.assertEqual(unique(["a", "b", "a"]), ["a", "b"])


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/listing.py"
    return BugTask(
        "wrong_api", "sort_returns_none", pkg, _repo(pkg, {"listing": mod}, {"test_listing": test}, "listing helpers"),
        f"`{fn}` returns None instead of the sorted list.",
        "tests.test_listing", _ids("tests.test_listing", "TestListing", ["test_sorted"]),
        _ids("tests.test_listing", "TestListing", ["test_unique"]),
        [[(path, "return list(names).sort()", "return sorted(names)")],
         [(path, "    return list(names).sort()", "    result = list(names)\n    result.sort()\n    return result")]],
        fn, path)


def _match_vs_search(pkg: str, rng: random.Random) -> BugTask:
    fn = rng.choice(["first_number", "extract_number", "find_quantity"])
    n = rng.randint(10, 99)
    mod = _dedent(f'''
        """Parsing free text for {pkg}."""

        import re


        def {fn}(text):
            """The first whole number anywhere in `text`, or None."""
            found = re.match(r"\\d+", text)
            return int(found.group()) if found else None
        ''')
    test = _dedent(f'''
        import unittest

        from {pkg}.parsing import {fn}


        class TestParsing(unittest.TestCase):
            def test_number_inside(self):
                self.assertEqual({fn}("order {n} shipped"), {n})

            def test_number_first(self):
                self.assertEqual({fn}("7 boxes"), 7)

            def test_no_number(self):
                self.assertIsNone({fn}("none"))


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/parsing.py"
    return BugTask(
        "wrong_api", "match_vs_search", pkg, _repo(pkg, {"parsing": mod}, {"test_parsing": test}, "text parsing"),
        f"`{fn}('order {n} shipped')` returns None; it should find {n}.",
        "tests.test_parsing", _ids("tests.test_parsing", "TestParsing", ["test_number_inside"]),
        _ids("tests.test_parsing", "TestParsing", ["test_number_first", "test_no_number"]),
        [[(path, "re.match(", "re.search(")],
         [(path, 're.match(r"\\d+", text)', 're.search(r"[0-9]+", text)')]],
        fn, path)


# -- broken refactor across two files ---------------------------------------------------------------------


def _renamed_function(pkg: str, rng: random.Random) -> BugTask:
    old, new = rng.choice([("format_price", "format_amount"), ("to_cents", "as_cents"),
                           ("money_str", "format_money")])
    mod_money = _dedent(f'''
        """Money formatting for {pkg}."""


        def {new}(cents, symbol="$"):
            """`cents` as text, e.g. 1234 -> "$12.34"."""
            return f"{{symbol}}{{cents // 100}}.{{cents % 100:02d}}"
        ''')
    mod_invoice = _dedent(f'''
        """Invoice lines for {pkg}."""

        from {pkg}.money import {old}


        def invoice_line(name, quantity, unit_cents):
            """One line of an invoice: name, quantity and total."""
            return f"{{name}} x{{quantity}}: {{{old}(quantity * unit_cents)}}"
        ''')
    test_money = _dedent(f'''
        import unittest

        from {pkg}.money import {new}


        class TestMoney(unittest.TestCase):
            def test_format(self):
                self.assertEqual({new}(1234), "$12.34")

            def test_symbol(self):
                self.assertEqual({new}(5, symbol="EUR "), "EUR 0.05")


        if __name__ == "__main__":
            unittest.main()
        ''')
    test_invoice = _dedent(f'''
        import unittest

        from {pkg}.invoice import invoice_line


        class TestInvoice(unittest.TestCase):
            def test_line(self):
                self.assertEqual(invoice_line("pen", 3, 150), "pen x3: $4.50")


        if __name__ == "__main__":
            unittest.main()
        ''')
    path = f"{pkg}/invoice.py"
    return BugTask(
        "broken_refactor", "renamed_function", pkg,
        _repo(pkg, {"money": mod_money, "invoice": mod_invoice}, {"test_money": test_money, "test_invoice": test_invoice},
              "invoices and money formatting"),
        f"Since `{old}` was renamed to `{new}` in `{pkg}/money.py`, importing `{pkg}.invoice` fails with an "
        "ImportError. Please finish the refactor.",
        "tests.test_invoice", _ids("tests.test_invoice", "TestInvoice", ["test_line"]),
        _ids("tests.test_money", "TestMoney", ["test_format", "test_symbol"]),
        [[(path, f"import {old}\n", f"import {new}\n"), (path, f"{{{old}(", f"{{{new}(")],
         [(path, f"from {pkg}.money import {old}\n", f"from {pkg} import money\n"),
          (path, f"{{{old}(", f"{{money.{new}(")]],
        old, path)


#: Variant builders by family.
VARIANTS: dict[str, list[Callable[[str, random.Random], BugTask]]] = {
    "off_by_one": [_sum_range, _page_slice],
    "wrong_condition": [_at_least, _open_hours],
    "missing_edge_case": [_empty_average, _split_once],
    "wrong_api": [_lstrip_prefix, _sort_returns_none, _match_vs_search],
    "broken_refactor": [_renamed_function],
}


def make_task(index: int, seed: int = 0) -> BugTask:
    """Task ``index`` of the bundled set: families cycle, variants and packages come from the seed."""
    rng = random.Random(f"swe:{seed}:{index}")
    family = FAMILIES[index % len(FAMILIES)]
    builders = VARIANTS[family]
    builder = builders[(index // len(FAMILIES)) % len(builders)]
    return builder(PACKAGES[(index * 7 + seed) % len(PACKAGES)], rng)


def apply_fix(files: dict[str, str], fix: Fix) -> dict[str, str]:
    """``files`` with ``fix`` applied (raises when an old text is not exactly once in its file)."""
    out = dict(files)
    for path, old, new in fix:
        if out[path].count(old) != 1:
            raise ValueError(f"fix text {old!r} occurs {out[path].count(old)} times in {path}, expected once")
        out[path] = out[path].replace(old, new, 1)
    return out


__all__ = ["FAMILIES", "VARIANTS", "BugTask", "Fix", "apply_fix", "make_task"]
